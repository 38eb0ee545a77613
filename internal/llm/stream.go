package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
)

// errStreamClosed is what Next returns after Close.
var errStreamClosed = errors.New("llm: Next called on a closed stream")

// Stream is a streaming chat completion being read. Next must be called from one
// goroutine at a time; Close may be called from any, also to abort a Next that is
// waiting. It holds no goroutine: Next reads the body in the caller's goroutine,
// and Close (or the context ending) closes the body.
type Stream struct {
	provider string
	events   *sseReader
	w        *watchdog // nil when not reading from the network (tests)
	err      error     // the error every later Next returns: io.EOF or the failure
	closed   atomic.Bool
	release  func() error // stops the watchdog and closes the body, once
}

// newStream reads chunks from body, an upstream's text/event-stream. w, if not nil,
// is kicked by every read and stopped by Close.
func newStream(provider string, body io.ReadCloser, w *watchdog, maxEvent int64) *Stream {
	s := &Stream{provider: provider, w: w}
	var r io.Reader = body
	if w != nil {
		r = &kickReader{r: body, w: w}
	}
	s.events = newSSEReader(r, int(maxEvent))
	s.release = sync.OnceValue(func() error {
		if w != nil {
			w.stop()
		}
		return body.Close()
	})
	return s
}

// Next returns the next chunk, or io.EOF after "data: [DONE]". Any other error is
// final: an *APIError the upstream sent in the stream, ErrStreamTruncated,
// ErrTimeout, ErrInvalidResponse, ErrTooLarge, or the context's error. After a
// final error or io.EOF the body is already closed, but Close is still allowed.
func (s *Stream) Next() (*ChatChunk, error) {
	if s.closed.Load() {
		return nil, errStreamClosed
	}
	if s.err != nil {
		return nil, s.err
	}
	chunk, err := s.next()
	if err != nil {
		s.err = err
		s.release()
		return nil, err
	}
	return chunk, nil
}

func (s *Stream) next() (*ChatChunk, error) {
	for {
		ev, err := s.events.next()
		if err != nil {
			return nil, s.readError(err)
		}
		switch ev.Type {
		case "", "message":
		case "error":
			return nil, parseAPIError(s.provider, 0, []byte(ev.Data))
		default:
			continue // an event type OpenAI does not send, e.g. a provider's "ping"
		}
		if strings.TrimSpace(ev.Data) == "[DONE]" {
			return nil, io.EOF
		}
		chunk, err := DecodeChatChunk([]byte(ev.Data))
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w: stream event is not valid JSON: %v (data begins %s)",
				s.provider, ErrInvalidResponse, err, snippet([]byte(ev.Data)))
		}
		if raw, ok := chunk.Extra["error"]; ok {
			// OpenAI reports a failure after the 200 as a chunk {"error":{…}}.
			return nil, parseAPIError(s.provider, 0, []byte(`{"error":`+string(raw)+`}`))
		}
		return chunk, nil
	}
}

// readError explains why reading the body failed.
func (s *Stream) readError(err error) error {
	switch {
	case s.closed.Load():
		return errStreamClosed
	case err == io.EOF:
		return fmt.Errorf("upstream %q: %w", s.provider, ErrStreamTruncated)
	case errors.Is(err, ErrTooLarge):
		return fmt.Errorf("upstream %q: stream: %w", s.provider, err)
	case s.w != nil && s.w.timedOut():
		return fmt.Errorf("upstream %q: %w: no data for %v", s.provider, ErrTimeout, s.w.d)
	case s.w != nil && s.w.ctx.Err() != nil:
		// The caller's context ended: say so rather than echo the transport's error.
		return fmt.Errorf("upstream %q: stream: %w", s.provider, context.Cause(s.w.ctx))
	}
	return fmt.Errorf("upstream %q: reading stream: %w", s.provider, err)
}

// Close ends the stream and closes the body; it may be called more than once, and
// while another goroutine waits in Next, which then returns an error.
func (s *Stream) Close() error {
	s.closed.Store(true)
	return s.release()
}

// kickReader tells the watchdog about every read that brought data, so that only
// silence, not a long stream, times out. Comments (": keep-alive") count as data.
type kickReader struct {
	r io.Reader
	w *watchdog
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.w.kick()
	}
	return n, err
}
