package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

func TestRunNetFlag(t *testing.T) {
	for _, tc := range []struct {
		net     string
		want    []string // nil: no network
		wantErr bool
	}{
		{net: "none"},
		{net: "allow=example.com,*.pypi.org", want: []string{"example.com", "*.pypi.org"}},
		{net: "allow=", wantErr: true},
		{net: "all", wantErr: true},
	} {
		f := runFlags{lang: "python", net: tc.net, memory: "64MiB", timeout: 1e9}
		req, err := f.request("print(1)")
		if tc.wantErr {
			var usage usageError
			if !errors.As(err, &usage) {
				t.Errorf("--net %s: %v, want a usage error", tc.net, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--net %s: %v", tc.net, err)
		}
		switch {
		case tc.want == nil && req.Network != nil:
			t.Errorf("--net %s: network %+v, want none", tc.net, req.Network)
		case tc.want != nil && (req.Network == nil || !slices.Equal(req.Network.Allow, tc.want)):
			t.Errorf("--net %s: network %+v, want %q", tc.net, req.Network, tc.want)
		}
	}
}

func TestServeNetAllow(t *testing.T) {
	t.Setenv("CODEEXEC_NET_ALLOW", "a.example.com, *.b.example.com")
	c := defaultServeConfig()
	if err := c.load("", pflag.NewFlagSet("serve", pflag.ContinueOnError)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.example.com", "*.b.example.com"}; !slices.Equal(c.NetAllow, want) {
		t.Errorf("net allow %q, want %q", c.NetAllow, want)
	}
	t.Setenv("CODEEXEC_NET_ALLOW", "a b")
	c = defaultServeConfig()
	if err := c.load("", pflag.NewFlagSet("serve", pflag.ContinueOnError)); err == nil {
		t.Error("a malformed host was accepted")
	}
}
