package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// mountTable is what /proc/self/mountinfo says about cgroup file systems.
type mountTable struct {
	v1 map[string]string // controller → mount point
	v2 []string          // cgroup2 mount points
}

// unified returns the cgroup2 mount point, if any.
func (m mountTable) unified() (string, bool) {
	if len(m.v2) == 0 {
		return "", false
	}
	return m.v2[0], true
}

func readMounts(path string) (mountTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return mountTable{}, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo reads the format of proc(5) /proc/PID/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(f io.Reader) (mountTable, error) {
	t := mountTable{v1: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mnt := unescapeOctal(pf[4])
		switch qf[0] {
		case "cgroup2":
			t.v2 = append(t.v2, mnt)
		case "cgroup":
			for _, opt := range strings.Split(qf[2], ",") {
				if _, seen := t.v1[opt]; !seen {
					t.v1[opt] = mnt
				}
			}
		}
	}
	return t, sc.Err()
}

// unescapeOctal undoes the \040-style escaping of mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
