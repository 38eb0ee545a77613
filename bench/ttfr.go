package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// sessionTTFR measures a session's time to first result over HTTP, the figure
// public sandbox leaderboards call "time to interactive": POST /v1/sessions, then
// POST /v1/sessions/{id}/execute with print(1), the whole answer read and checked.
// The DELETE that ends each session is not timed; the warm pool is refilled before
// each session, as for the idle paths.
func sessionTTFR(ctx context.Context, client *http.Client, base string, n int, pace func(context.Context) error) ([]time.Duration, error) {
	progress("session time to first result: %d sessions over HTTP", n)
	var out []time.Duration
	for i := range n {
		if err := pace(ctx); err != nil {
			return nil, err
		}
		start := time.Now()
		var created struct {
			ID string `json:"id"`
		}
		if err := postJSON(ctx, client, base+"/v1/sessions", "{}", http.StatusCreated, &created); err != nil {
			return nil, fmt.Errorf("session %d of %d: %w", i+1, n, err)
		}
		var res job.Result
		err := postJSON(ctx, client, base+"/v1/sessions/"+created.ID+"/execute", `{"code": "print(1)"}`, http.StatusOK, &res)
		if err == nil {
			err = checkResult(&res, workloads[0])
		}
		d := time.Since(start)
		if derr := deleteSession(ctx, client, base, created.ID); err == nil {
			err = derr
		}
		if err != nil {
			return nil, fmt.Errorf("session %d of %d: %w", i+1, n, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// postJSON posts body to url and decodes the answer, which must have status want,
// into v.
func postJSON(ctx context.Context, client *http.Client, url, body string, want int, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("POST %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("POST %s: decoding the answer: %w", url, err)
	}
	return nil
}

func deleteSession(ctx context.Context, client *http.Client, base, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, base+"/v1/sessions/"+id, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE /v1/sessions/%s: %s", id, resp.Status)
	}
	return nil
}
