package api

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

func TestUTF8Text(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "\n", "é", "€", "𝄞", "\xff", "\xe2\x82", "\x82", "\xf0\x9d", "\uFFFD", "\xc0\xaf"}
	for i := 0; i < 2000; i++ {
		var in strings.Builder
		for n := rng.IntN(12); n > 0; n-- {
			in.WriteString(pieces[rng.IntN(len(pieces))])
		}
		data := []byte(in.String())
		var u utf8Text
		var got strings.Builder
		for rest := data; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			got.WriteString(u.next(rest[:k], false))
			rest = rest[k:]
		}
		got.WriteString(u.next(nil, true))
		if want := strings.ToValidUTF8(string(data), "\uFFFD"); got.String() != want {
			t.Fatalf("text of %q in chunks = %q, want %q", data, got.String(), want)
		}
	}
}

type sseEvent struct {
	name string
	data string
}

// sseStream reads a response's server-sent events one at a time.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// postStream posts body to url and checks that the answer is an event stream; ctx
// ends the request.
func postStream(t *testing.T, ctx context.Context, url, body string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads one event; ok is false at the end of the stream.
func (s *sseStream) next() (ev sseEvent, ok bool) {
	s.t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if line != "" || ev.name != "" {
				s.t.Fatalf("stream ended inside an event: %q", line)
			}
			return ev, false
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name == "" || ev.data == "" {
				s.t.Fatalf("event without a name or data: %+v", ev)
			}
			return ev, true
		case strings.HasPrefix(line, "event: ") && ev.name == "":
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && ev.data == "":
			ev.data = strings.TrimPrefix(line, "data: ")
		default:
			s.t.Fatalf("unexpected line %q", line)
		}
	}
}

// rest reads the events up to the end of the stream, checks that output events
// come first and one result or error last, and returns the output and the last one.
func (s *sseStream) rest() (stdout, stderr string, last sseEvent) {
	s.t.Helper()
	for {
		ev, ok := s.next()
		if !ok {
			if last.name == "" {
				s.t.Fatal("the stream ended without a result or error event")
			}
			return stdout, stderr, last
		}
		if last.name != "" {
			s.t.Fatalf("event %+v after the final %q", ev, last.name)
		}
		switch ev.name {
		case "stdout", "stderr":
			var te textEvent
			if err := json.Unmarshal([]byte(ev.data), &te); err != nil || te.Text == "" {
				s.t.Fatalf("bad %s event %q: %v", ev.name, ev.data, err)
			}
			if ev.name == "stdout" {
				stdout += te.Text
			} else {
				stderr += te.Text
			}
		case "result", "error":
			last = ev
		default:
			s.t.Fatalf("unknown event %q", ev.name)
		}
	}
}

func streamResult(t *testing.T, ev sseEvent) job.Result {
	t.Helper()
	var res job.Result
	if ev.name != "result" {
		t.Fatalf("final event %s %s, want result", ev.name, ev.data)
	}
	if err := json.Unmarshal([]byte(ev.data), &res); err != nil {
		t.Fatalf("result event is not a Result: %v: %s", err, ev.data)
	}
	return res
}

func TestExecuteStream(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	url := hs.URL + "/v1/execute"

	t.Run("output then result", func(t *testing.T) {
		s := postStream(t, context.Background(), url, `{"stream": true, "code": "import sys\nprint('out1')\nprint('err1', file=sys.stderr)\nsys.stdout.buffer.write(b'cut \\xe2\\x82')\nsys.stdout.buffer.write(b'\\xac\\n')\n6 * 7"}`)
		stdout, stderr, last := s.rest()
		res := streamResult(t, last)
		if res.Status != job.StatusOK || sandboxDeref(res.Result) != "42" || res.Stdout != "out1\ncut €\n" || res.Stderr != "err1\n" {
			t.Fatalf("result %s %s stdout %q stderr %q", res.Status, sandboxDeref(res.Result), res.Stdout, res.Stderr)
		}
		if stdout != res.Stdout || stderr != res.Stderr {
			t.Errorf("events hold %q and %q, the Result %q and %q", stdout, stderr, res.Stdout, res.Stderr)
		}
	})

	t.Run("output before the end", func(t *testing.T) {
		// The program never ends by itself: its first line can only come while it runs.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := postStream(t, ctx, url, `{"stream": true, "timeout_ms": 120000, "code": "print('first')\nwhile True: pass"}`)
		for text := ""; text != "first\n"; {
			ev, ok := s.next()
			var te textEvent
			if !ok || ev.name != "stdout" || json.Unmarshal([]byte(ev.data), &te) != nil || !strings.HasPrefix("first\n", text+te.Text) {
				t.Fatalf("event %+v after %q, want stdout events of first", ev, text)
			}
			text += te.Text
		}
	})

	t.Run("refused before it starts", func(t *testing.T) {
		apiErr(t, do(t, "POST", url, `{"stream": true}`), http.StatusBadRequest, "missing_code")
	})

	t.Run("error event", func(t *testing.T) {
		var created CreateSessionReply
		json.Unmarshal(do(t, "POST", hs.URL+"/v1/sessions", `{}`).body, &created)
		base := hs.URL + "/v1/sessions/" + created.ID
		if res := result(t, do(t, "POST", base+"/execute", `{"code": "while True: pass", "timeout_ms": 300}`)); res.Status != job.StatusTimeout {
			t.Fatalf("got %s, want timeout", res.Status)
		}
		_, _, last := postStream(t, context.Background(), base+"/execute", `{"stream": true, "code": "1"}`).rest()
		var e errorBody
		if err := json.Unmarshal([]byte(last.data), &e); last.name != "error" || err != nil || e.Error.Code != "session_ended" || e.Error.Type != errorType(http.StatusGone) || e.Error.Message == "" {
			t.Fatalf("final event %s %s, want error session_ended", last.name, last.data)
		}
	})
}

func TestSessionInterruptHTTP(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	var created CreateSessionReply
	json.Unmarshal(do(t, "POST", hs.URL+"/v1/sessions", `{}`).body, &created)
	base := hs.URL + "/v1/sessions/" + created.ID
	interrupt := func(want bool) {
		t.Helper()
		r := do(t, "POST", base+"/interrupt", "")
		var got InterruptReply
		if err := json.Unmarshal(r.body, &got); r.status != http.StatusOK || err != nil || got.ID != created.ID || got.Interrupted != want {
			t.Fatalf("interrupt: %d %s, want interrupted %v", r.status, r.body, want)
		}
	}

	result(t, do(t, "POST", base+"/execute", `{"code": "x = 41"}`))
	interrupt(false)
	s := postStream(t, context.Background(), base+"/execute", `{"stream": true, "code": "print('started')\nwhile True: pass"}`)
	if ev, ok := s.next(); !ok || ev.name != "stdout" {
		t.Fatalf("first event %+v, want stdout", ev)
	}
	interrupt(true)
	_, stderr, last := s.rest()
	res := streamResult(t, last)
	if res.Status != job.StatusError || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || !strings.Contains(stderr, "KeyboardInterrupt") {
		t.Fatalf("interrupted run: %s %+v stderr %q", res.Status, res.Error, stderr)
	}
	if res := result(t, do(t, "POST", base+"/execute", `{"code": "x + 1"}`)); sandboxDeref(res.Result) != "42" {
		t.Fatalf("after the interrupt: %s %s", res.Status, sandboxDeref(res.Result))
	}
	apiErr(t, do(t, "POST", hs.URL+"/v1/sessions/sess_nope/interrupt", ""), http.StatusNotFound, "session_not_found")
	do(t, "DELETE", base, "")
	apiErr(t, do(t, "POST", base+"/interrupt", ""), http.StatusNotFound, "session_not_found")
}

func sandboxDeref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestDeleteDuringExecution: DELETE of a session whose execution runs kills it
// first: the execution answers status killed with the session ended, instead of
// DELETE waiting for the program (here until its 30s timeout).
func TestDeleteDuringExecution(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	var created CreateSessionReply
	json.Unmarshal(do(t, "POST", hs.URL+"/v1/sessions", `{}`).body, &created)
	base := hs.URL + "/v1/sessions/" + created.ID
	s := postStream(t, context.Background(), base+"/execute", `{"stream": true, "code": "print('started', flush=True)\nimport time\ntime.sleep(600)"}`)
	if ev, ok := s.next(); !ok || ev.name != "stdout" {
		t.Fatalf("first event %+v, want stdout", ev)
	}
	// The session's info and its listing answer during the run (they would otherwise
	// wait the run's 600 s, and the test's deadline would fail it).
	var info struct {
		Alive bool `json:"alive"`
	}
	if r := do(t, "GET", base, ""); r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil || !info.Alive {
		t.Fatalf("GET during the execution: %d %s, want the session alive", r.status, r.body)
	}
	if r := do(t, "GET", hs.URL+"/v1/sessions", ""); r.status != http.StatusOK {
		t.Fatalf("list during the execution: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", base, ""); r.status != http.StatusOK {
		t.Fatalf("DELETE during the execution: %d %s", r.status, r.body)
	}
	_, _, last := s.rest()
	var reply SessionExecuteReply
	if err := json.Unmarshal([]byte(last.data), &reply); last.name != "result" || err != nil || reply.Result == nil ||
		reply.Status != job.StatusKilled || !reply.Session.Ended || reply.Session.Reason != sandbox.EndClosed {
		t.Fatalf("final event %s %s, want a result with status killed and the session ended (closed)", last.name, last.data)
	}
	apiErr(t, do(t, "GET", base, ""), http.StatusNotFound, "session_not_found")
}
