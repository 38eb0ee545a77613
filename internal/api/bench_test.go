package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/session"
)

// BenchmarkInputFiles measures what placing files in a sandbox costs through the
// HTTP API: an upload into a session, and a one-shot execution with an input file.
func BenchmarkInputFiles(b *testing.B) {
	hs, _ := testServer(b, nil, session.Config{})
	r := do(b, "POST", hs.URL+"/v1/sessions", `{}`)
	if r.status != http.StatusCreated {
		b.Fatalf("create session: %d %s", r.status, r.body)
	}
	var sess CreateSessionReply
	if err := json.Unmarshal(r.body, &sess); err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"10MiB", 10 << 20}} {
		body := strings.Repeat("x", size.n)
		b.Run("upload_"+size.name, func(b *testing.B) {
			for b.Loop() {
				if r := do(b, "PUT", hs.URL+"/v1/sessions/"+sess.ID+"/files/data.bin", body); r.status != http.StatusOK {
					b.Fatalf("upload: %d %s", r.status, r.body)
				}
			}
		})
	}
	b.Run("execute_with_file", func(b *testing.B) {
		body := `{"code": "print(1)", "files": [{"path": "in.txt", "content_base64": "` +
			base64.StdEncoding.EncodeToString([]byte("a small input file\n")) + `"}]}`
		for b.Loop() {
			if r := do(b, "POST", hs.URL+"/v1/execute", body); r.status != http.StatusOK {
				b.Fatalf("execute: %d %s", r.status, r.body)
			}
		}
	})
	b.Run("execute_without_file", func(b *testing.B) {
		for b.Loop() {
			if r := do(b, "POST", hs.URL+"/v1/execute", `{"code": "print(1)"}`); r.status != http.StatusOK {
				b.Fatalf("execute: %d %s", r.status, r.body)
			}
		}
	})
}
