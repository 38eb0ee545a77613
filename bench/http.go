package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// The HTTP paths: POST /v1/execute to the API server in this process, back to back
// and, like warmIdle, with the warm pool refilled before each request.
const (
	httpPath = "http"
	httpIdle = "http idle"
)

// The API server's admission limits: every throughput level runs without a 429.
const (
	apiMaxConcurrent = 64
	apiMaxQueued     = 256
)

// startHTTP serves the real API over warm on a loopback listener and returns the
// runFunc that posts to it, the session time-to-first-result measure over it, and a
// func that closes the client, the server and its session manager. With -http=false
// it returns nils and a no-op.
func startHTTP(cfg config, warm *sandbox.Runner) (runFunc, ttfrFunc, func(), error) {
	if !cfg.http {
		return nil, nil, func() {}, nil
	}
	srv, err := startAPI(warm)
	if err != nil {
		return nil, nil, nil, err
	}
	client := apiClient(max(apiMaxConcurrent, slices.Max(cfg.concurrency)))
	closeAll := func() {
		client.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			progress("closing the API server: %v", err)
		}
	}
	ttfr := func(ctx context.Context, n int, pace func(context.Context) error) ([]time.Duration, error) {
		return sessionTTFR(ctx, client, srv.url, n, pace)
	}
	return apiRun(client, srv.url), ttfr, closeAll, nil
}

// ttfrFunc measures n sessions' time to first result.
type ttfrFunc func(ctx context.Context, n int, pace func(context.Context) error) ([]time.Duration, error)

// apiServer is the API's http.Server on a loopback listener.
type apiServer struct {
	url      string
	hs       *http.Server
	sessions *session.Manager
	served   chan error // Serve's return
}

// startAPI serves api.New over r, as `codeexec serve` does, on 127.0.0.1 at a free
// port. The caller must Close it.
func startAPI(r *sandbox.Runner) (*apiServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("API server: %w", err)
	}
	acfg := api.DefaultConfig()
	sessions := session.NewManager(session.Config{Max: 100, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour,
		MaxConcurrent: apiMaxConcurrent, MaxQueued: apiMaxQueued}, r)
	s := &apiServer{
		url:      "http://" + ln.Addr().String(),
		hs:       &http.Server{Handler: api.New(acfg, r, sessions, func() error { return nil }, nil).Handler()},
		sessions: sessions,
		served:   make(chan error, 1),
	}
	go func() { s.served <- s.hs.Serve(ln) }()
	return s, nil
}

// Close stops the server, its connections and the session manager, and reports
// whether Serve failed.
func (s *apiServer) Close() error {
	err := s.hs.Close()
	if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serving: %w", serr))
	}
	s.sessions.Close()
	return err
}

// apiClient is a keep-alive client that holds up to conns idle connections to the
// server, so that no level of throughput dials anew for each request.
func apiClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
	}}
}

// apiRun posts {"code": w.code} to /v1/execute on the server at base. Anything but
// 200 with a Result that passes checkResult is an error. The whole answer is read
// and decoded, as a client would.
func apiRun(client *http.Client, base string) runFunc {
	url := base + "/v1/execute"
	return func(ctx context.Context, w workload) (time.Duration, error) {
		body, err := json.Marshal(map[string]string{"code": w.code})
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("POST /v1/execute: reading the answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("POST /v1/execute: %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		var res job.Result
		if err := json.Unmarshal(data, &res); err != nil {
			return 0, fmt.Errorf("POST /v1/execute: decoding the answer: %w", err)
		}
		if err := checkResult(&res, w); err != nil {
			return 0, fmt.Errorf("POST /v1/execute: %w", err)
		}
		return time.Duration(res.DurationMS * float64(time.Millisecond)), nil
	}
}
