package e2b

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Signed file URLs: the SDKs' downloadUrl and uploadUrl of a sandbox with an access
// token give a URL of /files that anyone may fetch without headers, its query
// carrying the signature "v1_" + base64(sha256(path:operation:user:token[:expiry])),
// unpadded, as E2B's envd checks it. With E2B_SANDBOX_URL the URL is the one origin's,
// without E2b-Sandbox-Id: the sandbox is the one whose token makes the signature.

// fileSignature is E2B's signature of a /files URL for path, operation ("read" or
// "write"), user ("" for none) and expiry ("" for none, else Unix seconds).
func fileSignature(path, operation, user, token, expiry string) string {
	raw := path + ":" + operation + ":" + user + ":" + token
	if expiry != "" {
		raw += ":" + expiry
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// signedOperation is the operation a /files request is signed for, or "".
func signedOperation(r *http.Request) string {
	switch r.Method {
	case http.MethodGet:
		return "read"
	case http.MethodPost:
		return "write"
	}
	return ""
}

// checkExpiry says why a signed request's expiry does not admit it, if it does not.
func checkExpiry(r *http.Request, now time.Time) error {
	exp := r.URL.Query().Get("signature_expiration")
	if exp == "" {
		return nil
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return fmt.Errorf("signature_expiration %q is not Unix seconds", exp)
	}
	if now.Unix() > n {
		return fmt.Errorf("signature is already expired")
	}
	return nil
}

// signedBy reports whether r is a /files request signed with token.
func signedBy(r *http.Request, token string) bool {
	q := r.URL.Query()
	op := signedOperation(r)
	if r.URL.Path != "/files" || op == "" || q.Get("signature") == "" {
		return false
	}
	want := fileSignature(q.Get("path"), op, q.Get("username"), token, q.Get("signature_expiration"))
	return subtle.ConstantTimeCompare([]byte(q.Get("signature")), []byte(want)) == 1
}

// signedFiles serves a signed /files request that names no sandbox: it is the
// sandbox whose token signed it.
func (s *Server) signedFiles(w http.ResponseWriter, r *http.Request) {
	if err := checkExpiry(r, time.Now()); err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	s.mu.Lock()
	var b *box
	for _, c := range s.boxes {
		if signedBy(r, c.token) {
			b = c
			break
		}
	}
	s.mu.Unlock()
	if b == nil {
		writeError(w, http.StatusUnauthorized, "invalid signature: no sandbox's access token signed this URL")
		return
	}
	sess, err := s.cfg.Sessions.Get(b.owner.Name, b.id)
	if err != nil {
		s.forget(b.id)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("sandbox %q not found (it may have timed out or been killed)", b.id))
		return
	}
	s.envd(w, r, b, sess)
}
