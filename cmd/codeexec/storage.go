package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// storageBudget is the bytes the file systems of all live sandboxes may hold together
// (sandbox.Config.MaxTotalStorage): spec, "0" for no budget, or by default the host's
// memory. Their tmpfs pages are memory (the sandboxes have no swap), so a larger
// promise is one the host cannot keep.
func storageBudget(spec string) (int64, error) {
	if spec != "" {
		n, err := parseSize(spec)
		if err != nil {
			return 0, fmt.Errorf("max_total_storage: %w", err)
		}
		return n, nil
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("max_total_storage: the default is the host's memory: %w", err)
	}
	n, err := memTotal(data)
	if err != nil {
		return 0, fmt.Errorf("max_total_storage: the default is the host's memory: %w", err)
	}
	return n, nil
}

// memTotal reads MemTotal, in bytes, from the text of /proc/meminfo.
func memTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 {
				return 0, fmt.Errorf("/proc/meminfo: bad MemTotal %q", f[1])
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal in kB")
}
