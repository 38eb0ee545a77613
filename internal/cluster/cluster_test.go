package cluster

import (
	"strings"
	"testing"
)

func TestIDOwner(t *testing.T) {
	tests := []struct {
		kind, replica, random string
		want                  string // the id
		owner                 string
	}{
		{"sess", "codeexec-0", "0123abcd", "sess_codeexec-0_0123abcd", "codeexec-0"},
		{"resp", "r2", "ffee", "resp_r2_ffee", "r2"},
		{"mcp", "codeexec-12", "ABC_DEF", "mcp_codeexec-12_ABC_DEF", "codeexec-12"},
		// A lone server's ids name no replica, as before clusters.
		{"sess", "", "0123abcd", "sess_0123abcd", ""},
	}
	for _, tt := range tests {
		id := ID(tt.kind, tt.replica, tt.random)
		if id != tt.want {
			t.Errorf("ID(%q, %q, %q) = %q, want %q", tt.kind, tt.replica, tt.random, id, tt.want)
		}
		if got := Owner(id); got != tt.owner {
			t.Errorf("Owner(%q) = %q, want %q", id, got, tt.owner)
		}
	}
	for _, id := range []string{"", "sess_", "sess_r0_", "sess_R0_abc", "sess_-x_abc", "chatcmpl-abc", "sess__abc", "7f3a9c"} {
		if got := Owner(id); got != "" {
			t.Errorf("Owner(%q) = %q, want none", id, got)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"codeexec-0", "a", "r1", strings.Repeat("a", 63)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "Codeexec-0", "a_b", "-a", "a-", "a.b", strings.Repeat("a", 64), "é"} {
		if err := ValidName(name); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", name)
		}
	}
}

func TestParsePeers(t *testing.T) {
	tests := []struct {
		items   []string
		e2bPort string
		want    string // "name api e2b;" per peer
		err     string
	}{
		{items: []string{"codeexec-0=http://codeexec-0.h:8080", " codeexec-1=http://codeexec-1.h:8080 "}, e2bPort: "8081",
			want: "codeexec-0 http://codeexec-0.h:8080 http://codeexec-0.h:8081;codeexec-1 http://codeexec-1.h:8080 http://codeexec-1.h:8081;"},
		{items: []string{"a=https://[::1]:9000/base"}, want: "a https://[::1]:9000/base -;"},
		{items: []string{"a"}, err: `peer "a": want NAME=URL`},
		{items: []string{"A=http://x"}, err: `replica name "A" is not a DNS label`},
		{items: []string{"a=x:80"}, err: `"x:80" is not a base URL`},
		{items: []string{"a=http://x?q=1"}, err: "is not a base URL"},
		{items: []string{"a=http://x", "a=http://y"}, err: `peer "a" is listed twice`},
	}
	for _, tt := range tests {
		peers, err := ParsePeers(tt.items, tt.e2bPort)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePeers(%q) = %v, want an error with %q", tt.items, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePeers(%q): %v", tt.items, err)
			continue
		}
		if got := describe(peers); got != tt.want {
			t.Errorf("ParsePeers(%q) = %s, want %s", tt.items, got, tt.want)
		}
	}
}

func TestParsePeersFile(t *testing.T) {
	tests := []struct {
		data string
		want string
		err  string
	}{
		{data: "# the replicas\nr0 http://127.0.0.1:1000 http://127.0.0.1:1001\n\nr1 http://127.0.0.1:2000  # no E2B\n",
			want: "r0 http://127.0.0.1:1000 http://127.0.0.1:1001;r1 http://127.0.0.1:2000 -;"},
		{data: "", want: ""},
		{data: "r0\n", err: `peers:1: want NAME API_URL [E2B_URL], got "r0"`},
		{data: "r0 http://a http://b http://c\n", err: "peers:1: want NAME API_URL"},
		{data: "r0 http://a\nr0 http://b\n", err: `peers: peer "r0" is listed twice`},
		{data: "r0 http://a\nr_1 http://b\n", err: `peers:2: peer: replica name "r_1"`},
		{data: "r0 http://a mailto:x\n", err: "peers:1: peer r0 (e2b)"},
	}
	for _, tt := range tests {
		peers, err := ParsePeersFile("peers", []byte(tt.data))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePeersFile(%q) = %v, want an error with %q", tt.data, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePeersFile(%q): %v", tt.data, err)
			continue
		}
		if got := describe(peers); got != tt.want {
			t.Errorf("ParsePeersFile(%q) = %s, want %s", tt.data, got, tt.want)
		}
	}
}

func describe(peers []Peer) string {
	var b strings.Builder
	for _, p := range peers {
		e2b := "-"
		if p.E2B != nil {
			e2b = p.E2B.String()
		}
		b.WriteString(p.Name + " " + p.API.String() + " " + e2b + ";")
	}
	return b.String()
}

func TestNewChecksSelf(t *testing.T) {
	peers, err := ParsePeers([]string{"r0=http://127.0.0.1:1", "r1=http://127.0.0.1:2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := New(Config{Self: "r2", Peers: peers}); err == nil || !strings.Contains(err.Error(), `"r2" is not among the peers`) {
		t.Errorf("New(self r2) = %v, %v; want an error", c, err)
	}
	if c, err := New(Config{Self: "", Peers: peers}); err == nil {
		t.Errorf("New(no self) = %v, want an error", c)
	}
	if c, err := New(Config{Self: "r0"}); c != nil || err != nil {
		t.Errorf("New(no peers) = %v, %v; want a lone server (nil)", c, err)
	}
}
