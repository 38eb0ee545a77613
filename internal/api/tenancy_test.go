package api

// Tests with the real sandbox of what sessions add to the HTTP API: each belongs to
// the tenant of the key that made it, the caller's sessions are listed, and files
// are downloaded with a type and deleted.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// createSession makes a session with the given header and returns its id.
func createSession(t testing.TB, url string, header ...string) string {
	t.Helper()
	r := do(t, "POST", url+"/v1/sessions", `{}`, header...)
	var created CreateSessionReply
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("POST /v1/sessions: %d %s", r.status, r.body)
	}
	return created.ID
}

// listSessions returns the ids GET /v1/sessions lists for the caller.
func listSessions(t testing.TB, url string, header ...string) []string {
	t.Helper()
	r := do(t, "GET", url+"/v1/sessions", "", header...)
	var list SessionList
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || list.Sessions == nil {
		t.Fatalf("GET /v1/sessions: %d %s", r.status, r.body)
	}
	var ids []string
	for _, s := range list.Sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestTenantIsolation: a session made with key A does not exist for key B, on every
// route, with the very reply an unknown id gets; A's session is untouched by B's
// tries. Each tenant's max_sessions holds.
func TestTenantIsolation(t *testing.T) {
	acme := &tenant.Tenant{Name: "acme", MaxSessions: 2}
	hs, _ := testServer(t, func(c *Config) {
		c.Keys = []tenant.Key{
			{Secret: "key-a", Tenant: acme}, {Secret: "key-a2", Tenant: acme},
			{Secret: "key-b", Tenant: &tenant.Tenant{Name: "bravo"}},
		}
	}, session.Config{})
	a := []string{"Authorization", "Bearer key-a"}
	a2 := []string{"Authorization", "Bearer key-a2"}
	b := []string{"Authorization", "Bearer key-b"}

	id := createSession(t, hs.URL, a...)
	base := hs.URL + "/v1/sessions/" + id
	result(t, do(t, "POST", base+"/execute", `{"code": "x = 41"}`, a...))
	if r := do(t, "PUT", base+"/files/secret.txt", "acme's data", a...); r.status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}

	const unknown = "sess_00000000000000000000000000000000"
	routes := []struct{ method, path, body string }{
		{"GET", "", ""},
		{"POST", "/execute", `{"code": "x"}`},
		{"PUT", "/files/secret.txt", "bravo was here"},
		{"GET", "/files", ""},
		{"GET", "/files/secret.txt", ""},
		{"DELETE", "/files/secret.txt", ""},
		{"DELETE", "", ""},
	}
	for _, rt := range routes {
		got := do(t, rt.method, base+rt.path, rt.body, b...)
		want := do(t, rt.method, hs.URL+"/v1/sessions/"+unknown+rt.path, rt.body, b...)
		req := rt.method + " " + rt.path + " of acme's session with bravo's key"
		wantError(t, req, got, http.StatusNotFound, "session_not_found")
		if string(got.body) != strings.ReplaceAll(string(want.body), unknown, id) {
			t.Errorf("%s: body %s differs from an unknown id's %s", req, got.body, want.body)
		}
	}
	// The same through /v1/execute's session_id.
	got := do(t, "POST", hs.URL+"/v1/execute", `{"code": "x", "session_id": "`+id+`"}`, b...)
	want := do(t, "POST", hs.URL+"/v1/execute", `{"code": "x", "session_id": "`+unknown+`"}`, b...)
	wantError(t, "POST /v1/execute with acme's session_id and bravo's key", got, http.StatusNotFound, "session_not_found")
	if string(got.body) != strings.ReplaceAll(string(want.body), unknown, id) {
		t.Errorf("session_id of another tenant: body %s differs from an unknown id's %s", got.body, want.body)
	}
	if ids := listSessions(t, hs.URL, b...); len(ids) != 0 {
		t.Errorf("bravo lists %v, want none", ids)
	}

	// Acme's session lived through all of that, for both of acme's keys.
	if res := result(t, do(t, "POST", base+"/execute", `{"code": "x + 1"}`, a2...)); res.Result == nil || *res.Result != "42" {
		t.Errorf("acme's session after bravo's tries: result %v, want 42", res.Result)
	}
	if r := do(t, "GET", base+"/files/secret.txt", "", a...); string(r.body) != "acme's data" {
		t.Errorf("acme's file after bravo's tries: %d %q", r.status, r.body)
	}
	if ids := listSessions(t, hs.URL, a2...); len(ids) != 1 || ids[0] != id {
		t.Errorf("acme lists %v, want [%s]", ids, id)
	}

	// Acme may have two sessions; the third is refused, bravo's are not.
	id2 := createSession(t, hs.URL, a2...)
	r := do(t, "POST", hs.URL+"/v1/sessions", `{}`, a...)
	wantError(t, "acme's third session", r, http.StatusTooManyRequests, "tenant_session_limit")
	if msg := errorMessage(t, r); !strings.Contains(msg, "2") {
		t.Errorf("message %q does not name the limit", msg)
	}
	idB := createSession(t, hs.URL, b...)
	if ids := listSessions(t, hs.URL, a...); strings.Join(ids, ",") != id+","+id2 {
		t.Errorf("acme lists %v, want [%s %s]", ids, id, id2)
	}
	if r := do(t, "DELETE", base, "", a...); r.status != http.StatusOK {
		t.Errorf("acme deletes its session: %d %s", r.status, r.body)
	}
	createSession(t, hs.URL, a...) // its place is free again
	if r := do(t, "DELETE", hs.URL+"/v1/sessions/"+idB, "", b...); r.status != http.StatusOK {
		t.Errorf("bravo deletes its session: %d %s", r.status, r.body)
	}
}

// TestDownloadAndDeleteFiles: a download carries a type from the file's name (or its
// bytes) and is an attachment; DELETE removes a file, refuses a directory, and
// removes a symlink rather than what it points to.
func TestDownloadAndDeleteFiles(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	base := hs.URL + "/v1/sessions/" + createSession(t, hs.URL)
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	files := []struct {
		path, data, ctype, disposition string
	}{
		{"plot.png", png, "image/png", `attachment; filename=plot.png`},
		{"out/data.json", `{"a": 1}`, "application/json", `attachment; filename=data.json`},
		{"page.html", "<script>alert(1)</script>", "text/html; charset=utf-8", `attachment; filename=page.html`},
		{"notes", "plain words\n", "text/plain; charset=utf-8", `attachment; filename=notes`},
		{"blob", "\x00\x01\x02\xff", "application/octet-stream", `attachment; filename=blob`},
		{"no ascii é", "x", "text/plain; charset=utf-8", `attachment; filename*=utf-8''no%20ascii%20%C3%A9`},
	}
	for _, f := range files {
		if r := do(t, "PUT", base+"/files/"+f.path, f.data); r.status != http.StatusOK {
			t.Fatalf("upload %s: %d %s", f.path, r.status, r.body)
		}
		r := do(t, "GET", base+"/files/"+f.path, "")
		if r.status != http.StatusOK || string(r.body) != f.data {
			t.Errorf("GET %s: %d %q", f.path, r.status, r.body)
		}
		for h, want := range map[string]string{"Content-Type": f.ctype, "Content-Disposition": f.disposition,
			"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"} {
			if got := r.header.Get(h); got != want {
				t.Errorf("GET %s: %s %q, want %q", f.path, h, got, want)
			}
		}
	}

	// The program makes a directory and a symlink to an uploaded file.
	result(t, do(t, "POST", base+"/execute", `{"code": "import os\nos.makedirs('dir/sub')\nos.symlink('plot.png', 'link.png')"}`))
	tests := []struct {
		path, code string
		status     int
	}{
		{"plot.png", "", http.StatusOK},
		{"plot.png", "file_not_found", http.StatusNotFound}, // the second time
		{"out/data.json", "", http.StatusOK},
		{"never-was.txt", "file_not_found", http.StatusNotFound},
		{"dir", "not_a_file", http.StatusBadRequest},
		{"dir/sub", "not_a_file", http.StatusBadRequest},
		{"out", "not_a_file", http.StatusBadRequest},
		{"link.png", "", http.StatusOK},
		{"..%2Fx", "invalid_file_path", http.StatusBadRequest},
	}
	for _, tt := range tests {
		r := do(t, "DELETE", base+"/files/"+tt.path, "")
		if tt.code != "" {
			wantError(t, "DELETE "+tt.path, r, tt.status, tt.code)
			continue
		}
		var reply struct {
			Path    string `json:"path"`
			Deleted bool   `json:"deleted"`
		}
		if r.status != tt.status || json.Unmarshal(r.body, &reply) != nil || reply.Path != tt.path || !reply.Deleted {
			t.Errorf("DELETE %s: %d %s, want 200 {\"path\":%q,\"deleted\":true}", tt.path, r.status, r.body, tt.path)
		}
	}
	res := result(t, do(t, "POST", base+"/execute", `{"code": "sorted(os.listdir('.')), os.path.isdir('dir/sub'), os.path.isdir('out')"}`))
	if want := `(['blob', 'dir', 'no ascii é', 'notes', 'out', 'page.html'], True, True)`; res.Result == nil || *res.Result != want {
		t.Errorf("the work dir after the deletes: %v, want %s", res.Result, want)
	}
	var list struct {
		Files []struct{ Path string } `json:"files"`
	}
	r := do(t, "GET", base+"/files", "")
	if json.Unmarshal(r.body, &list) != nil {
		t.Fatalf("list: %s", r.body)
	}
	for _, f := range list.Files {
		if f.Path == "plot.png" || f.Path == "out/data.json" {
			t.Errorf("the list still shows the deleted %s: %s", f.Path, r.body)
		}
	}
	// A file deleted and made again by the program is reported as produced.
	if r := do(t, "PUT", base+"/files/again.txt", "x"); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	do(t, "DELETE", base+"/files/again.txt", "")
	res = result(t, do(t, "POST", base+"/execute", `{"code": "open('again.txt', 'w').write('x')"}`))
	if len(res.Files) != 1 || res.Files[0].Path != "again.txt" {
		t.Errorf("files of a run that wrote again.txt: %+v", res.Files)
	}
	if !bytes.Equal(do(t, "GET", base+"/files/again.txt", "").body, []byte("x")) {
		t.Error("again.txt lost")
	}
}
