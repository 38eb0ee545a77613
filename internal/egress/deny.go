package egress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ErrorHeader names the response header that carries a refusal's code.
const ErrorHeader = "X-Codeexec-Egress-Error"

// Codes of refusals, sent in ErrorHeader and counted in Stats.Denied. They are stable:
// clients and dashboards may match on them.
const (
	CodeHostNotAllowed    = "host_not_allowed"    // 403: host not in Policy.Allow
	CodePortNotAllowed    = "port_not_allowed"    // 403: port not in Policy.Ports
	CodeAddressNotAllowed = "address_not_allowed" // 403: every address is private or local
	CodeDNSFailed         = "dns_failed"          // 502: the name did not resolve
	CodeDialFailed        = "dial_failed"         // 502: no address accepted a connection
	CodeUpstreamFailed    = "upstream_failed"     // 502: a forwarded request failed after connecting
	CodeConnLimit         = "conn_limit"          // 429: MaxConns or MaxTotalConns reached
	CodeByteLimit         = "byte_limit"          // 429: MaxBytes used up
	CodeBadRequest        = "bad_request"         // 400: not a request this proxy serves
	CodeProxyClosed       = "proxy_closed"        // 503: the proxy is shutting down
)

// messagePrefix starts every refusal, so that a Python user can tell the sandbox's
// proxy from the remote server.
const messagePrefix = "codeexec egress: "

// denial is a refused request. It is an error so that it can travel through
// http.Transport's dial function back to the handler.
type denial struct {
	status int
	code   string
	msg    string // without messagePrefix
}

func (d *denial) Error() string { return messagePrefix + d.msg }

func deny(status int, code, format string, args ...any) *denial {
	return &denial{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// errClosed answers requests that arrive while the proxy closes.
var errClosed = &denial{
	status: http.StatusServiceUnavailable,
	code:   CodeProxyClosed,
	msg:    "the sandbox's network proxy is shutting down",
}

func badRequest(format string, args ...any) *denial {
	return deny(http.StatusBadRequest, CodeBadRequest, format, args...)
}

// writeDenial answers a plain-HTTP request with d: the status, ErrorHeader and d's
// message as a text/plain body, which Python's requests shows as Response.text.
func writeDenial(w http.ResponseWriter, d *denial) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(ErrorHeader, d.code)
	w.WriteHeader(d.status)
	io.WriteString(w, d.Error()+"\n")
}

// lingerTimeout bounds how long a refused CONNECT's connection waits for the client
// to close it after reading the answer.
const lingerTimeout = 2 * time.Second

// writeConnectDenial answers a CONNECT with d, putting the message in the status
// line's reason phrase as well as in the body. Python's http.client reports a failed
// tunnel as "Tunnel connection failed: <code> <reason>" and never reads the body, so
// with net/http's fixed "403 Forbidden" the user would not learn why.
func writeConnectDenial(conn net.Conn, rw *bufio.ReadWriter, d *denial) {
	body := d.Error() + "\n"
	conn.SetDeadline(time.Now().Add(lingerTimeout))
	fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\n", d.status, reasonPhrase(d.Error()))
	fmt.Fprintf(rw, "Content-Type: text/plain; charset=utf-8\r\n%s: %s\r\n", ErrorHeader, d.code)
	fmt.Fprintf(rw, "Content-Length: %s\r\nConnection: close\r\n\r\n%s", strconv.Itoa(len(body)), body)
	if rw.Flush() != nil {
		return
	}
	// Closing a socket with unread input sends a reset, which can destroy the
	// answer before the client reads it; so shut down our side and wait for the
	// client's close, as net/http does for its own errors.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}
}

// reasonPhrase makes s safe for a status line: printable ASCII, at most 1 KiB.
func reasonPhrase(s string) string {
	const max = 1024
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}
