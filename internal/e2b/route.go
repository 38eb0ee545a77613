package e2b

import (
	"net/http"
	"strings"

	"github.com/codeexec/codeexec/internal/cluster"
)

// A sandbox's id is its session's, which names the replica that holds it
// (internal/cluster): a request for a sandbox of another replica is forwarded to
// that replica's E2B listener, the data plane's (E2b-Sandbox-Id) before any check,
// since its owner checks the access token, the control plane's after the key.

// writeLost answers for a sandbox whose replica is gone, in the shape of the plane
// asked: Connect's for envd's RPCs, E2B's error otherwise, both 404 so that the
// SDKs raise their "sandbox not found" error. The message starts with the code.
func writeLost(w http.ResponseWriter, r *http.Request, msg string) {
	msg = "session_lost: " + msg
	if r.Header.Get("E2b-Sandbox-Port") == portEnvd && strings.Count(r.URL.Path, "/") == 2 && strings.Contains(r.URL.Path, ".") {
		connectError(w, "not_found", msg)
		return
	}
	writeError(w, http.StatusNotFound, msg)
}

// byPath forwards a control-plane request whose path's {id} is another replica's
// sandbox.
func (s *Server) byPath(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Cluster.Forward(w, r, cluster.FaceE2B, r.PathValue("id"), writeLost) {
			return
		}
		next(w, r)
	}
}

// drainingError is the reply to a create while the server drains.
func drainingError(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "2")
	writeError(w, http.StatusServiceUnavailable, "draining: this replica is shutting down and makes no new sandboxes; retry, and another replica will make it")
}
