package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// target is a destination that passed the allowlist and port checks.
type target struct {
	host host
	port int
}

func (t target) String() string {
	return net.JoinHostPort(t.host.String(), fmt.Sprint(t.port))
}

// check parses "host:port" ("host" alone if defaultPort is not 0) and checks it
// against the allowlist and the allowed ports.
func (p *Proxy) check(hostport string, defaultPort int) (target, *denial) {
	h, port, d := splitTarget(hostport, defaultPort)
	if d != nil {
		return target{}, d
	}
	hh, err := parseHost(h)
	if err != nil {
		return target{}, badRequest("invalid host %s: %v", quote(h), err)
	}
	if !slices.ContainsFunc(p.allow, func(pt pattern) bool { return pt.matches(hh) }) {
		return target{}, deny(http.StatusForbidden, CodeHostNotAllowed,
			"host %q is not in this execution's network allowlist (allowed: %s)", hh.String(), listOrNone(p.policy.Allow))
	}
	if !slices.Contains(p.policy.Ports, port) {
		return target{}, deny(http.StatusForbidden, CodePortNotAllowed,
			"port %d of host %q is not allowed (allowed ports: %s)", port, hh.String(), joinPorts(p.policy.Ports))
	}
	return target{host: hh, port: port}, nil
}

// splitTarget splits "host:port", or "host" when defaultPort is not 0.
func splitTarget(s string, defaultPort int) (string, int, *denial) {
	if s == "" {
		return "", 0, badRequest("no target host")
	}
	hasPort := strings.HasPrefix(s, "[") && strings.Contains(s, "]:") ||
		!strings.HasPrefix(s, "[") && strings.Count(s, ":") == 1
	if !hasPort {
		if defaultPort == 0 {
			return "", 0, badRequest("target %s has no port; CONNECT needs host:port", quote(s))
		}
		return s, defaultPort, nil
	}
	h, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, badRequest("invalid target %s", quote(s))
	}
	if ps == "" && defaultPort != 0 {
		return h, defaultPort, nil
	}
	port, ok := parsePort(ps)
	if !ok {
		return "", 0, badRequest("invalid port %s", quote(ps))
	}
	return h, port, nil
}

// connect resolves t, keeps the addresses AddrAllowed accepts and dials one of them.
// It dials the address it checked, never the name: resolving again at dial time would
// let a DNS server answer a public address to the check and a private one to the
// dial (DNS rebinding).
func (p *Proxy) connect(ctx context.Context, t target) (*upstreamConn, *denial) {
	if d := p.acquire(); d != nil {
		return nil, d
	}
	ctx, cancel := context.WithTimeout(ctx, p.policy.DialTimeout)
	defer cancel()
	addrs, d := p.resolve(ctx, t.host)
	if d != nil {
		p.release()
		return nil, d
	}
	conn, d := p.dialAny(ctx, t, addrs)
	if d != nil {
		p.release()
		return nil, d
	}
	uc := newUpstreamConn(p, conn)
	if !p.track(uc) {
		return nil, errClosed
	}
	p.mu.Lock()
	p.opened++
	p.mu.Unlock()
	p.log.Debug("egress connection opened", "target", t.String(), "addr", conn.RemoteAddr().String())
	return uc, nil
}

// maxDialAddrs bounds the addresses connect tries.
const maxDialAddrs = 4

// resolve returns h's addresses that AddrAllowed accepts, IPv4 first.
func (p *Proxy) resolve(ctx context.Context, h host) ([]netip.Addr, *denial) {
	if h.ip.IsValid() {
		if !p.addrAllowed(h.ip) {
			return nil, deny(http.StatusForbidden, CodeAddressNotAllowed,
				"address %s is private or local, which this sandbox may not reach", h.ip)
		}
		return []netip.Addr{h.ip}, nil
	}
	// The trailing dot makes the name absolute. Without it the resolver may append
	// the host's search domains, and an allowed "*.example.com" would also reach
	// "x.example.com.corp.internal".
	all, err := p.resolver.LookupNetIP(ctx, "ip", h.name+".")
	if err != nil {
		return nil, deny(http.StatusBadGateway, CodeDNSFailed, "cannot resolve host %q: %s", h.name, dnsReason(err))
	}
	var v4, v6, refused []netip.Addr
	for _, a := range all {
		a = a.Unmap()
		switch {
		case !p.addrAllowed(a):
			refused = append(refused, a)
		case a.Is4():
			v4 = append(v4, a)
		default:
			v6 = append(v6, a)
		}
	}
	addrs := append(v4, v6...)
	switch {
	case len(addrs) > 0:
		return addrs[:min(len(addrs), maxDialAddrs)], nil
	case len(refused) > 0:
		return nil, deny(http.StatusForbidden, CodeAddressNotAllowed,
			"host %q resolves only to private or local addresses (%s), which this sandbox may not reach",
			h.name, joinAddrs(refused))
	}
	return nil, deny(http.StatusBadGateway, CodeDNSFailed, "cannot resolve host %q: no addresses", h.name)
}

// dialAny dials addrs in order and returns the first connection made. Each try gets
// an equal share of the time left, as net.Dialer does, so that one unreachable
// address cannot use up the whole timeout.
func (p *Proxy) dialAny(ctx context.Context, t target, addrs []netip.Addr) (net.Conn, *denial) {
	var last error
	for i, a := range addrs {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok {
			share := max(time.Until(deadline)/time.Duration(len(addrs)-i), min(2*time.Second, time.Until(deadline)))
			tctx, cancel = context.WithTimeout(ctx, share)
		}
		conn, err := p.dial(tctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		cancel()
		if err == nil {
			return conn, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, deny(http.StatusBadGateway, CodeDialFailed, "cannot connect to %s: %s", t.String(), dialReason(last))
}

// dialForward is the Transport's DialContext: the same checks as a CONNECT, again,
// so that the Transport cannot reach anything a tunnel could not.
func (p *Proxy) dialForward(ctx context.Context, network, addr string) (net.Conn, error) {
	t, d := p.check(addr, 0)
	if d != nil {
		return nil, d
	}
	up, d := p.connect(ctx, t)
	if d != nil {
		return nil, d
	}
	return up, nil
}

func dnsReason(err error) string {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return "no such host"
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "lookup failed"
}

func dialReason(err error) string {
	var oe *net.OpError
	switch {
	case err == nil:
		return "no address to try"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &oe) && oe.Err != nil:
		return oe.Err.Error()
	}
	return err.Error()
}

func joinPorts(ports []int) string {
	s := make([]string, len(ports))
	for i, port := range ports {
		s[i] = strconv.Itoa(port)
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for i, a := range as {
		if i == maxDialAddrs {
			s = append(s, "...")
			break
		}
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}
