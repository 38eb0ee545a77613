package e2b

import (
	"fmt"
	"net/http"

	"github.com/codeexec/codeexec/internal/session"
)

// envd serves the sandbox's envd API (port 49983). Commands and the file system are
// not served yet: they answer 501, which the SDKs report as an error.
func (s *Server) envd(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	writeError(w, http.StatusNotImplemented, fmt.Sprintf("envd %s %s is not supported by codeexec yet: run code with runCode", r.Method, r.URL.Path))
}
