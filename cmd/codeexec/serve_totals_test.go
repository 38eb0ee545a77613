package main

import (
	"testing"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
)

func TestServeTotals(t *testing.T) {
	machine := cgroup.Limits{MemoryBytes: 17 << 30, Pids: 8192, CPUs: 1.5}
	tests := []struct {
		name    string
		set     func(*serveConfig)
		want    cgroup.Limits
		wantErr bool
	}{
		{"defaults from the machine", func(*serveConfig) {}, machine, false},
		{"all set", func(c *serveConfig) { c.MaxTotalMemory, c.MaxTotalPids, c.MaxTotalCPUs = "2GiB", 500, 1 },
			cgroup.Limits{MemoryBytes: 2 << 30, Pids: 500, CPUs: 1}, false},
		{"memory only", func(c *serveConfig) { c.MaxTotalMemory = "1536MiB" },
			cgroup.Limits{MemoryBytes: 1536 << 20, Pids: 8192, CPUs: 1.5}, false},
		{"memory too small", func(c *serveConfig) { c.MaxTotalMemory = "10MiB" }, cgroup.Limits{}, true},
		{"memory not a size", func(c *serveConfig) { c.MaxTotalMemory = "lots" }, cgroup.Limits{}, true},
		{"pids too few", func(c *serveConfig) { c.MaxTotalPids = 10 }, cgroup.Limits{}, true},
		{"negative cpus", func(c *serveConfig) { c.MaxTotalCPUs = -1 }, cgroup.Limits{}, true},
	}
	for _, tt := range tests {
		c := defaultServeConfig()
		tt.set(&c)
		got, err := c.resolveTotals(machine)
		switch {
		case tt.wantErr && err == nil:
			t.Errorf("%s: resolveTotals = %+v, want an error", tt.name, got)
		case !tt.wantErr && (err != nil || got != tt.want):
			t.Errorf("%s: resolveTotals = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	l := job.DefaultLimits()
	l.MemoryBytes = 4 << 30
	got := withinTotals(l, cgroup.Limits{MemoryBytes: 3 << 30, Pids: 32, CPUs: 0.5})
	if got.MemoryBytes != 3<<30 || got.Pids != 32 || got.CPUs != 0.5 || got.Timeout != l.Timeout {
		t.Errorf("withinTotals = %+v", got)
	}
}
