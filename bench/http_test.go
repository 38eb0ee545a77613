package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAPIRun(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string // "" for success
	}{
		{"ok", 200, `{"status":"ok","stdout":"1\n","exit_code":0,"duration_ms":1.5}`, ""},
		{"queue full", 429, `{"error":{"code":"queue_full"}}`, "429 Too Many Requests"},
		{"sandbox error", 500, `{"error":{"code":"sandbox_error"}}`, "500 Internal Server Error"},
		{"status not ok", 200, `{"status":"timeout","exit_code":-1}`, "status timeout"},
		{"wrong output", 200, `{"status":"ok","stdout":"2\n","exit_code":0}`, `stdout "2\n"`},
		{"not JSON", 200, `<html>`, "decoding the answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/v1/execute" {
					t.Errorf("request %s %s, want POST /v1/execute", r.Method, r.URL.Path)
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Errorf("request body: %v", err)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			in, err := apiRun(apiClient(4), srv.URL)(context.Background(), workloads[0])
			if got["code"] != "print(1)" || len(got) != 1 {
				t.Errorf("request body %v, want {\"code\": \"print(1)\"}", got)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr == "" && in != 1500*time.Microsecond:
				t.Errorf("inside %v, want 1.5ms", in)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
