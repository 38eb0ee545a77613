package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStdlibOnly(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"print(1)", true},
		{"import os, sys\nprint(os.getpid())", true},
		{"import os.path as p; import json", true},
		{"from collections import Counter\nfrom os.path import join", true},
		{"def f():\n    import itertools\n    return 1", true},
		{"from . import x", true}, // relative: fails on either zygote alike
		{"x = 'no import here'", true},
		{"import numpy as np", false},
		{"import os, numpy", false},
		{"import os; import pandas", false},
		{"from matplotlib import pyplot as plt", false},
		{"from scipy.stats import norm", false},
		{"    import sympy", false},
		{"import os, \\\n  numpy", true},      // a continued line is not read: misrouted, still runs
		{"np = __import__('numpy')", true},    // not an import statement: misrouted, still runs
		{"s = '''\nimport numpy\n'''", false}, // looks like one: the full zygote runs it as well
		{"import requests  # the http client", false},
	}
	for _, tt := range tests {
		if got := stdlibOnly(tt.code); got != tt.want {
			t.Errorf("stdlibOnly(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

// newLightRunner makes a warm Runner with a light zygote, closed when the test ends.
func newLightRunner(t *testing.T) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	dir := t.TempDir()
	for d := dir; d != "/" && d != "." && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(rootfs, filepath.Join(dir, "state"), "warm")
	cfg.LightZygote, cfg.Prefork = true, 1
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Warm(); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	if r.light == nil || !r.light.cfg.Warm || len(r.light.cfg.Preload) != 0 {
		t.Fatalf("light runner = %+v, want a warm one that preloads nothing", r.light)
	}
	return r
}

// TestLightZygote: stdlib-only programs run in the light zygote's children, the rest
// in the full one's, a misrouted program still works, and a light child is as
// isolated as any warm child.
func TestLightZygote(t *testing.T) {
	r := newLightRunner(t)
	tests := []struct {
		name, code, want string
	}{
		{"stdlib only: light", "import sys\nprint('numpy' in sys.modules)", "False\n"},
		{"a package: full", "import numpy, sys\nprint('numpy' in sys.modules)", "True\n"},
		{"misrouted: imports it itself", "np = __import__('numpy')\nprint(int(np.arange(4).sum()))", "6\n"},
		{"isolated", "import os\nst = dict(l.split(':', 1) for l in open('/proc/self/status'))\n" +
			"print(os.getpid(), os.getuid(), st['NoNewPrivs'].strip(), st['Seccomp'].strip(), st['CapEff'].strip(), st['CapBnd'].strip(), os.getcwd())",
			"1 1000 1 2 0000000000000000 0000000000000000 /work\n"},
	}
	for _, tt := range tests {
		res := run(t, r, tt.code, nil)
		if res.Status != "ok" || res.Stdout != tt.want {
			t.Errorf("%s: status %s, stdout %q, stderr %q; want ok and %q", tt.name, res.Status, res.Stdout, res.Stderr, tt.want)
		}
	}
	// Each execution its own work dir, as on the full zygote: the second does not see
	// the first's file. (Namespace inode numbers are not compared: the kernel reuses
	// a freed one.)
	code := "import os\nprint(sorted(os.listdir('.')))\nopen('mine', 'w').close()"
	for i := range 2 {
		if res := run(t, r, code, nil); res.Status != "ok" || res.Stdout != "[]\n" {
			t.Errorf("run %d: status %s, stdout %q, stderr %q; want an empty work dir", i+1, res.Status, res.Stdout, res.Stderr)
		}
	}
}
