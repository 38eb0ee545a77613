package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// storageBudget is the bytes the file systems of all live sandboxes may book together
// (sandbox.Config.MaxTotalStorage): spec, "0" for no budget, or by default 8 times the
// host's memory. Their tmpfs pages are memory (the sandboxes have no swap) charged to
// each sandbox's memory limit, so what they hold is bounded by the sandboxes' memory
// anyway; the budget bounds what is promised. Promising no more than the host's memory
// (the first choice) let only about 90 sandboxes of the default sizes exist on a
// 24 GiB host, well below max_sessions, for sizes that are almost never filled.
const storageOvercommit = 8

// storageBudget resolves max_total_storage.
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
	return storageOvercommit * n, nil
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
