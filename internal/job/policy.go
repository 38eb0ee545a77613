package job

import (
	"errors"
	"fmt"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
)

// Policy is a server's execution policy: the limits a request gets when it asks for
// none, the most it may ask for, and the hosts it may reach. Plain data; its methods
// are pure, so that every face (the HTTP API, the gateway, later ones) turns a
// request's wishes into Limits and an egress policy by the same rules.
type Policy struct {
	// Default are the limits of a request that asks for none; Max caps what a request
	// may ask for. Every default should be within its maximum.
	Default, Max Limits
	// NetworkAllow are the host patterns ("example.com", "*.example.com") a request's
	// network setting may name; empty: requests get no network.
	NetworkAllow []string
}

// The rules a Policy refuses a request by; a PolicyError wraps one of them.
var (
	ErrInvalidTimeout      = errors.New("sandbox: timeout outside the policy")
	ErrInvalidMemory       = errors.New("sandbox: memory outside the policy")
	ErrInvalidNetwork      = errors.New("sandbox: malformed network setting")
	ErrNetworkNotPermitted = errors.New("sandbox: network not permitted")
)

// PolicyError is a request a Policy refuses. Its message says what was asked and
// what is allowed, for the caller as it is; Unwrap gives the rule (ErrInvalidTimeout,
// …), for a face to map to its own code.
type PolicyError struct {
	Rule error
	Msg  string
}

func (e *PolicyError) Error() string { return e.Msg }
func (e *PolicyError) Unwrap() error { return e.Rule }

func refuse(rule error, format string, args ...any) *PolicyError {
	return &PolicyError{Rule: rule, Msg: fmt.Sprintf(format, args...)}
}

// minMemoryMiB is the least memory a request may ask for, Limits.Validate's minimum.
const minMemoryMiB = 16

// Limits are the limits of a request that asks for timeoutMS milliseconds and
// memoryMB MiB (nil: the default): the defaults with what it asks for, each within
// 1..Max (memory from 16 MiB). Asking for more is an error, never a silent clamp:
// the caller would otherwise believe it got what it asked for.
func (p Policy) Limits(timeoutMS, memoryMB *int64) (Limits, error) {
	l := p.Default
	if timeoutMS != nil {
		// Compared in milliseconds, before any conversion: a Duration of a huge
		// timeout_ms overflows and could wrap into a small timeout that passes.
		maxMS := p.Max.Timeout.Milliseconds()
		if *timeoutMS <= 0 || *timeoutMS > maxMS {
			return Limits{}, refuse(ErrInvalidTimeout, "timeout_ms %d is outside 1..%d", *timeoutMS, maxMS)
		}
		l.Timeout = time.Duration(*timeoutMS) * time.Millisecond
	}
	if memoryMB != nil {
		maxMB := p.Max.MemoryBytes >> 20
		if *memoryMB < minMemoryMiB || *memoryMB > maxMB {
			return Limits{}, refuse(ErrInvalidMemory, "memory_mb %d is outside %d..%d", *memoryMB, minMemoryMiB, maxMB)
		}
		l.MemoryBytes = *memoryMB << 20
	}
	return l, nil
}

// Network turns a request's network setting ("", "none" or "allow=HOST[,HOST…]", as
// egress.ParseSpec reads it) into the egress policy of its execution: nil for none,
// and only hosts that the operator's NetworkAllow patterns cover.
func (p Policy) Network(spec string) (*egress.Policy, error) {
	policy, err := egress.ParseSpec(spec)
	if err != nil {
		return nil, refuse(ErrInvalidNetwork, "%v", err)
	}
	if policy == nil {
		return nil, nil
	}
	if len(p.NetworkAllow) == 0 {
		return nil, refuse(ErrNetworkNotPermitted,
			"this server permits no network access; its operator can allow hosts with `codeexec serve --net-allow`")
	}
	if err := egress.Covered(policy.Allow, p.NetworkAllow); err != nil {
		return nil, refuse(ErrNetworkNotPermitted, "%v", err)
	}
	return policy, nil
}
