package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"
)

// HopHeader marks a request one replica forwarded to another; its value is the
// forwarder's name. A replica never forwards a request that carries it: two
// replicas whose peer lists disagree must not pass a request back and forth.
const HopHeader = "Codeexec-Forwarded-By"

// Face is a listener every replica has: the HTTP API or the E2B API.
type Face int

const (
	FaceAPI Face = iota
	FaceE2B
)

// LostFunc writes the answer for a resource whose owner cannot serve it, in its
// face's error shape (session_lost); msg says why.
type LostFunc func(w http.ResponseWriter, r *http.Request, msg string)

// Config is a cluster's membership. Plain data.
type Config struct {
	// Self is this replica's name, which the ids it makes carry.
	Self string
	// Peers are the replicas of the deployment, Self among them.
	Peers []Peer
	// DialTimeout bounds the connection to an owner (default 2s): an owner that is
	// gone must cost its client a short wait and a clear error, never a hang.
	DialTimeout time.Duration
	Log         *slog.Logger
}

// Cluster routes requests to the replica that owns their resource. A nil *Cluster
// is a lone server: it routes nothing.
type Cluster struct {
	self    string
	names   []string
	peers   map[string]Peer
	proxies map[Face]map[string]*httputil.ReverseProxy
	log     *slog.Logger
}

// New checks cfg and makes its cluster; with no peers it returns nil, a lone
// server whose ids still carry cfg.Self when it is set.
func New(cfg Config) (*Cluster, error) {
	if len(cfg.Peers) == 0 {
		return nil, nil
	}
	if err := ValidName(cfg.Self); err != nil {
		return nil, fmt.Errorf("this replica's name (CODEEXEC_REPLICA or replica): %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{self: cfg.Self, peers: map[string]Peer{}, log: cfg.Log,
		proxies: map[Face]map[string]*httputil.ReverseProxy{FaceAPI: {}, FaceE2B: {}}}
	for _, p := range cfg.Peers {
		c.peers[p.Name] = p
		c.names = append(c.names, p.Name)
	}
	if _, ok := c.peers[cfg.Self]; !ok {
		return nil, fmt.Errorf("this replica %q is not among the peers (%s)", cfg.Self, strings.Join(c.names, ", "))
	}
	// The keepalive probes find an owner whose machine died in the middle of a long
	// request in about 25s; the kernel's defaults would take over two hours.
	d := &net.Dialer{Timeout: cfg.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}}
	tr := &http.Transport{
		// No Proxy: HTTP_PROXY is for the way out of the pod, never between replicas.
		DialContext:         d.DialContext,
		TLSHandshakeTimeout: cfg.DialTimeout,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	for _, p := range cfg.Peers {
		if p.Name == cfg.Self {
			continue
		}
		c.proxies[FaceAPI][p.Name] = c.proxy(p.API, tr)
		if p.E2B != nil {
			c.proxies[FaceE2B][p.Name] = c.proxy(p.E2B, tr)
		}
	}
	return c, nil
}

// Self is this replica's name; "" for a lone server.
func (c *Cluster) Self() string {
	if c == nil {
		return ""
	}
	return c.self
}

// Names are the replicas' names, as the peers list them.
func (c *Cluster) Names() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.names)
}

type lostKey struct{}

type lostCall struct {
	lost      LostFunc
	id, owner string
}

func (c *Cluster) proxy(target *url.URL, tr http.RoundTripper) *httputil.ReverseProxy {
	u := *target
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&u)
			pr.SetXForwarded()
			pr.Out.Header.Set(HopHeader, c.self)
			if pr.Out.Body != nil && pr.Out.ContentLength > 0 {
				pr.Out.Body = &exactBody{r: pr.Out.Body, left: pr.Out.ContentLength}
			}
		},
		Transport: tr,
		// Streams (SSE, NDJSON, Connect, MCP) pass through as they are written.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			call, _ := r.Context().Value(lostKey{}).(lostCall)
			if r.Context().Err() != nil {
				return // the client went away: nobody to answer
			}
			c.log.Warn("forward: owner unreachable", "owner", call.owner, "id", call.id, "err", err)
			call.lost(w, r, fmt.Sprintf("%q is lost: its replica %s cannot be reached (%v); what it held is gone, create a new one",
				call.id, call.owner, unwrapAll(err)))
		},
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
}

// unwrapAll is err's innermost cause: "connect: connection refused" reads better
// than the chain of the dial's wrappers.
func unwrapAll(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Forward serves r at the replica that owns id when that is another one, and
// reports whether it did: false means r is this replica's to serve (id names it,
// names no replica, or there is no cluster). A request for a replica that is not
// among the peers, that cannot be reached, or that was forwarded here already
// (peer lists that disagree) is answered by lost.
func (c *Cluster) Forward(w http.ResponseWriter, r *http.Request, face Face, id string, lost LostFunc) bool {
	owner := Owner(id)
	if c == nil || owner == "" || owner == c.self {
		return false
	}
	if by := r.Header.Get(HopHeader); by != "" {
		lost(w, r, fmt.Sprintf("%q belongs to replica %s, but %s forwarded it here: the replicas' peer lists disagree", id, owner, by))
		return true
	}
	if _, ok := c.peers[owner]; !ok {
		lost(w, r, fmt.Sprintf("%q is lost: its replica %s is not part of this deployment (it was scaled away, or the id is from elsewhere); create a new one", id, owner))
		return true
	}
	p := c.proxies[face][owner]
	if p == nil {
		lost(w, r, fmt.Sprintf("%q belongs to replica %s, whose E2B listener the peers list does not give", id, owner))
		return true
	}
	ctx := context.WithValue(r.Context(), lostKey{}, lostCall{lost: lost, id: id, owner: owner})
	p.ServeHTTP(w, r.WithContext(ctx))
	return true
}

// exactBody is a request body of a known length that ends there, without reading
// its source any further. The transport reads a body once more past its length, to
// refuse one longer than it said; by then the owner may have answered, and the
// server, once the answer's header is flushed to the client, closes the client's
// request body: that last read would fail ("invalid Read on closed Body"), and the
// transport would close the connection under the answer, cutting the stream. The
// server checks the body's length itself.
type exactBody struct {
	r    io.ReadCloser
	left int64
}

func (b *exactBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *exactBody) Close() error { return b.r.Close() }
