package api

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// auth requires one of the configured API keys, when there are any.
func (s *Server) auth(next http.Handler) http.Handler {
	if len(s.cfg.APIKeys) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 7235, section 2.1): "bearer" is "Bearer".
		scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || key == "" {
			writeError(w, http.StatusUnauthorized, "missing_api_key", "an API key is required: send \"Authorization: Bearer <key>\"")
			return
		}
		if !s.validKey(key) {
			writeError(w, http.StatusUnauthorized, "invalid_api_key", "the API key is not valid")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// validKey compares key with every configured key in constant time, so that neither
// a match's position nor a shared prefix shows in the timing.
func (s *Server) validKey(key string) bool {
	match := 0
	for _, k := range s.cfg.APIKeys {
		match |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
	}
	return match == 1
}
