package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// maxErrorBody bounds how much of a non-2xx body is read for its error message.
const maxErrorBody = 64 << 10

// Client calls one provider's OpenAI-compatible API. It is safe for concurrent use.
type Client struct {
	p       Provider
	key     string
	http    *http.Client
	base    string
	timeout time.Duration
	retries int
	maxBody int64
	log     *slog.Logger
	// sleep and backoff are replaced by tests.
	sleep   func(ctx context.Context, d time.Duration) error
	backoff func(n int) time.Duration
}

// New returns a client for p. The API key is read from p.APIKeyEnv now, not per
// call. p is not validated here; Router does that (see Provider.Validate).
func New(p Provider) *Client {
	c := &Client{
		p:       p,
		key:     p.apiKey(),
		http:    p.HTTPClient,
		base:    strings.TrimRight(p.BaseURL, "/"),
		timeout: p.Timeout,
		retries: p.MaxRetries,
		maxBody: MaxResponseBytes,
		log:     slog.Default(),
		sleep:   sleepCtx,
		backoff: backoff,
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultMaxRetries
	case c.retries < 0:
		c.retries = 0
	}
	return c
}

// Provider returns the provider the client was made for.
func (c *Client) Provider() Provider { return c.p }

// Chat sends req as a non-streaming chat completion (stream and stream_options are
// left out whatever req says) and returns the upstream's answer, which has at least
// one choice. req is not changed.
func (c *Client) Chat(ctx context.Context, req *ChatRequest) (*ChatResponse, error) {
	body, err := c.encodeChat(req, false)
	if err != nil {
		return nil, err
	}
	b, err := c.call(ctx, http.MethodPost, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	resp, err := DecodeChatResponse(b)
	if err != nil {
		return nil, c.invalid("chat completion is not valid JSON: "+err.Error(), b)
	}
	if len(resp.Choices) == 0 {
		return nil, c.invalid("chat completion has no choices", b)
	}
	return resp, nil
}

// ChatStream sends req as a streaming chat completion and returns the stream once
// the upstream has answered 200. Retries cover only this initial connect. req is
// not changed. The caller must call Close on the stream.
func (c *Client) ChatStream(ctx context.Context, req *ChatRequest) (*Stream, error) {
	body, err := c.encodeChat(req, true)
	if err != nil {
		return nil, err
	}
	var s *Stream
	err = c.withRetries(ctx, func() *failure {
		w := newWatchdog(ctx, c.timeout)
		resp, f := c.send(ctx, w, http.MethodPost, "/chat/completions", body, "text/event-stream")
		if f != nil {
			w.stop()
			return f
		}
		if isJSON(resp.Header.Get("Content-Type")) {
			// A server that ignores "stream": true answers with one JSON body.
			defer w.stop()
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			return &failure{err: c.invalid("asked for a stream, got application/json", b)}
		}
		s = newStream(c.p.Name, resp.Body, w, c.maxBody)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Models returns the upstream's GET /models list.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	b, err := c.call(ctx, http.MethodGet, "/models", nil)
	if err != nil {
		return nil, err
	}
	var list ModelList
	if err := decodeObject(b, &list); err != nil {
		return nil, c.invalid("model list is not valid JSON: "+err.Error(), b)
	}
	return list.Data, nil
}

// encodeChat writes req for this upstream: the model without this provider's
// "name/" prefix, and stream set as asked.
func (c *Client) encodeChat(req *ChatRequest, stream bool) ([]byte, error) {
	r := req.Clone()
	r.Model = c.p.upstreamModel(r.Model)
	r.Stream = stream
	if !stream {
		r.StreamOptions = nil
	}
	b, err := marshalNoEscape(r)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: encoding chat request: %w", c.p.Name, err)
	}
	return b, nil
}

// call makes a non-streaming request with retries and returns the 2xx body.
func (c *Client) call(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var out []byte
	err := c.withRetries(ctx, func() *failure {
		w := newWatchdog(ctx, c.timeout)
		defer w.stop()
		resp, f := c.send(ctx, w, method, path, body, "application/json")
		if f != nil {
			return f
		}
		defer resp.Body.Close()
		b, err := readCapped(resp.Body, c.maxBody)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return &failure{err: fmt.Errorf("upstream %q: %s %s: %w", c.p.Name, method, path, err)}
			}
			return c.transportFailure(ctx, w, err)
		}
		out = b
		return nil
	})
	return out, err
}

// send makes one HTTP request under w's context. It returns the response with its
// body open when the status is 2xx, and otherwise the failure, body closed.
func (c *Client) send(ctx context.Context, w *watchdog, method, path string, body []byte, accept string) (*http.Response, *failure) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(w.ctx, method, c.base+path, rd)
	if err != nil {
		return nil, &failure{err: fmt.Errorf("upstream %q: %w", c.p.Name, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "codeexec")
	for k, v := range c.p.Headers {
		req.Header.Set(k, v)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportFailure(ctx, w, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	apiErr := parseAPIError(c.p.Name, resp.StatusCode, b)
	wait, hasWait := retryAfter(resp.Header, time.Now())
	return nil, &failure{
		err:     apiErr,
		retry:   retryableStatus(resp.StatusCode, apiErr.Code),
		wait:    wait,
		hasWait: hasWait,
	}
}

// transportFailure classifies an error of the connection: the caller's context
// ending and the watchdog's timeout are final, anything else is worth a retry.
func (c *Client) transportFailure(ctx context.Context, w *watchdog, err error) *failure {
	switch {
	case ctx.Err() != nil:
		return &failure{err: fmt.Errorf("upstream %q: %w", c.p.Name, ctx.Err())}
	case w.timedOut():
		return &failure{err: fmt.Errorf("upstream %q: %w: no answer within %v", c.p.Name, ErrTimeout, c.timeout)}
	}
	return &failure{err: fmt.Errorf("upstream %q: %w", c.p.Name, err), retry: true}
}

// invalid is the error for an upstream body that is not what was asked for.
func (c *Client) invalid(problem string, body []byte) error {
	return fmt.Errorf("upstream %q: %w: %s (body begins %s)", c.p.Name, ErrInvalidResponse, problem, snippet(body))
}

// readCapped reads r to the end, or fails with ErrTooLarge after max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// isJSON reports whether a Content-Type is JSON.
func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json"
}

// watchdog cancels a request when the upstream is silent for longer than its
// timeout; kick restarts the count. Cancelling is how the wait for headers, a body
// read and a stream's next event are all bounded by one mechanism.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func newWatchdog(parent context.Context, d time.Duration) *watchdog {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{ctx: ctx, cancel: cancel, d: d}
	w.timer = time.AfterFunc(d, func() { cancel(ErrTimeout) })
	return w
}

// kick restarts the silence count.
func (w *watchdog) kick() { w.timer.Reset(w.d) }

// stop releases the timer and the context; the request, if any, is cancelled.
func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// timedOut reports whether the watchdog, not the parent context, ended the request.
func (w *watchdog) timedOut() bool { return errors.Is(context.Cause(w.ctx), ErrTimeout) }
