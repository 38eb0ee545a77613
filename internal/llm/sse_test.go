package llm

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []sseEvent
	}{
		{"one event", "data: hello\n\n", []sseEvent{{Data: "hello"}}},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []sseEvent{{Data: "a"}, {Data: "b"}}},
		{"lone CR", "data: a\r\rdata: b\r\r", []sseEvent{{Data: "a"}, {Data: "b"}}},
		{"mixed endings", "data: a\r\n\ndata: b\n\r\n", []sseEvent{{Data: "a"}, {Data: "b"}}},
		{"multi-line data joined by newlines", "data: {\"a\":\ndata:  1}\n\n", []sseEvent{{Data: "{\"a\":\n 1}"}}},
		{"comments are skipped", ": keep-alive\n\n:ping\ndata: x\n: between\n\n", []sseEvent{{Data: "x"}}},
		{"no space after colon", "data:x\n\n", []sseEvent{{Data: "x"}}},
		{"only one space is stripped", "data:  x \n\n", []sseEvent{{Data: " x "}}},
		{"field without colon is an empty value", "data\n\n", []sseEvent{{Data: ""}}},
		{"empty data lines", "data\ndata\n\n", []sseEvent{{Data: "\n"}}},
		{"event type", "event: error\ndata: {}\n\n", []sseEvent{{Type: "error", Data: "{}"}}},
		{"event type does not carry over", "event: ping\ndata: 1\n\ndata: 2\n\n", []sseEvent{{Type: "ping", Data: "1"}, {Data: "2"}}},
		{"id, retry and unknown fields ignored", "id: 7\nretry: 10\nfoo: bar\ndata: x\n\n", []sseEvent{{Data: "x"}}},
		{"an event without data is no event", "event: ping\n\ndata: x\n\n", []sseEvent{{Data: "x"}}},
		{"blank lines between events", "\n\n\ndata: x\n\n\n\n", []sseEvent{{Data: "x"}}},
		{"byte order mark", "\uFEFFdata: x\n\n", []sseEvent{{Data: "x"}}},
		{"last event without a blank line", "data: a\n\ndata: [DONE]", []sseEvent{{Data: "a"}, {Data: "[DONE]"}}},
		{"last event ending in CR", "data: a\r", []sseEvent{{Data: "a"}}},
		{"colon in value", "data: {\"t\":\"a:b\"}\n\n", []sseEvent{{Data: `{"t":"a:b"}`}}},
		{"nothing", "", nil},
	}
	readers := map[string]func(string) io.Reader{
		"whole":        func(s string) io.Reader { return strings.NewReader(s) },
		"byte by byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := newSSEReader(mk(tt.in), 1<<10)
				var got []sseEvent
				for {
					ev, err := r.next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("next: %v", err)
					}
					got = append(got, ev)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events of %q\ngot:  %q\nwant: %q", tt.in, got, tt.want)
				}
			})
		}
	}
}

func TestSSEReaderTooLarge(t *testing.T) {
	tests := []struct{ name, in string }{
		{"one long line", "data: " + strings.Repeat("x", 200) + "\n\n"},
		{"many data lines", strings.Repeat("data: "+strings.Repeat("x", 50)+"\n", 5) + "\n"},
	}
	for _, tt := range tests {
		_, err := newSSEReader(strings.NewReader(tt.in), 100).next()
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: next() error = %v, want ErrTooLarge", tt.name, err)
		}
	}
}

// chunkData is the data of a chunk with one choice whose delta has content.
func chunkData(id, content string) string {
	return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, id, content)
}

func TestStream(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantIDs []string
		wantErr error  // errors.Is target; io.EOF for a clean end
		errText string // substring of the error
	}{
		{
			name:    "chunks then DONE",
			body:    "data: " + chunkData("a", "x") + "\n\ndata: " + chunkData("b", "y") + "\n\ndata: [DONE]\n\n",
			wantIDs: []string{"a", "b"}, wantErr: io.EOF,
		},
		{
			name:    "CRLF, comments and pings",
			body:    ": OPENROUTER PROCESSING\r\n\r\nevent: ping\r\ndata: {}\r\n\r\ndata: " + chunkData("a", "x") + "\r\n\r\ndata: [DONE]\r\n\r\n",
			wantIDs: []string{"a"}, wantErr: io.EOF,
		},
		{
			name:    "ends without DONE",
			body:    "data: " + chunkData("a", "x") + "\n\n",
			wantIDs: []string{"a"}, wantErr: ErrStreamTruncated, errText: `upstream "p": stream ended without data: [DONE]`,
		},
		{
			name:    "empty body",
			body:    "",
			wantErr: ErrStreamTruncated,
		},
		{
			name:    "invalid JSON in an event",
			body:    "data: " + chunkData("a", "x") + "\n\ndata: {\"id\":\n\n",
			wantIDs: []string{"a"}, wantErr: ErrInvalidResponse, errText: `(data begins "{\"id\":")`,
		},
		{
			name:    "error chunk after the 200",
			body:    "data: " + chunkData("a", "x") + "\n\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n",
			wantIDs: []string{"a"}, errText: `upstream "p" sent an error in the stream: overloaded (type "server_error", code "overloaded")`,
		},
		{
			name:    "error event",
			body:    "event: error\ndata: {\"message\":\"context too long\",\"type\":\"invalid_request_error\"}\n\n",
			errText: `sent an error in the stream: context too long`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStream("p", io.NopCloser(strings.NewReader(tt.body)), nil, 1<<20)
			defer s.Close()
			var ids []string
			var err error
			for {
				var c *ChatChunk
				c, err = s.Next()
				if err != nil {
					break
				}
				ids = append(ids, c.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("chunk IDs got %q, want %q", ids, tt.wantIDs)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("final error = %v, want %v", err, tt.wantErr)
			}
			if tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)) {
				t.Errorf("final error = %v, want one containing %q", err, tt.errText)
			}
			if again, _ := s.Next(); again != nil {
				t.Errorf("Next after the end returned a chunk")
			}
			if _, err2 := s.Next(); err2 != err {
				t.Errorf("Next after the end: error = %v, want the same %v", err2, err)
			}
		})
	}
}

func TestStreamAPIErrorFields(t *testing.T) {
	body := "data: {\"error\":{\"message\":\"m\",\"type\":\"t\",\"code\":429}}\n\n"
	s := newStream("p", io.NopCloser(strings.NewReader(body)), nil, 1<<20)
	_, err := s.Next()
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Next error = %v, want an *APIError", err)
	}
	want := APIError{Provider: "p", Status: 0, Type: "t", Code: "429", Message: "m"}
	if *apiErr != want {
		t.Errorf("got %+v, want %+v", *apiErr, want)
	}
}

type closeCounter struct {
	io.Reader
	closes int
}

func (c *closeCounter) Close() error { c.closes++; return nil }

func TestStreamClose(t *testing.T) {
	body := &closeCounter{Reader: strings.NewReader("data: " + chunkData("a", "x") + "\n\ndata: [DONE]\n\n")}
	s := newStream("p", body, nil, 1<<20)
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if body.closes != 1 {
		t.Errorf("body closed %d times, want 1", body.closes)
	}
	if _, err := s.Next(); !errors.Is(err, errStreamClosed) {
		t.Errorf("Next after Close: error = %v, want %v", err, errStreamClosed)
	}

	// Reaching the end closes the body without waiting for Close.
	body = &closeCounter{Reader: strings.NewReader("data: [DONE]\n\n")}
	s = newStream("p", body, nil, 1<<20)
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	if body.closes != 1 {
		t.Errorf("body closed %d times at the end, want 1", body.closes)
	}
	s.Close()
	if body.closes != 1 {
		t.Errorf("body closed %d times after Close, want 1", body.closes)
	}
}

func TestStreamCloseFromAnotherGoroutine(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	s := newStream("p", pr, nil, 1<<20)
	done := make(chan error)
	go func() {
		_, err := s.Next() // blocks: nothing is written
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, errStreamClosed) {
		t.Errorf("Next aborted by Close: error = %v, want %v", err, errStreamClosed)
	}
}
