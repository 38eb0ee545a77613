package doctor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/container"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// namespace is one kind of namespace a sandbox enters.
type namespace struct {
	name   string
	flag   uintptr
	config string // the kernel option that provides it
}

var namespaces = []namespace{
	{"user", syscall.CLONE_NEWUSER, "CONFIG_USER_NS"},
	{"mount", syscall.CLONE_NEWNS, "CONFIG_NAMESPACES"},
	{"pid", syscall.CLONE_NEWPID, "CONFIG_PID_NS"},
	{"net", syscall.CLONE_NEWNET, "CONFIG_NET_NS"},
	{"ipc", syscall.CLONE_NEWIPC, "CONFIG_IPC_NS"},
	{"uts", syscall.CLONE_NEWUTS, "CONFIG_UTS_NS"},
	{"cgroup", syscall.CLONE_NEWCGROUP, "CONFIG_CGROUPS"},
}

// tryNamespaces starts trueBin in new namespaces of the kinds in flags and reaps it. It
// returns the error of starting it: once the child runs, the namespaces exist, so its exit
// status does not matter. A user namespace maps its root to sandbox.DefaultHostUID, as a
// sandbox's does, which only root may do.
func tryNamespaces(ctx context.Context, trueBin string, flags uintptr) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, trueBin)
	cmd.Env = []string{}
	attr := &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if flags&syscall.CLONE_NEWUSER != 0 {
		m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: sandbox.DefaultHostUID, Size: 1}}
		attr.UidMappings, attr.GidMappings = m, m
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = cmd.Wait()
	return nil
}

func checkNamespaces(ctx context.Context, trueBin string, euid int, rt container.Runtime) Check {
	if _, err := os.Stat(trueBin); err != nil {
		return Check{Name: "namespaces", Status: Fail,
			Detail: fmt.Sprintf("cannot test: %v", err),
			Fix:    fmt.Sprintf("install coreutils so that %s exists", trueBin)}
	}
	return namespacesCheck(func(flags uintptr) error { return tryNamespaces(ctx, trueBin, flags) }, euid, rt)
}

// namespacesCheck creates all the namespaces a sandbox uses at once with try and, if
// that fails, one kind at a time to name the kinds that fail. rt is the container
// runtime doctor runs under, whose terms the fix uses.
func namespacesCheck(try func(flags uintptr) error, euid int, rt container.Runtime) Check {
	c := Check{Name: "namespaces"}
	var all uintptr
	var names []string
	for _, ns := range namespaces {
		all |= ns.flag
		names = append(names, ns.name)
	}
	err := try(all)
	if err == nil {
		c.Status, c.Detail = OK, "created "+strings.Join(names, ", ")
		return c
	}
	c.Status = Fail
	if euid != 0 {
		c.Detail = fmt.Sprintf("cannot create namespaces as uid %d: %v", euid, err)
		c.Fix = "run as root: only root may map a sandbox's root to uid " + strconv.Itoa(sandbox.DefaultHostUID)
		return c
	}
	if userErr := try(syscall.CLONE_NEWUSER); userErr != nil {
		c.Detail = fmt.Sprintf("cannot create a user namespace: %v", userErr)
		c.Fix = "see the user namespaces check; the kernel needs CONFIG_USER_NS=y; in a container, " +
			"allow clone(CLONE_NEWUSER) (e.g. docker run --privileged, or a seccomp profile that permits it)"
		if h := containerHint(rt); h != "" {
			c.Fix = "the container may not create user namespaces with uid maps: " + h
		}
		return c
	}
	// The other kinds are tried inside a user namespace, as a sandbox creates them.
	var missing, configs []string
	for _, ns := range namespaces[1:] {
		if err := try(syscall.CLONE_NEWUSER | ns.flag); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", ns.name, err))
			if !slices.Contains(configs, ns.config+"=y") {
				configs = append(configs, ns.config+"=y")
			}
		}
	}
	if len(missing) == 0 {
		c.Detail = fmt.Sprintf("each kind works alone, but not all together: %v", err)
		c.Fix = "check the per-kind limits: `sysctl user` (user.max_*_namespaces must not be 0)"
		return c
	}
	c.Detail = "cannot create namespaces: " + strings.Join(missing, ", ")
	c.Fix = "use a kernel built with " + strings.Join(configs, " ") + "; in a container, run it with --privileged"
	if h := containerHint(rt); h != "" {
		c.Fix = "use a kernel built with " + strings.Join(configs, " ") + "; " + h
	}
	return c
}

// userNSSysctls are the files under /proc/sys that can forbid user namespaces.
var userNSSysctls = []string{
	"user/max_user_namespaces",
	"kernel/unprivileged_userns_clone",             // Debian and Ubuntu kernels
	"kernel/apparmor_restrict_unprivileged_userns", // Ubuntu ≥ 23.10
}

func checkUserNSSysctls(procDir string) Check {
	vals := map[string]string{}
	for _, name := range userNSSysctls {
		data, err := os.ReadFile(filepath.Join(procDir, "sys", name))
		if err == nil {
			vals[name] = strings.TrimSpace(string(data))
		}
	}
	return userNSSysctlsCheck(vals)
}

// userNSSysctlsCheck judges the values read from userNSSysctls; a file that does not
// exist has no entry.
func userNSSysctlsCheck(vals map[string]string) Check {
	c := Check{Name: "user namespaces"}
	max, ok := vals["user/max_user_namespaces"]
	if !ok {
		c.Status = Fail
		c.Detail = "no /proc/sys/user/max_user_namespaces: the kernel has no user namespaces"
		c.Fix = "use a kernel built with CONFIG_USER_NS=y"
		return c
	}
	n, err := strconv.Atoi(max)
	if err != nil {
		c.Status = Fail
		c.Detail = fmt.Sprintf("user.max_user_namespaces is %q, not a number", max)
		c.Fix = "sysctl -w user.max_user_namespaces=15000"
		return c
	}
	if n == 0 {
		c.Status = Fail
		c.Detail = "user.max_user_namespaces is 0: user namespaces are disabled"
		c.Fix = "sysctl -w user.max_user_namespaces=15000 (and set it in /etc/sysctl.d/ to keep it)"
		return c
	}
	parts := []string{"user.max_user_namespaces=" + max}
	for _, name := range userNSSysctls[1:] {
		if v, ok := vals[name]; ok {
			parts = append(parts, strings.ReplaceAll(name, "/", ".")+"="+v)
		}
	}
	c.Status = OK
	c.Detail = strings.Join(parts, ", ")
	if len(parts) > 1 {
		// These restrict unprivileged users only; codeexec creates namespaces as root.
		c.Detail += " (these limit unprivileged users; codeexec runs as root)"
	}
	return c
}
