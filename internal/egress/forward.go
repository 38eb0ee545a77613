package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, and the proxy
// credentials, none of which may pass the proxy.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes hopHeaders and the headers Connection names from h.
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// serveForward forwards an absolute-form request ("GET http://host/path") and
// streams the response back.
func (p *Proxy) serveForward(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// A deadline left by an earlier response on this connection may have passed.
	rc.SetWriteDeadline(time.Now().Add(p.policy.IdleTimeout))

	t, d := p.checkForward(r)
	if d != nil {
		p.refused(r, d)
		writeDenial(w, d)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := r.Clone(ctx)
	out.RequestURI = ""
	// The Host header comes from the checked URL. Sending the client's own Host
	// header would let it name a virtual host other than the one the allowlist saw.
	out.Host = ""
	out.URL.Host = t.String()
	if t.port == 80 {
		out.URL.Host = t.host.urlHost()
	}
	out.URL.User = nil
	out.Close = false
	removeHopHeaders(out.Header)
	if r.ContentLength == 0 {
		out.Body = nil // as httputil.ReverseProxy: a GET with an empty body stays bodiless
	} else {
		out.Body = &idleBody{ReadCloser: r.Body, rc: rc, d: p.policy.IdleTimeout}
	}

	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		var dn *denial
		if !errors.As(err, &dn) {
			dn = deny(http.StatusBadGateway, CodeUpstreamFailed, "request to %s failed: %s", t.String(), upstreamReason(err))
		}
		p.refused(r, dn)
		writeDenial(w, dn)
		return
	}
	defer resp.Body.Close()

	removeHopHeaders(resp.Header)
	resp.Header.Del(ErrorHeader) // only the proxy says why it refused
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if err := copyBody(w, rc, resp.Body, p.policy.IdleTimeout); err != nil {
		// The status line is out, so the client can only learn of the failure from a
		// cut connection; ErrAbortHandler cuts it without a log line.
		panic(http.ErrAbortHandler)
	}
}

// checkForward checks an absolute-form request's URL.
func (p *Proxy) checkForward(r *http.Request) (target, *denial) {
	switch {
	case r.URL.Host == "":
		return target{}, badRequest("this is the sandbox's network proxy; send requests through it with a full URL (http://host/path), not to it")
	case r.URL.Scheme != "http":
		return target{}, badRequest("scheme %s is not forwarded; use http://, or CONNECT for https://", quote(r.URL.Scheme))
	}
	return p.check(r.URL.Host, 80)
}

// copyBody streams body to w, flushing each piece so that streamed responses
// (server-sent events, progress output) arrive as they are produced.
func copyBody(w io.Writer, rc *http.ResponseController, body io.Reader, idle time.Duration) error {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(idle))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// idleBody is a request body that fails if the client sends nothing for d, so that a
// stalled upload cannot hold a handler and an upstream connection forever.
type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.ReadCloser.Read(p)
}

func upstreamReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
