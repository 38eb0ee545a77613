package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
)

// Routing among replicas (internal/cluster): a request for a session (a container is
// one) or an MCP session made by another replica is forwarded to it, after this
// replica has checked the key: a request that could not be served anyway costs no
// hop. The owner checks the key again, with the headers forwarded as they came.

// DrainRetryAfter is the Retry-After of a refusal while draining: by then the
// replica is out of its Service's endpoints, and a retry lands on another.
const DrainRetryAfter = 2 * time.Second

// SetCluster names this server among its deployment's replicas, in the ids of what
// it makes, and makes it forward requests for other replicas' resources to them
// (c nil: forward nothing; replica "": a lone server). Call it before Handler.
func (s *Server) SetCluster(replica string, c *cluster.Cluster) {
	s.replica, s.cluster = replica, c
	s.MCP().SetReplica(replica)
}

// Drain starts the server's drain before it stops: no new session, container, MCP
// session or stateless execution is accepted (503 draining, with Retry-After),
// /readyz reports not ready, and what runs goes on; work in the live sessions is
// still served, until the sessions close.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.sessions.Drain()
	s.MCP().Drain()
}

// Running is the number of executions running or waiting for their turn.
func (s *Server) Running() int64 { return s.sessions.QueueDepth() }

type drainFlag = atomic.Bool

// refuseDraining answers a request that would start new work while the server
// drains, and reports whether it did.
func (s *Server) refuseDraining(w http.ResponseWriter) bool {
	if !s.draining.Load() {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(DrainRetryAfter.Seconds())))
	writeError(w, http.StatusServiceUnavailable, "draining", "this replica is shutting down and takes no new work; retry, and another replica will serve it")
	return true
}

// writeLost is the /v1 answer for a resource whose replica is gone.
func writeLost(w http.ResponseWriter, _ *http.Request, msg string) {
	writeError(w, http.StatusGone, "session_lost", msg)
}

// byPath forwards a request whose path's {id} is another replica's session.
func (s *Server) byPath(next http.HandlerFunc) http.HandlerFunc { return s.byPathValue("id", next) }

// byPathValue forwards a request whose path value name is the id of another
// replica's resource (a session's {id}, an upload's {file_id}).
func (s *Server) byPathValue(name string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cluster.Forward(w, r, cluster.FaceAPI, r.PathValue(name), writeLost) {
			return
		}
		next(w, r)
	}
}

// creating refuses a request that makes a resource or runs stateless work here
// while the server drains.
func (s *Server) creating(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.refuseDraining(w) {
			return
		}
		next(w, r)
	}
}

// byBody routes an execute, chat or Responses request: one that runs in a session
// (session_id), goes on from a stored response (previous_response_id) or runs in a
// container is served by their replica; any other is stateless and runs here, unless this replica drains. The
// body is read (within MaxBodyBytes) and put back for whoever serves it.
func (s *Server) byBody(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, rerr := s.readBody(w, r)
		if rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		id := stateOf(body)
		if s.cluster.Forward(w, r, cluster.FaceAPI, id, writeLost) {
			return
		}
		if id == "" && s.refuseDraining(w) {
			return
		}
		next(w, r)
	}
}

// stateOf returns the id of the state an execute, chat or Responses body names:
// its session_id (execute), previous_response_id, else the container of its code
// tool; "" when it names none or does not decode (its handler then says what is
// wrong with it).
func stateOf(body []byte) string {
	var b struct {
		SessionID          string `json:"session_id"`
		PreviousResponseID string `json:"previous_response_id"`
		Tools              []struct {
			Container json.RawMessage `json:"container"`
		} `json:"tools"`
	}
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	if b.SessionID != "" {
		return b.SessionID
	}
	if b.PreviousResponseID != "" {
		return b.PreviousResponseID
	}
	for _, t := range b.Tools {
		var id string
		if json.Unmarshal(t.Container, &id) == nil && id != "" {
			return id
		}
	}
	return ""
}

// byMCPSession forwards an MCP request of another replica's MCP session
// (Mcp-Session-Id). An MCP client learns of a lost session by a 404 (the
// streamable HTTP transport's rule), and starts a new one.
func (s *Server) byMCPSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cluster.Forward(w, r, cluster.FaceAPI, r.Header.Get("Mcp-Session-Id"), writeMCPLost) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeMCPLost answers in JSON-RPC's shape, with the HTTP status of a session the
// server does not know.
func writeMCPLost(w http.ResponseWriter, _ *http.Request, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": -32001, "message": "session_lost: " + msg, "data": map[string]string{"code": "session_lost"}}})
}
