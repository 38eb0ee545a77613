package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// run --out refuses, before the program runs, a directory it could not save into.
func TestCheckOutDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		out  string
		want string // a word of the error; "" for none
	}{
		{filepath.Join(dir, "new", "sub"), ""},
		{dir, ""},
		{file, "not a directory"},
		{filepath.Join(file, "sub"), "not a directory"},
		{"/proc/self", "not writable"},
		{"/proc/self/new", "cannot create"},
	} {
		err := checkOutDir(tc.out)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkOutDir(%q) = %v, want nil", tc.out, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("checkOutDir(%q) = %v, want an error about %q", tc.out, err, tc.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "new", "sub")); err != nil || !fi.IsDir() {
		t.Errorf("checkOutDir did not create the missing directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("checkOutDir left files behind: %v", entries)
	}
}
