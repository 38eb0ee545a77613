package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// An execute request with "stream": true is answered with server-sent events as the
// program runs, each flushed as it is written:
//
//	event: stdout
//	data: {"text":"…"}
//
//	event: stderr
//	data: {"text":"…"}
//
//	event: result
//	data: {"status":"ok",…}     the Result, as /v1/execute answers it
//
// Output events come in the order the program wrote each stream; their texts,
// joined, are the Result's stdout and stderr. The last event is always result, or
// error with OpenAI's error shape ({"error":{"message","type","code"}}) when the
// execution could not be run; the response then ends. There is no "data: [DONE]":
// named events end with a final event of their own, as OpenAI's Responses API ends
// with response.completed. Anything refused before the execution starts (a bad
// body, a full queue, an unknown session) is a plain HTTP error, as without stream.

// sseWriteTimeout bounds each event's write: a client that stops reading cannot hold
// the handler, nor the execution's output, for longer.
const sseWriteTimeout = 30 * time.Second

// execStream writes one execution's events. It is safe for concurrent use; after a
// write fails (the client left or stalled), it writes nothing more.
type execStream struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	rc     *http.ResponseController
	begun  bool // the headers went out
	broken error
	text   [2]utf8Text // stdout, stderr
}

// Stream names, as the events are called.
var streamNames = [2]string{"stdout", "stderr"}

// textEvent is the data of a stdout or stderr event.
type textEvent struct {
	Text string `json:"text"`
}

// newExecStream prepares to answer the request with an event stream; nothing is
// written until start. The caller must call close.
func newExecStream(w http.ResponseWriter) *execStream {
	return &execStream{w: w, rc: http.NewResponseController(w)}
}

// start sends the stream's headers, at once, so that the client knows the execution
// has started. Later calls do nothing.
func (s *execStream) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.begun {
		return
	}
	s.begun = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise hold the events back
	s.w.WriteHeader(http.StatusOK)
	s.flush()
}

// started reports whether the stream's headers went out; false for a nil stream
// (a request without "stream").
func (s *execStream) started() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begun
}

// output returns the writer of stream i (0 stdout, 1 stderr) for job.Request.
func (s *execStream) output(i int) io.Writer { return streamWriter{s, i} }

type streamWriter struct {
	s *execStream
	i int
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if t := w.s.text[w.i].next(p, false); t != "" {
		w.s.event(streamNames[w.i], textEvent{t})
	}
	if w.s.broken != nil {
		return 0, w.s.broken
	}
	return len(p), nil
}

// finish sends what is left of the output, then the Result (or any final event).
func (s *execStream) finish(event string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.text {
		if t := s.text[i].next(nil, true); t != "" {
			s.event(streamNames[i], textEvent{t})
		}
	}
	s.event(event, v)
}

// fail ends the stream with an error event.
func (s *execStream) fail(status int, code, message string) {
	s.finish("error", errorBody{Error: apiError{Message: message, Type: errorType(status), Code: code}})
}

// close lifts the write deadline: without the server's WriteTimeout nothing else
// would, and it would outlive the request on a kept-alive connection.
func (s *execStream) close() {
	_ = s.rc.SetWriteDeadline(time.Time{})
}

// event writes one event and flushes it. s.mu must be held.
func (s *execStream) event(name string, v any) {
	if s.broken != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(errorBody{Error: apiError{Message: "encode event: " + err.Error(), Type: "server_error", Code: "internal_error"}})
		name = "error"
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.broken = err
		return
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data); err != nil {
		s.broken = err
		return
	}
	s.flush()
}

func (s *execStream) flush() {
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) && s.broken == nil {
		s.broken = err
	}
}

// utf8Text turns a stream of bytes, cut anywhere, into text exactly as
// strings.ToValidUTF8(all, "\uFFFD") would: a sequence cut at the end of a chunk
// waits for the next, and a run of invalid bytes across chunks gives one U+FFFD.
type utf8Text struct {
	tail    []byte // the start of a sequence the next chunk may complete
	invalid bool   // the last byte seen was invalid
}

// next returns the text of p after what came before; with final, nothing more comes.
func (u *utf8Text) next(p []byte, final bool) string {
	buf := append(u.tail, p...)
	u.tail = nil
	var b strings.Builder
	for i := 0; i < len(buf); {
		r, size := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && size == 1 {
			if !final && !utf8.FullRune(buf[i:]) {
				u.tail = append([]byte(nil), buf[i:]...)
				break
			}
			if !u.invalid {
				b.WriteString("\uFFFD")
			}
			u.invalid = true
			i++
			continue
		}
		u.invalid = false
		b.Write(buf[i : i+size])
		i += size
	}
	return b.String()
}
