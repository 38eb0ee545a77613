package containment_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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

// Files the server writes into a sandbox (uploads, input files) are the sandbox's:
// their pages count against its own memory limit, and what does not fit is refused
// with storage_limit rather than left for the server to pay for.

// apiServer starts the HTTP API on path's runner; it is closed when the test ends.
func apiServer(t *testing.T, path string) string {
	t.Helper()
	r := runnerFor(t, path)
	sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Minute, MaxLifetime: time.Hour}, r)
	t.Cleanup(sessions.Close)
	hs := httptest.NewServer(api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, nil).Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

type reply struct {
	status int
	body   []byte
}

func send(t *testing.T, method, url string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, data}
}

func sendJSON(t *testing.T, method, url string, v any) reply {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, method, url, body)
}

// apiErrorOf decodes an error reply.
func apiErrorOf(t *testing.T, r reply) (code, message string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an error reply: %d %s", r.status, r.body)
	}
	return e.Error.Code, e.Error.Message
}

// wantStorageLimit requires a 507 storage_limit whose message names want.
func wantStorageLimit(t *testing.T, what string, r reply, want string) {
	t.Helper()
	if r.status != http.StatusInsufficientStorage {
		t.Errorf("%s: %d %s, want 507 storage_limit", what, r.status, clip(string(r.body)))
		return
	}
	code, msg := apiErrorOf(t, r)
	if code != "storage_limit" || !strings.Contains(msg, want) {
		t.Errorf("%s: code %q message %q, want storage_limit naming %q", what, code, msg, want)
	}
	t.Logf("%s: %s", what, msg)
}

// noHostPath requires that a reply shows none of the server's own paths: the host's
// view of a sandbox (/proc/<pid>/root/…) or the runner's state dir.
func noHostPath(t *testing.T, path, what string, r reply) {
	t.Helper()
	for _, p := range []string{"/proc/", runners[path].dir, "/var/lib/codeexec", "/sys/fs/cgroup"} {
		if strings.Contains(string(r.body), p) {
			t.Errorf("%s: the reply shows the host path %q: %s", what, p, clip(string(r.body)))
		}
	}
}

type sessionInfo struct {
	MemoryBytes int64 `json:"memory_bytes"`
}

type fileList struct {
	Files []job.FileInfo `json:"files"`
}

func listFiles(t *testing.T, url string) []string {
	t.Helper()
	r := send(t, "GET", url+"/files", nil)
	if r.status != http.StatusOK {
		t.Fatalf("list files: %d %s", r.status, r.body)
	}
	var l fileList
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range l.Files {
		names = append(names, f.Path)
	}
	return names
}

func sessionExecute(t *testing.T, url, code string) job.Result {
	t.Helper()
	r := sendJSON(t, "POST", url+"/execute", map[string]any{"code": code})
	if r.status != http.StatusOK {
		t.Fatalf("execute %q: %d %s", code, r.status, r.body)
	}
	var res job.Result
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func newSession(t *testing.T, base string, body map[string]any) string {
	t.Helper()
	r := sendJSON(t, "POST", base+"/v1/sessions", body)
	if r.status != http.StatusCreated {
		t.Fatalf("create session: %d %s", r.status, r.body)
	}
	var s api.CreateSessionReply
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	url := base + "/v1/sessions/" + s.ID
	t.Cleanup(func() { send(t, "DELETE", url, nil) })
	return url
}

// TestUploadsChargedToSession is the attack of the review: uploads into a 16 MiB
// session far beyond its memory. Sessions exist on the warm path only.
func TestUploadsChargedToSession(t *testing.T) {
	const path = "warm"
	url := newSession(t, apiServer(t, path), map[string]any{"memory_mb": 16})
	memory := func() int64 {
		r := send(t, "GET", url, nil)
		var info sessionInfo
		if err := json.Unmarshal(r.body, &info); err != nil || r.status != http.StatusOK {
			t.Fatalf("get session: %d %s", r.status, r.body)
		}
		return info.MemoryBytes
	}
	before := memory()
	// A file that fits is placed and counted in the session's cgroup.
	fits := bytes.Repeat([]byte("f"), 4<<20)
	if r := send(t, "PUT", url+"/files/fits.bin", fits); r.status != http.StatusOK {
		t.Fatalf("upload of 4 MiB into a 16 MiB session: %d %s", r.status, r.body)
	}
	if after := memory(); after-before < 7<<19 {
		t.Errorf("the session's cgroup grew by %d bytes with a 4 MiB upload (%d → %d): the file is not charged to it", after-before, before, after)
	}
	// What does not fit is refused, every time, and leaves nothing behind.
	big := bytes.Repeat([]byte("B"), 30_000_000)
	for i := range 4 {
		r := send(t, "PUT", url+"/files/big-"+string(rune('0'+i))+".bin", big)
		wantStorageLimit(t, "upload of 30 MB", r, "16 MiB")
		noHostPath(t, path, "upload of 30 MB", r)
	}
	if names := listFiles(t, url); len(names) != 1 || names[0] != "fits.bin" {
		t.Errorf("files after the refused uploads: %v, want only fits.bin", names)
	}
	// The interpreter was not killed: the session answers, with its state and files.
	res := sessionExecute(t, url, "import os\nprint(os.path.getsize('fits.bin'))")
	if res.Status != job.StatusOK || res.Stdout != "4194304\n" {
		t.Errorf("the session after the uploads: status %s stdout %q stderr %q", res.Status, res.Stdout, clip(res.Stderr))
	}
}

// TestInputFilesBeyondMemory sends /v1/execute input files larger than the
// execution's memory limit: refused, not run.
func TestInputFilesBeyondMemory(t *testing.T) {
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			body := map[string]any{
				"code":      "print('ran')",
				"memory_mb": 16,
				"files": []map[string]string{
					{"path": "a.bin", "content_base64": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 10<<20))},
					{"path": "b.bin", "content_base64": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("b"), 10<<20))},
				},
			}
			r := sendJSON(t, "POST", apiServer(t, p)+"/v1/execute", body)
			wantStorageLimit(t, "execute with 20 MiB of files in 16 MiB", r, "16 MiB")
			noHostPath(t, p, "execute with 20 MiB of files", r)
		})
	}
}

// TestInputFilesCharged runs a program with a large input file: the execution's
// cgroup, not the server's, holds the file's pages.
func TestInputFilesCharged(t *testing.T) {
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			data := bytes.Repeat([]byte("i"), 48<<20)
			res, err := runnerFor(t, p).Run(context.Background(), &job.Request{
				Code:   "import os\nprint(os.path.getsize('in/data.bin'))",
				Limits: limits(),
				Files:  []job.InputFile{{Path: "in/data.bin", Data: data}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != job.StatusOK || res.Stdout != "50331648\n" {
				t.Fatalf("status %s stdout %q stderr %q", res.Status, res.Stdout, clip(res.Stderr))
			}
			if res.Usage.MaxMemoryBytes < int64(len(data)) {
				t.Errorf("peak memory %d bytes with a %d-byte input file: the file is not charged to the execution", res.Usage.MaxMemoryBytes, len(data))
			}
		})
	}
}

// TestFailedUploadLeavesNothing fills a session's work dir, then uploads more than
// is left: the upload fails whole, and the next execution lists nothing of it.
func TestFailedUploadLeavesNothing(t *testing.T) {
	const path = "warm"
	url := newSession(t, apiServer(t, path), map[string]any{})
	res := sessionExecute(t, url, "import os\nfor name in ('fill1.bin', 'fill2.bin'):\n    with open(name, 'wb') as f:\n        f.write(b'x' * (60 << 20))\nos.mkdir('dir')")
	if res.Status != job.StatusOK {
		t.Fatalf("filling the work dir: %s %q", res.Status, clip(res.Stderr))
	}
	r := send(t, "PUT", url+"/files/up/load.bin", bytes.Repeat([]byte("u"), 20<<20))
	wantStorageLimit(t, "upload of 20 MiB into a nearly full work dir", r, "/work")
	noHostPath(t, path, "upload into a full work dir", r)
	if names := listFiles(t, url); strings.Join(names, " ") != "fill1.bin fill2.bin" {
		t.Errorf("files after the failed upload: %v, want only fill1.bin and fill2.bin", names)
	}
	if res := sessionExecute(t, url, "print(sorted(os.listdir('.')))"); res.Stdout != "['dir', 'fill1.bin', 'fill2.bin']\n" || len(res.Files) != 0 {
		t.Errorf("the next execution sees %q and lists %v as its files; want ['dir', 'fill1.bin', 'fill2.bin'] and none", res.Stdout, res.Files)
	}
	// Other refused uploads do not show host paths either.
	for _, c := range []struct {
		what string
		url  string
	}{
		{"upload onto a directory", url + "/files/dir"},
		{"upload under a file", url + "/files/fill1.bin/x"},
	} {
		r := send(t, "PUT", c.url, []byte("data"))
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s: %d %s, want a 4xx", c.what, r.status, r.body)
		}
		t.Logf("%s: %d %s", c.what, r.status, r.body)
		noHostPath(t, path, c.what, r)
	}
}
