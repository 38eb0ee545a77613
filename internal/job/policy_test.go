package job

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func testPolicy() Policy {
	max := DefaultLimits()
	max.Timeout = 5 * time.Minute
	max.MemoryBytes = 4 << 30
	return Policy{Default: DefaultLimits(), Max: max, NetworkAllow: []string{"*.example.com", "pypi.org"}}
}

func i64(v int64) *int64 { return &v }

// TestPolicyLimits: what a request asks for replaces the default within 1..Max, and
// anything outside is refused with its rule and the range, never clamped.
func TestPolicyLimits(t *testing.T) {
	p := testPolicy()
	def := p.Default
	withTimeout := func(d time.Duration) Limits { l := def; l.Timeout = d; return l }
	withMemory := func(b int64) Limits { l := def; l.MemoryBytes = b; return l }
	for _, tt := range []struct {
		name              string
		timeoutMS, memory *int64
		want              Limits
		rule              error
		msg               string
	}{
		{name: "nothing asked", want: def},
		{name: "timeout", timeoutMS: i64(1500), want: withTimeout(1500 * time.Millisecond)},
		{name: "timeout at the maximum", timeoutMS: i64(300000), want: withTimeout(5 * time.Minute)},
		{name: "timeout above", timeoutMS: i64(300001), rule: ErrInvalidTimeout, msg: "timeout_ms 300001 is outside 1..300000"},
		{name: "timeout zero", timeoutMS: i64(0), rule: ErrInvalidTimeout, msg: "timeout_ms 0 is outside 1..300000"},
		{name: "timeout negative", timeoutMS: i64(-5), rule: ErrInvalidTimeout, msg: "timeout_ms -5 is outside 1..300000"},
		// As a Duration it would wrap around to a small positive timeout.
		{name: "timeout that overflows a Duration", timeoutMS: i64(math.MaxInt64), rule: ErrInvalidTimeout,
			msg: "timeout_ms 9223372036854775807 is outside 1..300000"},
		{name: "memory", memory: i64(256), want: withMemory(256 << 20)},
		{name: "memory at the minimum", memory: i64(16), want: withMemory(16 << 20)},
		{name: "memory at the maximum", memory: i64(4096), want: withMemory(4 << 30)},
		{name: "memory below", memory: i64(15), rule: ErrInvalidMemory, msg: "memory_mb 15 is outside 16..4096"},
		{name: "memory above", memory: i64(4097), rule: ErrInvalidMemory, msg: "memory_mb 4097 is outside 16..4096"},
		{name: "both", timeoutMS: i64(2000), memory: i64(64), want: func() Limits {
			l := withTimeout(2 * time.Second)
			l.MemoryBytes = 64 << 20
			return l
		}()},
		// The timeout is checked first.
		{name: "both bad", timeoutMS: i64(0), memory: i64(1), rule: ErrInvalidTimeout, msg: "timeout_ms 0 is outside 1..300000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Limits(tt.timeoutMS, tt.memory)
			if tt.rule == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Limits(%v, %v) = %+v, %v; want %+v, nil", asked(tt.timeoutMS), asked(tt.memory), got, err, tt.want)
				}
				return
			}
			var pe *PolicyError
			if !errors.Is(err, tt.rule) || !errors.As(err, &pe) || err.Error() != tt.msg {
				t.Fatalf("Limits(%v, %v) error = %v; want %q wrapping %v", asked(tt.timeoutMS), asked(tt.memory), err, tt.msg, tt.rule)
			}
		})
	}
}

func asked(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestPolicyNetwork: a network setting gives hosts only within the operator's
// patterns; a malformed setting and one the patterns do not cover are refused by
// their own rules.
func TestPolicyNetwork(t *testing.T) {
	p := testPolicy()
	closed := p
	closed.NetworkAllow = nil
	for _, tt := range []struct {
		name   string
		p      Policy
		spec   string
		allow  []string // nil: no network
		rule   error
		msgHas string
	}{
		{name: "empty", p: p, spec: ""},
		{name: "none", p: p, spec: "none"},
		{name: "none on a closed server", p: closed, spec: "none"},
		{name: "covered host", p: p, spec: "allow=api.example.com", allow: []string{"api.example.com"}},
		{name: "covered pattern", p: p, spec: "allow=*.x.example.com,pypi.org", allow: []string{"*.x.example.com", "pypi.org"}},
		{name: "uncovered host", p: p, spec: "allow=evil.com", rule: ErrNetworkNotPermitted, msgHas: "evil.com"},
		{name: "the parent of a wildcard", p: p, spec: "allow=example.com", rule: ErrNetworkNotPermitted, msgHas: "example.com"},
		{name: "closed server", p: closed, spec: "allow=api.example.com", rule: ErrNetworkNotPermitted, msgHas: "permits no network access"},
		{name: "malformed", p: p, spec: "everything", rule: ErrInvalidNetwork},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Network(tt.spec)
			if tt.rule != nil {
				var pe *PolicyError
				if got != nil || !errors.Is(err, tt.rule) || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.msgHas) {
					t.Fatalf("Network(%q) = %+v, %v; want an error of %v naming %q", tt.spec, got, err, tt.rule, tt.msgHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("Network(%q): %v", tt.spec, err)
			}
			if tt.allow == nil {
				if got != nil {
					t.Fatalf("Network(%q) = %+v, want nil (no network)", tt.spec, got)
				}
				return
			}
			if got == nil || !slices.Equal(got.Allow, tt.allow) {
				t.Fatalf("Network(%q) = %+v, want Allow %q", tt.spec, got, tt.allow)
			}
		})
	}
}
