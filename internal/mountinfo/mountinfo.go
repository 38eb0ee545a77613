// Package mountinfo reads the kernel's table of mounts, /proc/self/mountinfo, and
// detaches the mounts below a directory.
package mountinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of the table.
type Mount struct {
	Point        string   // where it is mounted, unescaped
	FSType       string   // e.g. "cgroup", "tmpfs"
	SuperOptions []string // per-superblock options, e.g. the controllers of a v1 cgroup
}

// Read returns the mounts of the calling process's mount namespace.
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads the format of proc(5) mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
// Malformed lines are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		out = append(out, Mount{Point: unescape(pf[4]), FSType: qf[0], SuperOptions: strings.Split(qf[2], ",")})
	}
	return out, sc.Err()
}

// Under returns the mount points at or below dir, deepest first: the order to
// unmount them in.
func Under(mounts []Mount, dir string) []string {
	var points []string
	for _, m := range mounts {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			points = append(points, m.Point)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	return points
}

// UnmountUnder detaches every mount at or below dir, deepest first. It is how an
// owner removes what its sandboxes or builds mounted, also after a crash.
func UnmountUnder(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The kernel's table holds resolved paths.
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	mounts, err := Read()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range Under(mounts, abs) {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &os.SyscallError{Syscall: "umount " + strconv.Quote(p), Err: err})
		}
	}
	return errors.Join(errs...)
}

// unescape undoes the kernel's \ooo escaping of space, tab, newline and backslash.
func unescape(s string) string {
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
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
