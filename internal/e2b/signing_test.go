package e2b

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The expected signatures are the SDK's (getSignature in the npm e2b package),
// computed with Node's crypto.
func TestFileSignature(t *testing.T) {
	for _, tt := range []struct{ path, op, user, token, expiry, want string }{
		{"hello.txt", "read", "", "tok", "1700000000", "v1_EUu2ENlqKPzOY/NaOk0BqXuM7BkFsPEMrnoTb0VpeXc"},
		{"/home/user/a b.txt", "write", "user", "tok", "", "v1_KliWTWuiJY1rMLkMYdkBjEyKLZ3P/TWDtyGAS3iMARU"},
	} {
		if got := fileSignature(tt.path, tt.op, tt.user, tt.token, tt.expiry); got != tt.want {
			t.Errorf("fileSignature(%q, %q, %q, %q, %q) = %q, want %q", tt.path, tt.op, tt.user, tt.token, tt.expiry, got, tt.want)
		}
	}
}

func TestSignedBy(t *testing.T) {
	now := time.Unix(1700000000, 0)
	signed := func(method, path, op, token, expiry string) string {
		q := url.Values{"path": {path}, "signature": {fileSignature(path, op, "", token, expiry)}}
		if expiry != "" {
			q.Set("signature_expiration", expiry)
		}
		return method + " /files?" + q.Encode()
	}
	for _, tt := range []struct {
		name, req string
		signed    bool // by "tok"
		expired   bool
	}{
		{"a read", signed("GET", "a.txt", "read", "tok", ""), true, false},
		{"a write with an expiry ahead", signed("POST", "a.txt", "write", "tok", "1700000100"), true, false},
		{"an expired read", signed("GET", "a.txt", "read", "tok", "1699999999"), true, true},
		{"another sandbox's token", signed("GET", "a.txt", "read", "other", ""), false, false},
		{"a read's signature on a write", signed("POST", "a.txt", "read", "tok", ""), false, false},
		{"another path", "GET /files?path=b.txt&signature=" + url.QueryEscape(fileSignature("a.txt", "read", "", "tok", "")), false, false},
		{"an expiry moved", "GET /files?path=a.txt&signature_expiration=1800000000&signature=" + url.QueryEscape(fileSignature("a.txt", "read", "", "tok", "1700000100")), false, false},
		{"no signature", "GET /files?path=a.txt", false, false},
	} {
		method, target, _ := strings.Cut(tt.req, " ")
		r := httptest.NewRequest(method, target, nil)
		if got := signedBy(r, "tok"); got != tt.signed {
			t.Errorf("%s: signedBy = %v, want %v", tt.name, got, tt.signed)
		}
		if err := checkExpiry(r, now); (err != nil) != tt.expired {
			t.Errorf("%s: checkExpiry = %v, want expired %v", tt.name, err, tt.expired)
		}
	}
}
