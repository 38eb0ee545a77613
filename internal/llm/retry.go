package llm

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Retry policy. Only failures that another try may fix are retried: connection
// errors, 408, 409 (OpenAI's lock timeouts), 429 and 5xx, as the OpenAI SDKs do.
// A timeout is not retried: a model too slow once is likely slow again, and trying
// again would multiply the wait the caller already set a limit on.
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 8 * time.Second
	// maxRetryAfter is the longest Retry-After honoured; a longer one ends the call
	// with the upstream's error, since holding a client's request for minutes is
	// worse than telling it.
	maxRetryAfter = 60 * time.Second
)

// retryableStatus reports whether an answer with this status and error code is
// worth another try. insufficient_quota is a 429 that waiting does not fix.
func retryableStatus(status int, code string) bool {
	switch {
	case code == "insufficient_quota":
		return false
	case status == http.StatusRequestTimeout, status == http.StatusConflict,
		status == http.StatusTooManyRequests, status >= 500:
		return true
	}
	return false
}

// backoff is the wait before retry n (0 for the first retry): exponential from
// backoffBase up to backoffMax, with "equal jitter" (half fixed, half random) so that
// many clients rejected together do not come back together.
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 8 && backoffBase<<n < backoffMax {
		d = backoffBase << n
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads the wait an upstream asks for: retry-after-ms (OpenAI), or
// Retry-After in seconds or as an HTTP date. ok is false when it asks for none.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < 1e12 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 1e9 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// sleepCtx waits for d or until ctx is done, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure is the outcome of one failed attempt.
type failure struct {
	err   error
	retry bool
	// wait is the upstream's Retry-After, when hasWait.
	wait    time.Duration
	hasWait bool
}

// withRetries runs try until it succeeds, fails for good, or the attempts are used
// up, waiting between attempts. It returns the last attempt's error.
func (c *Client) withRetries(ctx context.Context, try func() *failure) error {
	for n := 0; ; n++ {
		f := try()
		if f == nil {
			return nil
		}
		if !f.retry || n >= c.retries || ctx.Err() != nil {
			return f.err
		}
		wait := c.backoff(n)
		if f.hasWait {
			if f.wait > maxRetryAfter {
				return f.err
			}
			wait = f.wait
		}
		c.log.Warn("upstream call failed, retrying", "provider", c.p.Name,
			"attempt", n+1, "wait", wait, "err", f.err)
		if err := c.sleep(ctx, wait); err != nil {
			return &waitError{ctx: err, last: f.err}
		}
	}
}

// waitError is a call cancelled while waiting to retry; it is the context's error
// and says what the last attempt got.
type waitError struct{ ctx, last error }

func (e *waitError) Error() string {
	return e.ctx.Error() + " while waiting to retry; last attempt: " + e.last.Error()
}

func (e *waitError) Unwrap() []error { return []error{e.ctx, e.last} }
