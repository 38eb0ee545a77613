package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func checkRoot(euid int) Check {
	c := Check{Name: "root"}
	if euid == 0 {
		c.Status, c.Detail = OK, "running as uid 0"
		return c
	}
	c.Status = Fail
	c.Detail = fmt.Sprintf("running as uid %d; sandboxes need root to write uid maps and create cgroups", euid)
	c.Fix = "run codeexec as root, e.g. `sudo codeexec doctor`"
	return c
}

func checkKernel() Check {
	c := Check{Name: "kernel", Status: OK}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		c.Detail = fmt.Sprintf("uname: %v", err)
		return c
	}
	c.Detail = fmt.Sprintf("%s %s %s", unix.ByteSliceToString(u.Sysname[:]),
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]))
	return c
}

// statusFields reads the "Key:\tvalue" lines of /proc/self/status.
func statusFields(procDir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(procDir, "self", "status"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fields := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, sc.Err()
}

// checkSeccomp asks the kernel, without installing anything, whether filter mode works:
// seccomp(SECCOMP_GET_ACTION_AVAIL) fails with EINVAL when CONFIG_SECCOMP_FILTER is off.
func checkSeccomp(procDir string) Check {
	c := Check{Name: "seccomp"}
	const fix = "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y (every distribution kernel is)"
	mode, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	if err != nil {
		c.Status, c.Fix = Fail, fix
		c.Detail = fmt.Sprintf("prctl(PR_GET_SECCOMP): %v: the kernel has no seccomp", err)
		return c
	}
	fields, err := statusFields(procDir)
	if err != nil {
		c.Status, c.Fix = Fail, fix
		c.Detail = fmt.Sprintf("reading process status: %v", err)
		return c
	}
	if _, ok := fields["Seccomp"]; !ok {
		c.Status, c.Fix = Fail, fix
		c.Detail = fmt.Sprintf("%s has no Seccomp: line: the kernel has no seccomp", filepath.Join(procDir, "self", "status"))
		return c
	}
	action := uint32(unix.SECCOMP_RET_KILL_PROCESS)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	if errno != 0 {
		c.Status, c.Fix = Fail, fix+"; SECCOMP_RET_KILL_PROCESS needs kernel ≥ 4.14"
		c.Detail = fmt.Sprintf("seccomp(SECCOMP_GET_ACTION_AVAIL, KILL_PROCESS): %v: filter mode unavailable", errno)
		return c
	}
	c.Status = OK
	c.Detail = "filter mode available"
	if mode != 0 {
		// A filter on doctor itself is inherited by sandboxes; stacking works, but
		// the outer filter may deny what the sandbox needs.
		c.Detail += fmt.Sprintf(" (this process already runs under seccomp mode %d)", mode)
	}
	return c
}

// landlockScopingABI is the first Landlock ABI that scopes signals and abstract unix
// sockets to the sandbox (Linux 6.12).
const landlockScopingABI = 6

func checkLandlock() Check {
	c := Check{Name: "landlock"}
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		lsm, _ := os.ReadFile("/sys/kernel/security/lsm")
		c.Status = Warn
		c.Detail, c.Fix = landlockMissing(errno, strings.TrimSpace(string(lsm)))
		return c
	}
	c.Status = OK
	c.Detail = landlockDetail(int(abi))
	return c
}

func landlockDetail(abi int) string {
	if abi >= landlockScopingABI {
		return fmt.Sprintf("ABI %d: filesystem rules, and signal and abstract-socket scoping", abi)
	}
	return fmt.Sprintf("ABI %d: filesystem rules; signal and abstract-socket scoping need ABI %d (Linux ≥ 6.12)", abi, landlockScopingABI)
}

// landlockMissing explains why landlock_create_ruleset failed. lsm is the content of
// /sys/kernel/security/lsm, the LSMs enabled at boot, or "" if unknown.
func landlockMissing(errno unix.Errno, lsm string) (detail, fix string) {
	if errors.Is(errno, unix.EOPNOTSUPP) {
		detail = "Landlock is built into the kernel but not enabled at boot; sandboxes run without filesystem rules"
		list := "landlock"
		if lsm != "" {
			list += "," + lsm
		}
		return detail, fmt.Sprintf("add the kernel parameter lsm=%s and reboot", list)
	}
	detail = fmt.Sprintf("landlock_create_ruleset: %v: the kernel has no Landlock; sandboxes run without filesystem rules", errno)
	return detail, "use Linux ≥ 5.13 built with CONFIG_SECURITY_LANDLOCK=y and boot with landlock in lsm=…"
}

func checkNoNewPrivs(procDir string) Check {
	c := Check{Name: "no_new_privs"}
	fields, err := statusFields(procDir)
	if err == nil {
		if _, ok := fields["NoNewPrivs"]; ok {
			c.Status, c.Detail = OK, "supported"
			return c
		}
	}
	// NoNewPrivs: appeared in status in Linux 4.10; the prctl itself in 3.5.
	if _, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err == nil {
		c.Status, c.Detail = OK, "supported (prctl PR_GET_NO_NEW_PRIVS)"
		return c
	}
	c.Status = Fail
	c.Detail = "the kernel does not support PR_SET_NO_NEW_PRIVS"
	c.Fix = "use Linux ≥ 3.5 (≥ 5.13 for every sandbox feature)"
	return c
}

// parseFilesystems returns the names in /proc/filesystems ("nodev\ttmpfs" or "\text4").
func parseFilesystems(data string) map[string]bool {
	fs := map[string]bool{}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			fs[f[len(f)-1]] = true
		}
	}
	return fs
}

func checkFilesystems(procDir string) Check {
	c := Check{Name: "filesystems"}
	path := filepath.Join(procDir, "filesystems")
	data, err := os.ReadFile(path)
	if err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("reading %q: %v", path, err)
		c.Fix = "mount proc: `mount -t proc proc /proc`"
		return c
	}
	return filesystemsCheck(parseFilesystems(string(data)))
}

func filesystemsCheck(fs map[string]bool) Check {
	c := Check{Name: "filesystems"}
	overlay := "overlay available (not required)"
	if !fs["overlay"] {
		overlay = "no overlay (not required)"
	}
	if !fs["tmpfs"] {
		c.Status = Fail
		c.Detail = "no tmpfs: sandboxes need it for their work directory and /tmp; " + overlay
		c.Fix = "use a kernel built with CONFIG_TMPFS=y"
		return c
	}
	c.Status, c.Detail = OK, "tmpfs available; "+overlay
	return c
}
