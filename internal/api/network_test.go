package api

import (
	"slices"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestNetworkPolicy: the policy's network check, as the API answers it: each refusal
// with its stable code.
func TestNetworkPolicy(t *testing.T) {
	permitted := []string{"example.com", "*.pypi.org"}
	for _, tc := range []struct {
		spec      string
		permitted []string
		want      []string // the policy's allowlist; nil: no network
		code      string   // the error code, if refused
	}{
		{spec: "", permitted: permitted},
		{spec: "none", permitted: nil},
		{spec: "allow=example.com", permitted: permitted, want: []string{"example.com"}},
		{spec: "allow=files.pypi.org,example.com", permitted: permitted, want: []string{"files.pypi.org", "example.com"}},
		{spec: "allow=pypi.org", permitted: permitted, code: "network_not_permitted"},
		{spec: "allow=evil.com", permitted: permitted, code: "network_not_permitted"},
		{spec: "allow=example.com", permitted: nil, code: "network_not_permitted"},
		{spec: "allow=*.com", permitted: permitted, code: "network_not_permitted"},
		{spec: "everything", permitted: permitted, code: "invalid_network"},
	} {
		p, perr := job.Policy{NetworkAllow: tc.permitted}.Network(tc.spec)
		var err *requestError
		if perr != nil {
			err = policyError(perr)
		}
		switch {
		case tc.code != "":
			if err == nil || err.code != tc.code {
				t.Errorf("networkPolicy(%q, %q) = %v, want error %s", tc.spec, tc.permitted, err, tc.code)
			}
		case err != nil:
			t.Errorf("networkPolicy(%q, %q): %v", tc.spec, tc.permitted, err)
		case tc.want == nil && p != nil:
			t.Errorf("networkPolicy(%q) = %+v, want no network", tc.spec, p)
		case tc.want != nil && (p == nil || !slices.Equal(p.Allow, tc.want)):
			t.Errorf("networkPolicy(%q) = %+v, want allow %q", tc.spec, p, tc.want)
		}
	}
}
