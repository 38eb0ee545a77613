package containment_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
)

// fakeFrames imitate everything the sandbox side of the protocol says (see
// internal/sandbox/harness): a harness report with a forged result and figure, the
// zygote's control messages and a warm child's channel messages.
var fakeFrames = []string{
	`{"ok": true, "result": "'forged'", "result_truncated": false, "error": null, "images": [{"name": "forged.png", "mime_type": "image/png", "data": "` +
		base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nforged")) + `"}], "images_truncated": false, "exit_code": 0}`,
	`{"ok": false, "result": null, "error": {"name": "MemoryError", "message": "forged", "traceback": ""}, "images": [], "exit_code": 137}`,
	`{"op": "ready"}`,
	`{"op": "done", "exit_code": 0}`,
	`{"op": "exit", "id": 1, "status": 0}`,
	`{"op": "exit", "id": 2, "error": "sandbox: zygote exited"}`,
	`{"op": "spawn", "id": 3, "tmp_bytes": 1, "work_bytes": 1}`,
	`{"op": "run", "file_bytes": 1, "open_files": 1, "env": ["HTTP_PROXY=http://forged"]}`,
	`hello`, `attached`, `ready`,
	`{"status": "ok", "stdout": "forged", "result": "'forged'", "exit_code": 0}`,
}

// framesCode prints every fake frame to stdout and stderr, sets result and draws a
// figure: the frames must come back as data, the result and figure as the real ones.
var framesCode = fmt.Sprintf(`
import json
import matplotlib.pyplot as plt
frames = json.loads(%q)
for f in frames:
    print(f)
    print(f, file=sys.stderr)
plt.plot([1, 2, 3])
result = 42
`, mustJSON(fakeFrames))

// framesOnFDsCode also writes the frames to fds 3 and 4, whatever they are (the report
// pipe, a warm child's channel to the server), then never ends: the status must be the
// timeout the server measures, and the output printed after the frames must be kept —
// but on the warm path, where the forged done ends the run early, frozen and killed.
var framesOnFDsCode = fmt.Sprintf(`
import json, time
frames = json.loads(%q)
for f in frames:
    print(f)
done = frames[3]
for fd in (3, 4):
    for f in [done] + frames:
        E(os.write, fd, f.encode())
print("after the frames", flush=True)
while True:
    pass
`, mustJSON(fakeFrames))

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// framesAttacks are the protocol-forging attacks, run directly and through the server.
func framesAttacks() []attack {
	return []attack{
		{
			// Prints text that imitates the harness report and the zygote's and the
			// child's messages on stdout and stderr.
			name:  "fake_frames_on_stdout",
			code:  framesCode,
			check: framesCheck,
		},
		{
			// Writes the frames into fds 3 and 4 (report pipe, control channel), first
			// of all a child's {"op": "done"}, then runs on.
			name:   "fake_frames_on_fds",
			code:   framesOnFDsCode,
			limits: func(l *job.Limits) { l.Timeout = 2 * time.Second },
			checkOn: func(path string) check {
				forged := func(t *testing.T, res *job.Result) {
					t.Helper()
					if res.Result != nil {
						// The program's own report pipe is its to write: a result it
						// forged is data of its own execution, not a breach.
						t.Logf("the program forged its own result: %s", *res.Result)
					}
				}
				if path == "warm" {
					// fd 3 is the child's channel: the forged done ends the run there,
					// frozen and killed (runOn), with the exit code the frame names;
					// "after the frames" may or may not have come before the freeze.
					return all(status(job.StatusOK), exitCode(0), lines(fakeFrames...), forged)
				}
				return all(status(job.StatusTimeout), exitCode(124), lines(fakeFrames...), lines("after the frames"), forged)
			},
		},
	}
}

// framesCheck requires the frames verbatim in stdout and stderr and the real result
// and figure.
func framesCheck(t *testing.T, res *job.Result) {
	t.Helper()
	status(job.StatusOK)(t, res)
	exitCode(0)(t, res)
	lines(fakeFrames...)(t, res)
	for _, f := range fakeFrames {
		if !strings.Contains(res.Stderr, f+"\n") {
			t.Errorf("stderr lacks the frame %s", f)
		}
	}
	if res.Result == nil || *res.Result != "42" {
		t.Errorf("result %v, want 42", res.Result)
	}
	if res.Error != nil {
		t.Errorf("error %+v, want none", res.Error)
	}
	if len(res.Images) != 1 || res.Images[0].Name != "figure-1.png" || !bytes.HasPrefix(res.Images[0].Data, []byte("\x89PNG")) || bytes.Contains(res.Images[0].Data, []byte("forged")) {
		var names []string
		for _, im := range res.Images {
			names = append(names, im.Name)
		}
		t.Errorf("images %v, want only the program's figure-1.png", names)
	}
}

// TestFakeFrames forges the protocol from inside the sandbox.
func TestFakeFrames(t *testing.T) {
	runAttacks(t, framesAttacks())
}

// TestThroughServer runs the protocol forgeries, the descriptor inventory and the
// socket families through the real HTTP API, so that what the server adds (JSON
// encoding, its own descriptors) is covered too.
func TestThroughServer(t *testing.T) {
	servers := map[string]string{}
	for _, p := range paths {
		r := runnerFor(t, p)
		sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Minute, MaxLifetime: time.Hour}, r)
		t.Cleanup(sessions.Close)
		srv := api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, nil)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		servers[p] = hs.URL
	}
	list := append(append(append(framesAttacks(), reportAttacks()...), treeAttacks()...), socketFamiliesAttack, attack{
		// Lists the descriptors of a program started by an HTTP request.
		name:    "file_descriptors",
		code:    fdInventoryCode,
		checkOn: fdCheck,
	})
	for i := range list {
		list[i].name += "_via_http"
	}
	// Registered last, run first: after every attack, before the servers close.
	t.Cleanup(func() {
		for p, url := range servers {
			resp, err := http.Get(url + "/healthz")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("%s server unhealthy after the attacks: %v %v", p, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	})
	runAttacksVia(t, list, func(t *testing.T, path, lang, code string, adjust func(*job.Limits)) *job.Result {
		t.Helper()
		l := limits()
		if adjust != nil {
			adjust(&l)
		}
		ms, mb := l.Timeout.Milliseconds(), l.MemoryBytes>>20
		body, _ := json.Marshal(api.ExecuteRequest{Code: &code, Language: lang, TimeoutMS: &ms, MemoryMB: &mb})
		resp, err := http.Post(servers[path]+"/v1/execute", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/execute: %s %s", resp.Status, data)
		}
		var res job.Result
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("decoding the reply %s: %v", data, err)
		}
		return &res
	})
}
