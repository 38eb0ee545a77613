package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// Reply is an upstream's 2xx reply, body open: a JSON object or an event stream,
// as the request asked.
type Reply struct {
	ContentType string
	// Body is the reply's body; the caller must close it. A read that waits longer
	// than the provider's timeout for more fails with ErrTimeout.
	Body io.ReadCloser
}

// Responses sends body, a request of the Responses API, to the upstream's own
// POST /responses as it is, but for a "model" this provider serves under a
// "name/" prefix, which is sent without it. It returns the reply once its status
// is 2xx, body open: the caller relays it and must close it. An upstream without
// the endpoint answers an *APIError with Status 404 (or 405).
func (c *Client) Responses(ctx context.Context, body []byte, stream bool) (*Reply, error) {
	body, err := c.responsesBody(body)
	if err != nil {
		return nil, err
	}
	accept := "application/json"
	if stream {
		accept = "text/event-stream"
	}
	var reply *Reply
	err = c.withRetries(ctx, func() *failure {
		w := newWatchdog(ctx, c.timeout)
		resp, f := c.send(ctx, w, http.MethodPost, "/responses", body, accept)
		if f != nil {
			w.stop()
			return f
		}
		reply = &Reply{ContentType: resp.Header.Get("Content-Type"), Body: &watchedBody{r: resp.Body, w: w}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reply, nil
}

// responsesBody is body with the model as the upstream names it; body itself
// when that is the model it has.
func (c *Client) responsesBody(body []byte) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, c.invalidRequest(err)
	}
	var model string
	if err := json.Unmarshal(fields["model"], &model); err != nil {
		return nil, c.invalidRequest(err)
	}
	up := c.p.upstreamModel(model)
	if up == model {
		return body, nil
	}
	fields["model"], _ = json.Marshal(up) // a string always marshals
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, c.invalidRequest(err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

func (c *Client) invalidRequest(err error) error {
	return &APIError{Provider: c.p.Name, Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_request",
		Message: "the Responses request for upstream " + c.p.Name + " is not a JSON object with a model: " + err.Error()}
}

// watchedBody is a reply's body under its watchdog: each read that brings data
// restarts the wait, and Close stops it.
type watchedBody struct {
	r io.ReadCloser
	w *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.w.kick()
	}
	if err != nil && err != io.EOF && b.w.timedOut() {
		return n, ErrTimeout
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.stop()
	return b.r.Close()
}
