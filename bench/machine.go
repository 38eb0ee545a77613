package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// machineInfo describes the host and the image, for the top of the report. A value
// that cannot be read is shown as "?" rather than failing the benchmark.
func machineInfo(img *image.Image, r *sandbox.Runner) [][2]string {
	versions := img.Manifest.Versions
	var libs []string
	for _, k := range slices.Sorted(maps.Keys(versions)) {
		libs = append(libs, k+" "+versions[k])
	}
	return [][2]string{
		{"date", time.Now().UTC().Format(time.RFC3339)},
		{"CPU", cpuModel()},
		{"cores", strconv.Itoa(runtime.NumCPU())},
		{"memory", memTotal()},
		{"kernel", firstLine("/proc/sys/kernel/osrelease")},
		{"Go", runtime.Version()},
		{"cgroup", fmt.Sprintf("v%d", r.CgroupVersion())},
		{"image", filepath.Base(img.Dir)},
		{"libraries", strings.Join(libs, ", ")},
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memTotal() string {
	kb, err := procKB("/proc/meminfo", "MemTotal")
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

// procKB reads the "key: N kB" line of a /proc file such as /proc/self/status.
func procKB(file, key string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: parsing %s %q: %w", file, key, v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s", file, key)
}

// loadAvg is the 1, 5 and 15 minute load averages: a hint of what else ran.
func loadAvg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func firstLine(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}
