package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/seccomp"
	"golang.org/x/sys/unix"
)

// initArg0 marks a re-executed codeexec binary as a sandbox's init stage. runc and
// gVisor use the same pattern: the namespaced setup runs in a fresh, single-purpose
// process rather than in a fork of the multi-threaded server.
const initArg0 = "codeexec-sandbox-init"

// File descriptors of the init stage, as numbered in the init process.
const (
	initSpecFD   = 3 // read: the initSpec as JSON, then EOF
	initReportFD = 4 // write: becomes the harness's report fd
	initErrFD    = 5 // write: a setup error; closed on exec, so EOF means success
	initExeFD    = 6 // the codeexec executable itself, executed as /proc/self/fd/6
)

// Paths and ids inside the sandbox: the image is made for them.
const (
	sandboxWorkDir = image.WorkDir
	// sandboxHomeDir shows the work dir again in a session with SessionOptions.Home.
	sandboxHomeDir = "/home/user"
	// sandboxHomeUser is the sandbox user's name in a session with SessionOptions.Home.
	sandboxHomeUser = "user"
	sandboxUID      = image.SandboxUID
	sandboxGID      = image.SandboxGID
	sandboxHostname = image.Hostname
	mplSeedDir      = image.MPLConfigDir
	mplConfigDir    = "/tmp/.matplotlib" // writable: matplotlib ignores a read-only one
)

// sandboxCloneFlags are the namespaces a sandbox is made in (the cgroup namespace
// follows, see initSteps). A warm child is forked in the zygote's user namespace,
// into a pid namespace the zygote makes for it, and unshares the others itself.
const sandboxCloneFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
	unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

// initSpec is everything the init stage needs; it travels over a pipe, never through
// the environment or argv, so nothing of it lingers in /proc.
type initSpec struct {
	Rootfs    string   `json:"rootfs"`
	WorkDir   string   `json:"work_dir"` // host path of the work tmpfs
	TmpBytes  int64    `json:"tmp_bytes"`
	FileBytes int64    `json:"file_bytes"`
	OpenFiles uint64   `json:"open_files"`
	Env       []string `json:"env"`
	Args      []string `json:"args"`
	Code      string   `json:"code"`
	// Seccomp is the filter program (seccomp.Encode) installed just before exec.
	Seccomp []byte `json:"seccomp"`
	// Landlock is the ruleset applied before the filter; nil without kernel support.
	Landlock *landlockPlan `json:"landlock,omitempty"`
	// Zygote starts the fork server instead of one program: no work dir, no code,
	// and privileges kept for the children to make their own namespaces.
	Zygote bool `json:"zygote"`
}

// MaybeInit runs the sandbox init stage, or the writer of input files, and never
// returns if this process was started as one; otherwise it returns at once. Call it
// first thing in main (and TestMain).
func MaybeInit() {
	if len(os.Args) > 0 && os.Args[0] == writerArg0 {
		runWriter()
	}
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return
	}
	// Capabilities, no_new_privs and the parent-death signal are per thread, and the
	// thread that calls execve is the one whose attributes survive.
	runtime.LockOSThread()
	errPipe := os.NewFile(initErrFD, "init-error")
	syscall.CloseOnExec(initErrFD)
	syscall.CloseOnExec(initExeFD)
	if err := runInit(); err != nil {
		fmt.Fprint(errPipe, err.Error())
		os.Exit(1)
	}
	panic("unreachable: init returned without exec")
}

// runInit reads the spec, runs initSteps in order and executes the program (or the
// zygote). The warm path's child runs the same steps where they are its own (see
// zygote.py and TestSetupStepsMatch).
func runInit() error {
	spec, err := readSpec()
	if err != nil {
		return err
	}
	for _, st := range initSteps {
		if !st.runsIn(spec) {
			continue
		}
		if err := st.run(spec); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return syscall.Exec(spec.Args[0], spec.Args, spec.Env)
}

// initStep is one stage of a sandbox's setup. Its name is shared with the warm
// child's steps of the same effect (zygote.py), so that the two lists can be held to
// each other.
type initStep struct {
	name string
	run  func(*initSpec) error
	in   stepSandbox
}

// stepSandbox says which sandboxes a step runs in.
type stepSandbox int

const (
	inBoth    stepSandbox = iota // a program's and the zygote's
	inProgram                    // a program's only (the cold path)
	inZygote                     // the zygote's own only
)

func (st initStep) runsIn(spec *initSpec) bool {
	return st.in == inBoth || (st.in == inZygote) == spec.Zygote
}

// initSteps are the stages of a sandbox's setup, in order, each with its reason.
// Every step up to drop_privileges runs as the sandbox's root, with every capability
// in the sandbox's user namespace (none on the host).
var initSteps = []initStep{
	// Made here, not at clone, because only now has the parent moved us into the
	// execution's cgroup: that group becomes our "/".
	{"cgroup_namespace", unshareCgroup, inBoth},
	// Nothing mounted below may propagate back to the host, and pivot_root needs the
	// new root to be a mount point.
	{"private_root", privateRoot, inBoth},
	{"mount_proc", mountProc, inBoth},
	// A user namespace cannot mknod: the few devices are the host's, bind-mounted.
	{"mount_dev", mountDev, inBoth},
	{"mount_tmp", mountTmp, inBoth},
	// A tmpfs the parent mounted on the host, so that it can place the input files
	// before and read the produced files after the sandbox; the zygote has none
	// (each child mounts its own).
	{"mount_work", mountWork, inProgram},
	// The host's file system is detached entirely.
	{"pivot_root", pivotRoot, inBoth},
	// After pivot_root: the mounts above are the ones to make read-only.
	{"read_only_root", readOnlyRoot, inBoth},
	{"proc_read_only", readOnlyProc, inBoth},
	{"proc_masked", maskProc, inBoth},
	{"hostname", setHostname, inBoth},
	// The network namespace has no other interface; an egress proxy listens on it.
	{"loopback", func(*initSpec) error { return loopbackUp() }, inBoth},
	{"matplotlib", func(*initSpec) error { return seedMatplotlib() }, inBoth},
	{"descriptors", setupFDs, inBoth},
	// Nothing but stdio, the report (or control) fd and the code may cross the exec:
	// the server may hold descriptors without close-on-exec (inherited from whatever
	// started it, or opened by a library between our fork and exec), and os/exec
	// passes them all on. runc does the same (CloseExecFrom).
	{"close_descriptors", closeDescriptors, inBoth},
	// The zygote's children drop privileges and set limits themselves, each after
	// making its own namespaces, which needs CAP_SYS_ADMIN here: every capability
	// they do not need leaves the bounding set now, and the zygote dies with us.
	{"bounding_set", zygoteBoundingSet, inZygote},
	// Before the drop: raising a hard limit would need CAP_SYS_RESOURCE.
	{"rlimits", setRlimits, inProgram},
	// Privileges go last but for exec: everything above needs CAP_SYS_ADMIN in the
	// sandbox's user namespace, nothing below does.
	{"drop_privileges", func(*initSpec) error { return dropPrivileges() }, inProgram},
	// As the sandbox user, who owns /work (0700).
	{"work_dir", func(*initSpec) error { return os.Chdir(sandboxWorkDir) }, inProgram},
	// After no_new_privs, which landlock_restrict_self requires.
	{"landlock", applyLandlock, inProgram},
	// Seccomp comes last: it must not refuse a syscall of the setup above, and
	// nothing runs between it and the program.
	{"seccomp", func(s *initSpec) error { return applySeccomp(s.Seccomp) }, inProgram},
}

// initStepNames lists the names of the steps a program's sandbox runs (the cold
// path), in order.
func initStepNames() []string {
	var names []string
	for _, st := range initSteps {
		if st.in != inZygote {
			names = append(names, st.name)
		}
	}
	return names
}

func unshareCgroup(*initSpec) error {
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return &os.SyscallError{Syscall: "unshare(CLONE_NEWCGROUP)", Err: err}
	}
	return nil
}

func setHostname(*initSpec) error {
	if err := unix.Sethostname([]byte(sandboxHostname)); err != nil {
		return &os.SyscallError{Syscall: "sethostname", Err: err}
	}
	return nil
}

func closeDescriptors(*initSpec) error {
	if err := unix.CloseRange(5, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return &os.SyscallError{Syscall: "close_range", Err: err}
	}
	return nil
}

func zygoteBoundingSet(*initSpec) error {
	if err := limitBoundingSet(zygoteCaps); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_PDEATHSIG)", Err: err}
	}
	return nil
}

func applyLandlock(s *initSpec) error {
	if s.Landlock == nil {
		return nil // the kernel has none; the runner has warned
	}
	return s.Landlock.apply()
}

func applySeccomp(encoded []byte) error {
	prog, err := seccomp.Decode(encoded)
	if err != nil {
		return err
	}
	return seccomp.Install(prog)
}

func readSpec() (*initSpec, error) {
	f := os.NewFile(initSpecFD, "init-spec")
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	var s initSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	if len(s.Args) == 0 {
		return nil, fmt.Errorf("decode spec: no program")
	}
	return &s, nil
}

// hostDevices are bind-mounted from the host's /dev: a user namespace cannot mknod.
var hostDevices = []string{"null", "zero", "full", "random", "urandom"}

// Mount flags both paths use (zygote.py gets them from zygoteConstants).
const (
	procMountFlags  = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	tmpfsMountFlags = unix.MS_NOSUID | unix.MS_NODEV
	// maskDirFlags mount the empty tmpfs that hides a directory of /proc.
	maskDirFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// privateRoot makes every mount private, so that nothing mounted here reaches the
// host, and the image a mount point of its own, for pivot_root.
func privateRoot(s *initSpec) error {
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	return mount(s.Rootfs, s.Rootfs, "", unix.MS_BIND|unix.MS_REC, "")
}

// mountProc mounts the sandbox's own pid namespace's /proc.
func mountProc(s *initSpec) error {
	return mount("proc", filepath.Join(s.Rootfs, "proc"), "proc", procMountFlags, "")
}

// mountDev makes /dev a small tmpfs with the host's null-type devices bound in and
// the usual symlinks.
func mountDev(s *initSpec) error {
	r := s.Rootfs
	if err := mount("tmpfs", filepath.Join(r, "dev"), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return err
	}
	for _, d := range hostDevices {
		target := filepath.Join(r, "dev", d)
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return err
		}
		if err := mount("/dev/"+d, target, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(r, "dev", name)); err != nil {
			return err
		}
	}
	return nil
}

// mountTmp mounts /tmp and /dev/shm, size-capped tmpfs each.
func mountTmp(s *initSpec) error {
	shm := filepath.Join(s.Rootfs, "dev", "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return err
	}
	for _, dir := range []string{shm, filepath.Join(s.Rootfs, "tmp")} {
		if err := mount("tmpfs", dir, "tmpfs", tmpfsMountFlags, tmpfsOptions(s.TmpBytes)); err != nil {
			return err
		}
	}
	return nil
}

// tmpfsOptions are the options of /tmp and /dev/shm on both paths.
func tmpfsOptions(size int64) string { return "mode=1777,size=" + strconv.FormatInt(size, 10) }

// mountWork binds the work dir the parent mounted on the host (nosuid, nodev,
// size-capped) at /work.
func mountWork(s *initSpec) error {
	return mount(s.WorkDir, filepath.Join(s.Rootfs, sandboxWorkDir), "", unix.MS_BIND, "")
}

// pivotRoot makes root the new "/" and detaches the host's file system entirely.
// pivot_root(".", ".") stacks the old root on the new one so no put_old directory is
// needed in the read-only image (the trick runc uses).
func pivotRoot(s *initSpec) error {
	if err := unix.Chdir(s.Rootfs); err != nil {
		return &os.SyscallError{Syscall: "chdir", Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.SyscallError{Syscall: "pivot_root", Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.SyscallError{Syscall: "umount old root", Err: err}
	}
	return unix.Chdir("/")
}

// Parts of /proc that reveal or change host state: read-only, or hidden (a file
// behind /dev/null, a directory behind an empty read-only tmpfs). Both paths use
// these lists: the cold init here, each warm child from its spawn request.
var (
	procReadOnly = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}
	procMasked   = []string{
		// Docker's and runc's default masked paths
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats",
		// and what tells an exploit about the kernel it attacks: its build
		// configuration, symbols, modules, the physical memory and I/O map, and the
		// page and slab allocators' state (heap grooming reads these). Some are
		// readable by root only, but a mask does not depend on the host's sysctls
		// (kptr_restrict, perf_event_paranoid) or on a file mode.
		"/proc/config.gz", "/proc/kallsyms", "/proc/modules", "/proc/iomem", "/proc/ioports",
		"/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/slabinfo",
		"/proc/vmallocinfo", "/proc/kpageflags", "/proc/kpagecount", "/proc/kpagecgroup",
	}
)

// readOnlyRoot makes the image and /dev read-only, after pivot_root.
func readOnlyRoot(*initSpec) error {
	if err := remountReadOnly("/"); err != nil {
		return err
	}
	return mount("", "/dev", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
}

// readOnlyProc makes the procReadOnly paths read-only.
func readOnlyProc(*initSpec) error {
	for _, p := range procReadOnly {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountReadOnly(p); err != nil {
			return err
		}
	}
	return nil
}

// maskProc hides the procMasked paths: a file behind /dev/null, a directory behind
// an empty read-only tmpfs.
func maskProc(*initSpec) error {
	for _, p := range procMasked {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = mount("tmpfs", p, "tmpfs", maskDirFlags, "size=0")
		} else {
			err = mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// remountReadOnly remounts the bind mount at p read-only. A user namespace may not
// clear the flags the host mount was made with (they are locked), so they are kept.
func remountReadOnly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return &os.SyscallError{Syscall: "statfs " + p, Err: err}
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for _, f := range []struct{ st, ms int64 }{
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st.Flags&f.st != 0 {
			flags |= uintptr(f.ms)
		}
	}
	return mount("", p, "", flags, "")
}

// loopbackUp brings up the sandbox's own loopback interface; the network namespace
// has no other.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return &os.SyscallError{Syscall: "socket", Err: err}
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return &os.SyscallError{Syscall: "ioctl(SIOCGIFFLAGS)", Err: err}
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return &os.SyscallError{Syscall: "ioctl(SIOCSIFFLAGS)", Err: err}
	}
	return nil
}

// seedMatplotlib copies the image's prebuilt matplotlib font cache into a writable
// config dir. matplotlib ignores a read-only config dir and rebuilds the cache on
// every start otherwise (~70 ms).
func seedMatplotlib() error {
	entries, err := os.ReadDir(mplSeedDir)
	if err != nil {
		return nil // an image without the seed works, only slower
	}
	if err := os.Mkdir(mplConfigDir, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(mplSeedDir, e.Name()))
		if err != nil {
			return err
		}
		dst := filepath.Join(mplConfigDir, e.Name())
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return err
		}
		if err := os.Lchown(dst, sandboxUID, sandboxGID); err != nil {
			return err
		}
	}
	return os.Lchown(mplConfigDir, sandboxUID, sandboxGID)
}

// setupFDs puts the report pipe (the zygote's control socket) at harness.ReportFD
// and the code in a memfd at harness.CodeFD. The code never touches a file system
// the program can see.
func setupFDs(s *initSpec) error {
	if err := unix.Dup3(initReportFD, 3, 0); err != nil {
		return &os.SyscallError{Syscall: "dup3", Err: err}
	}
	if s.Zygote {
		return unix.Close(initReportFD)
	}
	code := s.Code
	mfd, err := unix.MemfdCreate("code", 0)
	if err != nil {
		return &os.SyscallError{Syscall: "memfd_create", Err: err}
	}
	defer unix.Close(mfd)
	if _, err := unix.Write(mfd, []byte(code)); err != nil && len(code) > 0 {
		return &os.SyscallError{Syscall: "write memfd", Err: err}
	}
	if _, err := unix.Seek(mfd, 0, io.SeekStart); err != nil {
		return &os.SyscallError{Syscall: "lseek", Err: err}
	}
	// Dup3 onto fd 4 also closes the original report fd, which lived there.
	if err := unix.Dup3(mfd, 4, 0); err != nil {
		return &os.SyscallError{Syscall: "dup3", Err: err}
	}
	return nil
}

// sandboxRlimits are the rlimits of a sandbox's processes, as (resource, value)
// pairs set as both the soft and the hard limit: the cold init sets them, and a warm
// child gets them in its run or seal message.
func sandboxRlimits(fileBytes int64, openFiles uint64) [][2]uint64 {
	return [][2]uint64{
		{unix.RLIMIT_CORE, 0},
		{unix.RLIMIT_FSIZE, uint64(fileBytes)},
		{unix.RLIMIT_NOFILE, openFiles},
	}
}

func setRlimits(s *initSpec) error {
	for _, l := range sandboxRlimits(s.FileBytes, s.OpenFiles) {
		if err := unix.Setrlimit(int(l[0]), &unix.Rlimit{Cur: l[1], Max: l[1]}); err != nil {
			return &os.SyscallError{Syscall: "setrlimit", Err: err}
		}
	}
	return nil
}

// zygoteCaps are the capabilities (in the sandbox's user namespace) a zygote child
// needs before it drops them all: namespaces, mounts and setns (SYS_ADMIN), its
// loopback (NET_ADMIN), the switch to the sandbox user (SETUID, SETGID), dropping the
// bounding set (SETPCAP), and entering its 0700 work dir as root (DAC_OVERRIDE).
var zygoteCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID,
	unix.CAP_SETPCAP, unix.CAP_DAC_OVERRIDE}

// limitBoundingSet drops every capability but keep from the bounding set.
func limitBoundingSet(keep []uintptr) error {
	last, err := capLastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if slices.Contains(keep, uintptr(c)) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return &os.SyscallError{Syscall: "prctl(PR_CAPBSET_DROP)", Err: err}
		}
	}
	return nil
}

// dropPrivileges leaves the process with no capabilities, no way to gain any, and the
// unprivileged sandbox uid and gid.
func dropPrivileges() error {
	// The bounding set must go while we still hold CAP_SETPCAP, i.e. before setuid.
	if err := limitBoundingSet(nil); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", Err: err}
	}
	if err := syscall.Setgroups(nil); err != nil {
		return &os.SyscallError{Syscall: "setgroups", Err: err}
	}
	if err := syscall.Setresgid(sandboxGID, sandboxGID, sandboxGID); err != nil {
		return &os.SyscallError{Syscall: "setresgid", Err: err}
	}
	// Leaving uid 0 clears the permitted and effective sets; inheritable is cleared below.
	if err := syscall.Setresuid(sandboxUID, sandboxUID, sandboxUID); err != nil {
		return &os.SyscallError{Syscall: "setresuid", Err: err}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return &os.SyscallError{Syscall: "capset", Err: err}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	// A credential change clears the parent-death signal; set it again so the sandbox
	// dies with the server.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_PDEATHSIG)", Err: err}
	}
	return nil
}

func capLastCap() (int, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %q on %q: %w", source, target, err)
	}
	return nil
}
