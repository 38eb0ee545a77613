package api

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/codeexec/codeexec/internal/tenant"
)

// auth requires one of the configured API keys, when there are any, and passes the
// request on with its key's tenant in the context; without keys every caller is the
// anonymous tenant.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := tenant.Anonymous
		if len(s.keys) > 0 {
			// The scheme is case-insensitive (RFC 7235, section 2.1): "bearer" is "Bearer".
			scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || key == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="codeexec"`)
				writeError(w, http.StatusUnauthorized, "missing_api_key", "an API key is required: send \"Authorization: Bearer <key>\"")
				return
			}
			if t = s.keyTenant(key); t == nil {
				// RFC 6750, section 3.1.
				w.Header().Set("WWW-Authenticate", `Bearer realm="codeexec", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "invalid_api_key", "the API key is not valid")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(tenant.NewContext(r.Context(), t)))
	})
}

// keyTenant returns the tenant of key, or nil if no configured key matches. It
// compares key with every configured key in constant time, so that neither a
// match's position nor a shared prefix shows in the timing.
func (s *Server) keyTenant(key string) *tenant.Tenant {
	match := -1
	for i := len(s.keys) - 1; i >= 0; i-- { // backwards: the first match wins
		eq := subtle.ConstantTimeCompare([]byte(s.keys[i].Secret), []byte(key))
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil
	}
	return s.keys[match].Tenant
}

// tenantOf is the tenant a request acts for. Every /v1 route passes through auth,
// which sets it; a route without is a bug in this package, not the caller's doing.
func tenantOf(r *http.Request) *tenant.Tenant {
	t, ok := tenant.FromContext(r.Context())
	if !ok {
		panic("api: " + r.URL.Path + " is served without authentication")
	}
	return t
}
