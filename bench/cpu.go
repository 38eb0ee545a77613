package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuUsed is the CPU time spent so far by the benchmark's runners (every sandbox and
// zygote, in the cgroup parent's groups) and by this process (the server side: the
// Runner's Go code, the API server and the HTTP client). The kernel's own threads
// (a network namespace's cleanup, say) are in neither. Other load on the machine is
// not counted, which makes CPU per execution a steadier figure than a rate on a
// shared machine.
func cpuUsed() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return self + cgroupCPU()
}

// cgroupCPU reads the CPU time of the runners' cgroup parent (v1 cpuacct or v2
// cpu.stat), 0 if neither is found.
func cgroupCPU() time.Duration {
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", cgroupParent, "cpuacct.usage")); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n)
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroupParent, "cpu.stat")); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
	}
	return 0
}
