package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
)

// FuzzDecodeExecute feeds arbitrary bodies to the execute decoder: it must never
// panic, what it accepts must be exactly what was asked for and within the
// configured limits, and what it refuses must be a client error with a stable code.
// It needs neither root nor the image.
func FuzzDecodeExecute(f *testing.F) {
	for _, seed := range []string{
		`{"code": "print(1)"}`,
		`{"code": ""}`,
		`{"code": "1", "timeout_ms": 1000, "memory_mb": 64, "language": "python", "network": "none"}`,
		`{"code": "1", "timeout_ms": 300000, "memory_mb": 4096}`,
		`{"code": "1", "session_id": "sess_0123"}`,
		`{"code": "1", "files": [{"path": "a/b.csv", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "a", "content_base64": ""}, {"path": "./b//c", "content_base64": "AP8="}]}`,
		`{"code": "1", "files": [{"path": "../x", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "/etc/passwd", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "a\\b", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "a\u0000b", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "a", "content_base64": "%%%"}]}`,
		`{"code": "1", "files": [{"path": "", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": null}`,
		// timeout_ms values whose Duration overflows int64: one wraps to about 1s,
		// one to a negative value.
		`{"code": "1", "timeout_ms": 18446744074709}`,
		`{"code": "1", "timeout_ms": 9223372036855}`,
		`{"code": "1", "timeout_ms": 300001}`,
		`{"code": "1", "timeout_ms": 0}`,
		`{"code": "1", "timeout_ms": 1.5}`,
		`{"code": "1", "timeout_ms": 1e3}`,
		`{"code": "1", "memory_mb": 15}`,
		`{"code": "1", "memory_mb": 4097}`,
		`{"code": "1", "memory_mb": 9223372036854775807}`,
		`{"code": "1", "language": "ruby"}`,
		`{"code": "1", "network": "allow=example.com"}`,
		`{"code": "1", "network": "allow=api.example.com,*.pypi.org"}`,
		`{"code": "1", "network": "allow=*.example.com"}`,
		`{"code": "1", "network": "allow=127.0.0.1"}`,
		`{"code": "1", "cod": 2}`,
		`{"code": 1}`, `{}`, `[]`, `null`, ``, ` `, `{"code": "1"} x`, `{"code": "1"}{}`,
		`{"timeout_ms": -5, "code": ""}`, `{"code": "\ud800"}`, `{"code": "1", "code": "2"}`,
	} {
		f.Add([]byte(seed))
	}
	configs := map[string]Config{"default": DefaultConfig()}
	small := DefaultConfig()
	small.MaxCodeBytes = 16
	small.Policy.Max.Timeout = 1500 * time.Microsecond
	small.Policy.Max.MemoryBytes = 64 << 20
	small.Policy.Default.Timeout = time.Millisecond
	small.Policy.Default.MemoryBytes = 32 << 20
	small.Policy.Default.WorkBytes = 1 << 20
	small.Policy.Default.FileBytes = 1 << 20
	small.Policy.NetworkAllow = []string{"*.example.com", "files.pypi.org"}
	configs["small"] = small

	f.Fuzz(func(t *testing.T, body []byte) {
		for name, cfg := range configs {
			in := bytes.Clone(body)
			ereq, req, err := DecodeExecute(in, &cfg)
			if !bytes.Equal(in, body) {
				t.Fatalf("[%s] DecodeExecute(%q) modified its input", name, body)
			}
			if err != nil {
				var re *requestError
				if !errors.As(err, &re) || (re.status != http.StatusBadRequest && re.status != http.StatusRequestEntityTooLarge &&
					re.status != http.StatusForbidden) || re.code == "" || re.message == "" {
					t.Fatalf("[%s] DecodeExecute(%q) error %#v, want a 400, 403 or 413 request error with a code and message", name, body, err)
				}
				continue
			}
			checkAccepted(t, name, &cfg, body, ereq, req)
		}
	})
}

// checkAccepted asserts that an accepted request is what the body asked for, within
// cfg's policy.
func checkAccepted(t *testing.T, name string, cfg *Config, body []byte, ereq *ExecuteRequest, req *job.Request) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("[%s] DecodeExecute(%q) accepted: "+format, append([]any{name, body}, args...)...)
	}
	if ereq == nil || req == nil || ereq.Code == nil {
		fail("nil request %v %v", ereq, req)
	}
	if err := req.Validate(); err != nil {
		fail("request does not validate: %v", err)
	}
	if req.Code != *ereq.Code || len(req.Code) > cfg.MaxCodeBytes {
		fail("code %q (%d bytes, max %d)", req.Code, len(req.Code), cfg.MaxCodeBytes)
	}
	if ereq.Language != "" && ereq.Language != "python" {
		fail("language %q", ereq.Language)
	}
	if req.Network != nil {
		// Every host must be one the operator permits.
		if err := egress.Covered(req.Network.Allow, cfg.Policy.NetworkAllow); err != nil || len(req.Network.Allow) == 0 {
			fail("network %q became %+v beyond the permitted %q: %v", ereq.Network, req.Network, cfg.Policy.NetworkAllow, err)
		}
	} else if asked, _ := egress.ParseSpec(ereq.Network); asked != nil {
		fail("network %q was dropped", ereq.Network)
	}
	want := cfg.Policy.Default
	if ereq.TimeoutMS != nil {
		if *ereq.TimeoutMS < 1 || *ereq.TimeoutMS > cfg.Policy.Max.Timeout.Milliseconds() {
			fail("timeout_ms %d is outside 1..%d", *ereq.TimeoutMS, cfg.Policy.Max.Timeout.Milliseconds())
		}
		want.Timeout = time.Duration(*ereq.TimeoutMS) * time.Millisecond
	}
	if ereq.MemoryMB != nil {
		if *ereq.MemoryMB < 16 || *ereq.MemoryMB > cfg.Policy.Max.MemoryBytes>>20 {
			fail("memory_mb %d is outside 16..%d", *ereq.MemoryMB, cfg.Policy.Max.MemoryBytes>>20)
		}
		want.MemoryBytes = *ereq.MemoryMB << 20
	}
	if req.Limits != want {
		fail("limits %+v, want %+v", req.Limits, want)
	}
	if req.Limits.Timeout > cfg.Policy.Max.Timeout || req.Limits.MemoryBytes > cfg.Policy.Max.MemoryBytes {
		fail("limits %+v above the maximum %+v", req.Limits, cfg.Policy.Max)
	}
	if len(req.Files) != len(ereq.Files) {
		fail("%d files, asked for %d", len(req.Files), len(ereq.Files))
	}
	var total int64
	for i, f := range req.Files {
		data, err := base64.StdEncoding.DecodeString(ereq.Files[i].ContentBase64)
		if err != nil || !bytes.Equal(data, f.Data) {
			fail("files[%d] data %q, want the decoding of %q (%v)", i, f.Data, ereq.Files[i].ContentBase64, err)
		}
		total += int64(len(f.Data))
	}
	if total > req.Limits.WorkBytes {
		fail("files total %d bytes, more than the %d-byte work dir", total, req.Limits.WorkBytes)
	}
}
