package api

import (
	"errors"
	"testing"
)

// FuzzDecodeExecute feeds arbitrary bodies to the execute decoder: it must never
// panic, what it accepts must be within the configured limits, and what it refuses
// must be a client error with a stable code.
func FuzzDecodeExecute(f *testing.F) {
	for _, seed := range []string{
		`{"code": "print(1)"}`,
		`{"code": "1", "timeout_ms": 1000, "memory_mb": 64, "language": "python", "network": "none"}`,
		`{"code": "1", "files": [{"path": "a/b.csv", "content_base64": "YQ=="}]}`,
		`{"code": "1", "files": [{"path": "../x", "content_base64": "YQ=="}]}`,
		`{"code": 1}`, `{}`, `[]`, `null`, `{"code": "1"} x`, `{"timeout_ms": -5, "code": ""}`,
	} {
		f.Add([]byte(seed))
	}
	cfg := DefaultConfig()
	f.Fuzz(func(t *testing.T, body []byte) {
		_, req, err := DecodeExecute(body, &cfg)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status > 499 || re.code == "" {
				t.Fatalf("DecodeExecute(%q) error %v is not a 4xx request error with a code", body, err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted an invalid request: %v", err)
		}
		if req.Limits.Timeout > cfg.MaxLimits.Timeout || req.Limits.MemoryBytes > cfg.MaxLimits.MemoryBytes || len(req.Code) > cfg.MaxCodeBytes {
			t.Fatalf("accepted limits above the maximum: %+v", req.Limits)
		}
	})
}
