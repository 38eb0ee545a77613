package api

import (
	"encoding/json"
	"fmt"
	"github.com/codeexec/codeexec/internal/session"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// allocBody is an execute body that touches mib MiB of memory; extra is more JSON
// fields.
func allocBody(mib int, extra string) string {
	code, _ := json.Marshal(fmt.Sprintf("x = bytearray(%d << 20)\nx[::4096] = b'x' * len(x[::4096])\nlen(x) >> 20", mib))
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`{"code": %s%s}`, code, extra)
}

// waitPool waits for a preforked child of the shared runner, so that the next warm
// execution reuses a slot made for the default limits.
func waitPool(t *testing.T) {
	t.Helper()
	r := testRunner(t)
	for deadline := time.Now().Add(30 * time.Second); r.PoolSize() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no preforked child became ready")
		}
	}
}

// sessionReply decodes a session execute's reply.
func sessionReply(t *testing.T, r response) SessionExecuteReply {
	t.Helper()
	reply := SessionExecuteReply{Result: &job.Result{}}
	if r.status != 200 {
		t.Fatalf("status %d body %s, want 200", r.status, r.body)
	}
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reply); err != nil {
		t.Fatalf("not a session execute reply: %v: %s", err, r.body)
	}
	return reply
}

func newSession(t *testing.T, url, body string) string {
	t.Helper()
	r := do(t, "POST", url+"/v1/sessions", body)
	var created CreateSessionReply
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("POST /v1/sessions %s: %d %s", body, r.status, r.body)
	}
	return created.ID
}

// TestMemoryAboveDefaultHTTP: memory_mb above the 512 MiB default is applied, on a
// warm one-shot and in a session (both reuse preforked groups made for 512 MiB): an
// allocation under it succeeds, one over it is killed at it.
func TestMemoryAboveDefaultHTTP(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	tests := []struct {
		limit, alloc int
		want         job.Status
	}{
		{600, 560, job.StatusOK},
		{600, 700, job.StatusMemoryLimit},
		{2000, 2100, job.StatusMemoryLimit},
	}
	check := func(t *testing.T, what string, limit, alloc int, want job.Status, res *job.Result) {
		t.Helper()
		if res.Status != want {
			t.Errorf("%s: memory_mb %d, %d MiB allocated: %s %+v, want %s", what, limit, alloc, res.Status, res.Error, want)
		}
		// The peak shows the limit the kernel enforced.
		if want == job.StatusMemoryLimit && (res.Usage.MaxMemoryBytes>>20 <= int64(limit)-64 || res.Usage.MaxMemoryBytes>>20 > int64(limit)) {
			t.Errorf("%s: memory_mb %d: peak %d MiB, want just under the limit", what, limit, res.Usage.MaxMemoryBytes>>20)
		}
	}
	for _, tt := range tests {
		waitPool(t)
		res := result(t, do(t, "POST", hs.URL+"/v1/execute", allocBody(tt.alloc, fmt.Sprintf(`"memory_mb": %d`, tt.limit))))
		check(t, "/v1/execute", tt.limit, tt.alloc, tt.want, &res)
	}
	waitPool(t)
	id := newSession(t, hs.URL, `{"memory_mb": 600}`)
	for _, tt := range tests[:2] {
		reply := sessionReply(t, do(t, "POST", hs.URL+"/v1/sessions/"+id+"/execute", allocBody(tt.alloc, "")))
		check(t, "session", tt.limit, tt.alloc, tt.want, reply.Result)
	}
}

// TestSessionExecuteLimits: a session execute's memory_mb and timeout_ms are applied
// or refused, never ignored.
func TestSessionExecuteLimits(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	id := newSession(t, hs.URL, `{"memory_mb": 64, "timeout_ms": 5000}`)
	url := hs.URL + "/v1/sessions/" + id + "/execute"
	refused := []string{
		`{"code": "1", "memory_mb": 100}`,
		`{"code": "1", "memory_mb": 32}`,
		`{"code": "1", "timeout_ms": 6000}`,
		`{"code": "1", "memory_mb": 100, "session_id": "` + id + `"}`,
	}
	for _, body := range refused {
		apiErr(t, do(t, "POST", url, body), 400, "session_limit")
	}
	apiErr(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "1", "memory_mb": 100, "session_id": "`+id+`"}`), 400, "session_limit")
	for _, body := range []string{`{"code": "1", "memory_mb": 64}`, `{"code": "1", "timeout_ms": 5000}`} {
		if reply := sessionReply(t, do(t, "POST", url, body)); reply.Status != job.StatusOK || reply.Session.Ended {
			t.Errorf("%s: %s, session %+v", body, reply.Status, reply.Session)
		}
	}
	// A lower timeout holds for its run.
	reply := sessionReply(t, do(t, "POST", url, `{"code": "import time\ntime.sleep(3)", "timeout_ms": 500}`))
	if reply.Status != job.StatusTimeout {
		t.Errorf("timeout_ms 500 in a 5000 ms session: %s", reply.Status)
	}
}

// TestSessionEndSaidInAnswer: the run that ends a session says so in its own reply,
// in a field to test and in the error's message.
func TestSessionEndSaidInAnswer(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	tests := []struct {
		body string
		want job.Status
	}{
		{`{"code": "while True: pass", "timeout_ms": 300}`, job.StatusTimeout},
		{allocBody(100, ""), job.StatusMemoryLimit},
	}
	for _, tt := range tests {
		id := newSession(t, hs.URL, `{"memory_mb": 64}`)
		url := hs.URL + "/v1/sessions/" + id + "/execute"
		if reply := sessionReply(t, do(t, "POST", url, `{"code": "x = 1"}`)); reply.Session != (SessionState{ID: id}) {
			t.Errorf("a run that ends nothing: session %+v, want {id, ended false}", reply.Session)
		}
		reply := sessionReply(t, do(t, "POST", url, tt.body))
		if reply.Status != tt.want || reply.Session != (SessionState{ID: id, Ended: true, Reason: string(tt.want)}) {
			t.Errorf("%s: %s, session %+v; want %s and the session ended for it", tt.body, reply.Status, reply.Session, tt.want)
		}
		if reply.Error == nil || !strings.Contains(reply.Error.Message, "session has ended") {
			t.Errorf("%s: the error does not say the session ended: %+v", tt.body, reply.Error)
		}
		apiErr(t, do(t, "POST", url, `{"code": "x"}`), 410, "session_ended")
	}
}
