package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults for the zero values of Policy's fields.
const (
	DefaultMaxConns      = 16
	DefaultMaxTotalConns = 256
	DefaultMaxBytes      = 256 << 20
	DefaultDialTimeout   = 10 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
)

// defaultPorts are the ports a Policy without Ports allows.
var defaultPorts = []int{80, 443}

// Policy is what one execution may reach through the proxy. It is plain data: the
// effective policy of an execution can be logged and compared as one value.
type Policy struct {
	// Allow lists the hosts that may be reached: "example.com" is that name exactly,
	// "*.example.com" any name under it (not example.com itself), "203.0.113.7" or
	// "2001:db8::7" that address. Names are case-insensitive. An IP address is
	// reachable only if it is listed as one; names never match addresses. An empty
	// list allows nothing.
	Allow []string
	// Ports are the destination ports allowed for every host; empty means 80 and 443.
	Ports []int
	// MaxConns caps the upstream connections open at once; 0 means DefaultMaxConns.
	MaxConns int
	// MaxTotalConns caps the upstream connections attempted over the proxy's life;
	// 0 means DefaultMaxTotalConns.
	MaxTotalConns int
	// MaxBytes caps the bytes sent and received, together, over all upstream
	// connections in the proxy's life; 0 means DefaultMaxBytes.
	MaxBytes int64
	// DialTimeout bounds name resolution and connecting together; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleTimeout closes a connection, or a tunnel, that carried no byte in either
	// direction for this long; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Validate reports the first malformed field of p.
func (p Policy) Validate() error {
	for i, a := range p.Allow {
		if err := ValidatePattern(a); err != nil {
			return fmt.Errorf("Policy.Allow[%d]: %w", i, err)
		}
	}
	for i, port := range p.Ports {
		if port < 1 || port > 65535 {
			return fmt.Errorf("Policy.Ports[%d]: %d is not a TCP port", i, port)
		}
	}
	switch {
	case p.MaxConns < 0:
		return fmt.Errorf("Policy.MaxConns: %d is negative", p.MaxConns)
	case p.MaxTotalConns < 0:
		return fmt.Errorf("Policy.MaxTotalConns: %d is negative", p.MaxTotalConns)
	case p.MaxBytes < 0:
		return fmt.Errorf("Policy.MaxBytes: %d is negative", p.MaxBytes)
	case p.DialTimeout < 0:
		return fmt.Errorf("Policy.DialTimeout: %v is negative", p.DialTimeout)
	case p.IdleTimeout < 0:
		return fmt.Errorf("Policy.IdleTimeout: %v is negative", p.IdleTimeout)
	}
	return nil
}

// withDefaults returns p with every zero field replaced by its default.
func (p Policy) withDefaults() Policy {
	if len(p.Ports) == 0 {
		p.Ports = defaultPorts
	}
	if p.MaxConns == 0 {
		p.MaxConns = DefaultMaxConns
	}
	if p.MaxTotalConns == 0 {
		p.MaxTotalConns = DefaultMaxTotalConns
	}
	if p.MaxBytes == 0 {
		p.MaxBytes = DefaultMaxBytes
	}
	if p.DialTimeout == 0 {
		p.DialTimeout = DefaultDialTimeout
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	p.Allow = append([]string(nil), p.Allow...)
	p.Ports = append([]int(nil), p.Ports...)
	return p
}

// ErrNotPermitted is wrapped by Covered's error when a requested pattern is well
// formed but outside what the operator permits.
var ErrNotPermitted = errors.New("not permitted by the server's allowlist")

// ValidatePattern reports whether p is a well-formed allowlist entry: a host name,
// "*." and a host name, or an IP address.
func ValidatePattern(p string) error {
	_, err := parsePattern(p)
	return err
}

// Covered reports whether every requested pattern allows only hosts that the
// permitted patterns allow: "*.a.com" covers "x.a.com", "*.x.a.com" and itself, but
// not "a.com". The error names the first requested pattern that is malformed or not
// covered; for the latter it wraps ErrNotPermitted.
func Covered(requested, permitted []string) error {
	perms := make([]pattern, 0, len(permitted))
	for _, s := range permitted {
		p, err := parsePattern(s)
		if err != nil {
			return fmt.Errorf("permitted %w", err)
		}
		perms = append(perms, p)
	}
	for _, s := range requested {
		q, err := parsePattern(s)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(perms, func(p pattern) bool { return p.covers(q) }) {
			return fmt.Errorf("allowlist entry %s: %w (permitted: %s)", quote(s), ErrNotPermitted, listOrNone(permitted))
		}
	}
	return nil
}

// host is a parsed destination host: a name, lowercase and without a trailing dot,
// or an IP address, unmapped and without zone.
type host struct {
	name string
	ip   netip.Addr
}

func (h host) String() string {
	if h.ip.IsValid() {
		return h.ip.String()
	}
	return h.name
}

// urlHost is h as a URL writes it: IPv6 addresses in brackets.
func (h host) urlHost() string {
	if h.ip.Is6() {
		return "[" + h.ip.String() + "]"
	}
	return h.String()
}

// pattern is a parsed allowlist entry.
type pattern struct {
	host
	wildcard bool // any name strictly under host.name
}

func (p pattern) String() string {
	if p.wildcard {
		return "*." + p.name
	}
	return p.host.String()
}

// matches reports whether p allows h.
func (p pattern) matches(h host) bool {
	switch {
	case p.ip.IsValid() || h.ip.IsValid():
		return p.ip == h.ip
	case p.wildcard:
		return strings.HasSuffix(h.name, "."+p.name)
	default:
		return p.name == h.name
	}
}

// covers reports whether every host q matches is matched by p.
func (p pattern) covers(q pattern) bool {
	if !q.wildcard {
		return p.matches(q.host)
	}
	return p.wildcard && (q.name == p.name || strings.HasSuffix(q.name, "."+p.name))
}

// parsePattern parses an allowlist entry; its errors quote s.
func parsePattern(s string) (pattern, error) {
	bad := func(format string, args ...any) (pattern, error) {
		return pattern{}, fmt.Errorf("allowlist entry %s: "+format, append([]any{quote(s)}, args...)...)
	}
	switch {
	case s == "":
		return bad("empty")
	case s == "*" || s == "*.":
		return bad(`would allow every host; name a domain, as in "*.example.com"`)
	case isPrefix(s):
		return bad("address ranges are not supported; list each address")
	case strings.Contains(s, "/"):
		return bad(`is a URL; give only the host, as in "example.com"`)
	}
	rest, wild := strings.CutPrefix(s, "*.")
	if strings.Contains(rest, "*") {
		return bad(`"*" may only be the whole first label, as in "*.example.com"`)
	}
	h, err := parseHost(rest)
	if err != nil {
		if hp, _, perr := splitPort(rest); perr == nil {
			if _, herr := parseHost(hp); herr == nil {
				return bad("has a port; ports go in the policy's Ports")
			}
		}
		return bad("%v", err)
	}
	if wild && h.ip.IsValid() {
		return bad(`"*." cannot precede an IP address`)
	}
	return pattern{host: h, wildcard: wild}, nil
}

func isPrefix(s string) bool {
	_, err := netip.ParsePrefix(strings.Trim(s, "[]"))
	return err == nil
}

// splitPort splits "host:port" with a numeric port; it exists to recognise the
// mistake of writing a port into an allowlist entry.
func splitPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	port, ok := parsePort(s[i+1:])
	if !ok {
		return "", 0, errors.New("bad port")
	}
	return s[:i], port, nil
}

// parsePort parses a decimal TCP port, 1 to 65535, without sign or spaces.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// maxNameLen is the longest host name DNS can carry, without the trailing dot.
const maxNameLen = 253

// parseHost parses a host as written in an allowlist entry or a request target,
// without port: a name, an IPv4 address, or an IPv6 address with or without
// brackets. Its errors give the reason only; callers quote the input.
func parseHost(s string) (host, error) {
	if s == "" {
		return host{}, errors.New("empty host")
	}
	if len(s) > maxNameLen+1 {
		return host{}, fmt.Errorf("longer than %d characters", maxNameLen)
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		a, err := netip.ParseAddr(inner)
		if !ok || err != nil || !a.Is6() {
			return host{}, errors.New("brackets must hold an IPv6 address")
		}
		s = inner
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return host{}, errors.New("IPv6 zones are not allowed")
		}
		return host{ip: a.Unmap()}, nil
	}
	name, err := parseName(s)
	if err != nil {
		return host{}, err
	}
	return host{name: name}, nil
}

// parseName normalizes a DNS host name: lowercase, no trailing dot. Beyond the
// letters, digits and '-' of RFC 1123 it accepts '_', which real web hosts use.
func parseName(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", errors.New("empty host name")
	}
	if len(name) > maxNameLen {
		return "", fmt.Errorf("longer than %d characters", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		case c >= utf8.RuneSelf:
			return "", errors.New(`not ASCII; write an international name in its ASCII "xn--" form`)
		default:
			return "", fmt.Errorf("character %q not allowed (use letters, digits, '-', '_' and '.')", c)
		}
	}
	name = strings.ToLower(name)
	labels := strings.Split(name, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "", errors.New("empty label")
		case len(l) > 63:
			return "", fmt.Errorf("label %s longer than 63 characters", quote(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return "", fmt.Errorf("label %s starts or ends with '-'", quote(l))
		}
	}
	// A name ending in a number is an IPv4 address to browsers and to inet_aton
	// ("127.1", "0x7f.1"): treated as a name it would pass the allowlist as one thing
	// and be dialled as another.
	if isNumeric(labels[len(labels)-1]) {
		return "", errors.New("ends in a number but is not an IP address")
	}
	return name, nil
}

// isNumeric reports whether a lowercase label is a number as the WHATWG URL
// standard's IPv4 parser reads one: decimal digits, or "0x" and hex digits.
func isNumeric(l string) bool {
	if hex, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

// quote quotes s for a message: ASCII only, so it is safe in an HTTP status line,
// and cut to a readable length.
func quote(s string) string {
	const max = 100
	if len(s) > max {
		return fmt.Sprintf("%+q...", s[:max])
	}
	return fmt.Sprintf("%+q", s)
}

// listOrNone joins patterns for a message, naming at most ten.
func listOrNone(ps []string) string {
	const max = 10
	switch {
	case len(ps) == 0:
		return "none"
	case len(ps) > max:
		return fmt.Sprintf("%s and %d more", listOrNone(ps[:max]), len(ps)-max)
	}
	q := make([]string, len(ps))
	for i, p := range ps {
		if len(p) > 100 {
			p = p[:100] + "..."
		}
		q[i] = strings.Map(func(r rune) rune {
			if r < ' ' || r >= utf8.RuneSelf {
				return '?'
			}
			return r
		}, p)
	}
	return strings.Join(q, ", ")
}
