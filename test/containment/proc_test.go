package containment_test

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestKernel attacks the kernel interfaces a sandbox must not use: mounts, tracing,
// privileges, keyrings, the writable parts of /proc and rarely used system calls.
func TestKernel(t *testing.T) {
	runAttacks(t, []attack{
		{
			// Rebuilds its view of the file system: mounts over /tmp, a bind of / that
			// could be remounted writable, unmounting the masks over /proc, pivot_root,
			// chroot and the new mount API.
			name: "mount_family",
			code: `
MS_BIND, MS_REMOUNT, MS_REC, MNT_DETACH = 4096, 32, 16384, 2
print("tmpfs", sc(165, b"tmpfs", b"/tmp", b"tmpfs", 0, None))
print("proc", sc(165, b"proc", b"/tmp", b"proc", 0, None))
print("bind", sc(165, b"/", b"/tmp", None, MS_BIND | MS_REC, None))
print("remount rw", sc(165, None, b"/", None, MS_REMOUNT | MS_BIND, None))
print("umount keys", sc(166, b"/proc/keys", MNT_DETACH))
print("umount proc", sc(166, b"/proc", MNT_DETACH))
print("umount work", sc(166, b"/work", 0))
print("pivot_root", sc(155, b".", b"."))
print("chroot", sc(161, b"/tmp"))
print("open_tree", sc(428, -100, b"/", 1))
print("move_mount", sc(429, -1, b"", -100, b"/tmp", 0))
print("fsopen", sc(430, b"tmpfs", 0))
print("fspick", sc(433, -100, b"/", 0))
print("mount_setattr", sc(442, -100, b"/", 0, None, 0))
`,
			check: okLines("tmpfs EPERM", "proc EPERM", "bind EPERM", "remount rw EPERM", "umount keys EPERM",
				"umount proc EPERM", "umount work EPERM", "pivot_root EPERM", "chroot EPERM", "open_tree EPERM",
				"move_mount EPERM", "fsopen EPERM", "fspick EPERM", "mount_setattr EPERM"),
		},
		{
			// Traces its own child and pid 1 with ptrace: attach, seize and traceme.
			name: "ptrace",
			code: `
import time
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
print("attach child", sc(101, 16, child, 0, 0))
print("seize child", sc(101, 0x4206, child, 0, 0))
print("attach pid1", sc(101, 16, 1, 0, 0))
print("traceme", sc(101, 0, 0, 0, 0))
print("tracer", [l.split()[1] for l in open("/proc/%d/status" % child) if l.startswith("TracerPid")])
os.kill(child, 9)
os.waitpid(child, 0)
`,
			check: okLines("attach child EPERM", "seize child EPERM", "attach pid1 EPERM", "traceme EPERM", "tracer ['0']"),
		},
		{
			// Reads and writes another process's memory without ptrace: process_vm_readv
			// and writev, and steals its descriptors with pidfd_getfd.
			name: "process_vm",
			code: `
import time
buf = ctypes.create_string_buffer(64)
secret = ctypes.create_string_buffer(b"child-secret", 64)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
local, remote = iovec(ctypes.addressof(buf), 64), iovec(ctypes.addressof(secret), 64)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
print("readv", sc(310, child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0), buf.value)
print("writev", sc(311, child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
pidfd = os.pidfd_open(child)
print("getfd", sc(438, pidfd, 1, 0))
print("kcmp", sc(312, os.getpid(), child, 0, 1, 1))
os.kill(child, 9)
os.waitpid(child, 0)
`,
			check: okLines("readv EPERM b''", "writev EPERM", "getfd EPERM", "kcmp EPERM"),
		},
		{
			// Looks for set-user-id or set-group-id programs and file capabilities
			// anywhere in the image, and checks that / is mounted nosuid.
			name: "privileged_files",
			code: `
suid, caps = [], []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev", "/work", "/tmp"):
        dirs[:] = []
        continue
    for f in files:
        p = os.path.join(root, f)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            suid.append(p)
        try:
            os.getxattr(p, "security.capability", follow_symlinks=False)
            caps.append(p)
        except OSError:
            pass
print("setid", suid)
print("fcaps", caps)
root = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == "/"][0]
print("nosuid", "nosuid" in root[5].split(","), "ro", "ro" in root[5].split(","))
`,
			check: okLines("setid []", "fcaps []", "nosuid True ro True"),
		},
		{
			// Reads its capability sets, no_new_privs and seccomp mode, in itself, in a
			// forked child and in an exec'd shell: all empty, all locked.
			name: "capability_sets",
			code: `
import subprocess
def sets(text):
    return " ".join(l.split(":")[0] + "=" + l.split()[1] for l in text.splitlines()
                    if l.startswith(("Cap", "NoNewPrivs", "Seccomp:")))
print("self", sets(open("/proc/self/status").read()))
print("exec", sets(subprocess.run(["/bin/sh", "-c", "cat /proc/self/status"], capture_output=True, text=True).stdout))
print("bset sys_admin", libc.prctl(23, 21, 0, 0, 0), "net_admin", libc.prctl(23, 12, 0, 0, 0))
r = libc.prctl(38, 0, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, 0: it cannot be unset
print("clear nnp", "ok" if r == 0 else errno.errorcode[ctypes.get_errno()])
`,
			check: okLines(
				"self CapInh=0000000000000000 CapPrm=0000000000000000 CapEff=0000000000000000 CapBnd=0000000000000000 CapAmb=0000000000000000 NoNewPrivs=1 Seccomp=2",
				"exec CapInh=0000000000000000 CapPrm=0000000000000000 CapEff=0000000000000000 CapBnd=0000000000000000 CapAmb=0000000000000000 NoNewPrivs=1 Seccomp=2",
				"bset sys_admin 0 net_admin 0", "clear nnp EINVAL"),
		},
		{
			// Tries to become root again: setuid and friends, and a new user namespace
			// (where it would be root) by unshare and by clone.
			name: "privilege_regain",
			code: `
print("setuid", E(os.setuid, 0), "setgid", E(os.setgid, 0), "setgroups", E(os.setgroups, [0]))
libc.setfsuid(0)
print("setresuid", E(os.setresuid, 0, 0, 0), "setfsuid", libc.setfsuid(-1))
print("unshare user", sc(272, 0x10000000))
print("clone user", sc(56, 0x10000000 | 17, 0, 0, 0, 0))
print("ids", os.getresuid(), os.getresgid(), os.getgroups())
`,
			check: okLines("setuid EPERM setgid EPERM setgroups EPERM", "setresuid EPERM setfsuid 1000",
				"unshare user EPERM", "clone user EPERM", "ids (1000, 1000, 1000) (1000, 1000, 1000) []"),
		},
		{
			// Uses the kernel keyring, which is not namespaced: add_key, request_key,
			// keyctl, and reads /proc/keys and /proc/key-users.
			name: "kernel_keyring",
			code: `
KEY_SPEC_SESSION_KEYRING, KEYCTL_GET_KEYRING_ID, KEYCTL_JOIN = -3, 0, 1
print("add_key", sc(248, b"user", b"battery", b"data", 4, KEY_SPEC_SESSION_KEYRING))
print("request_key", sc(249, b"user", b"battery", None, 0))
print("get_keyring", sc(250, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1))
print("join", sc(250, KEYCTL_JOIN, b"battery"))
print("keys", rd("/proc/keys"), rd("/proc/key-users"))
`,
			check: okLines("add_key EPERM", "request_key EPERM", "get_keyring EPERM", "join EPERM", "keys b'' b''"),
		},
		{
			// Reads the parts of /proc that expose the host kernel: kcore, timers,
			// scheduler state, kernel symbols, and tries to lift the masks.
			name: "proc_masked",
			code: `
def peek(p):
    try:
        return "empty" if (ls(p) if os.path.isdir(p) else rd(p, 4096)) in ([], b"") else "CONTENT"
    except OSError as e:
        return errno.errorcode[e.errno]
for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/acpi", "/proc/scsi"]:
    print(p, peek(p))
addrs = [l.split()[0] for l in open("/proc/kallsyms")][:2000]
print("kallsyms nonzero", sum(1 for a in addrs if int(a, 16)))
print("unmask", sc(166, b"/proc/timer_list", 2), sc(166, b"/proc/acpi", 2))
`,
			check: all(okLines("/proc/keys empty", "/proc/timer_list empty", "/proc/acpi empty", "kallsyms nonzero 0",
				"unmask EPERM EPERM"),
				oneOf("/proc/kcore", "ENOENT", "empty"), oneOf("/proc/sched_debug", "ENOENT", "empty"),
				oneOf("/proc/latency_stats", "ENOENT", "empty"), oneOf("/proc/scsi", "ENOENT", "empty")),
		},
		{
			// Reads what tells a kernel exploit about its target: the kernel's build
			// configuration and symbols, its modules, the physical memory and I/O
			// map, the page and slab allocators' state and the interrupt counts.
			// Each is masked (a kernel without it has no file).
			name: "proc_host_facts",
			code: `
def peek(p):
    try:
        return "empty" if (ls(p) if os.path.isdir(p) else rd(p, 4096)) in ([], b"") else "CONTENT"
    except OSError as e:
        return errno.errorcode[e.errno]
for p in ["config.gz", "kallsyms", "modules", "iomem", "ioports", "zoneinfo", "buddyinfo", "pagetypeinfo", "slabinfo",
          "vmallocinfo", "kpageflags", "kpagecount", "kpagecgroup", "interrupts", "timer_stats", "asound"]:
    print("/proc/" + p, peek("/proc/" + p))
print("unmask", sc(166, b"/proc/config.gz", 2), sc(166, b"/proc/kallsyms", 2))
`,
			check: all(okLines("unmask EPERM EPERM"), func(t *testing.T, res *job.Result) {
				t.Helper()
				for _, p := range []string{"config.gz", "kallsyms", "modules", "iomem", "ioports", "zoneinfo", "buddyinfo",
					"pagetypeinfo", "slabinfo", "vmallocinfo", "kpageflags", "kpagecount", "kpagecgroup", "interrupts",
					"timer_stats", "asound"} {
					oneOf("/proc/"+p, "empty", "ENOENT")(t, res)
				}
			}),
		},
		{
			// Writes kernel tunables through /proc/sys (host-wide ones among them:
			// core_pattern, modprobe, drop_caches) and triggers sysrq. A kernel without
			// modules or sysrq has no file to write.
			name: "proc_sys_writes",
			code: `
for p in ["kernel/hostname", "kernel/core_pattern", "kernel/modprobe", "vm/drop_caches", "net/ipv4/ip_forward",
          "kernel/ns_last_pid", "kernel/randomize_va_space", "kernel/kptr_restrict"]:
    print(p, E(wr, "/proc/sys/" + p, "1"))
print("sysrq", E(wr, "/proc/sysrq-trigger", "c"))
print("core_pattern", rd("/proc/sys/kernel/core_pattern").decode().strip().startswith("|/tmp"))
`,
			check: all(okLines("kernel/hostname EROFS", "kernel/core_pattern EROFS", "vm/drop_caches EROFS",
				"net/ipv4/ip_forward EROFS", "kernel/ns_last_pid EROFS", "kernel/randomize_va_space EROFS",
				"kernel/kptr_restrict EROFS", "core_pattern False"),
				// This kernel may have no sysrq at all; where it has, the file is read-only.
				oneOf("sysrq", "ENOENT", "EROFS"), oneOf("kernel/modprobe", "ENOENT", "EROFS")),
		},
		{
			// Raises its resource limits above the hard limits the parent set.
			name: "rlimit_raise",
			code: `
class rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]
for name, res in [("nofile", 7), ("fsize", 1), ("core", 4), ("nproc", 6)]:
    r = rlimit()
    libc.getrlimit(res, ctypes.byref(r))
    up = rlimit(r.max + 1, r.max + 1)
    print(name, "ok" if libc.setrlimit(res, ctypes.byref(up)) == 0 else errno.errorcode[ctypes.get_errno()])
`,
			check: okLines("nofile EPERM", "fsize EPERM", "core EPERM", "nproc EPERM"),
		},
		{
			// Calls what kernel exploits start from and what changes the machine:
			// perf, BPF, userfaultfd, io_uring, modules, kexec, file handles (the
			// "shocker" escape), setns, reboot, swap, the clock, I/O ports.
			name: "kernel_surface",
			code: `
calls = {"perf_event_open": (298, 0, 0, -1, -1, 0), "bpf": (321, 0, 0, 0), "userfaultfd": (323, 0),
         "io_uring_setup": (425, 1, 0), "init_module": (175, 0, 0, b""), "finit_module": (313, 0, b"", 0),
         "delete_module": (176, b"ext4", 0), "kexec_load": (246, 0, 0, 0, 0), "open_by_handle_at": (304, -100, 0, 0),
         "name_to_handle_at": (303, -100, b"/", 0, 0, 0), "setns": (308, 0, 0), "reboot": (169, 0xfee1dead, 0x28121969, 0x4321fedc, 0),
         "swapon": (167, b"/tmp/swap", 0), "acct": (163, b"/tmp/acct"), "syslog": (103, 3, 0, 0),
         "settimeofday": (164, 0, 0), "clock_settime": (227, 0, 0), "iopl": (172, 3), "ioperm": (173, 0, 1024, 1),
         "personality": (135, 0x0040000), "quotactl": (179, 0, 0, 0, 0), "fanotify_init": (300, 0, 0)}
for name, args in calls.items():
    print(name, sc(*args))
`,
			check: okLines("perf_event_open EPERM", "bpf EPERM", "userfaultfd EPERM", "io_uring_setup EPERM", "init_module EPERM",
				"finit_module EPERM", "delete_module EPERM", "kexec_load EPERM", "open_by_handle_at EPERM",
				"name_to_handle_at EPERM", "setns EPERM", "reboot EPERM", "swapon EPERM", "acct EPERM", "syslog EPERM",
				"settimeofday EPERM", "clock_settime EPERM", "iopl EPERM", "ioperm EPERM", "personality EPERM",
				"quotactl EPERM", "fanotify_init EPERM"),
		},
		{
			// Bypasses the filter through the other system call tables: i386's int 0x80
			// (the filter kills the process) and x32's numbers (not in this kernel, or
			// refused).
			name: "foreign_syscall_abis",
			code: `
import mmap
print("x32 keyctl", sc(0x40000000 | 250, 0, -3, 1), "x32 mount", sc(0x40000000 | 165, b"tmpfs", b"/tmp", b"tmpfs", 0, None))
child = os.fork()
if child == 0:
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(b"\xb8\x1a\x00\x00\x00\xcd\x80\xc3")  # mov eax, 26 (i386 ptrace); int 0x80; ret
    ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()
    os._exit(0)
_, st = os.waitpid(child, 0)
print("int80", "signal %d" % os.WTERMSIG(st) if os.WIFSIGNALED(st) else "exit %d" % os.WEXITSTATUS(st))
`,
			check: all(okLines("int80 signal 31"), func(t *testing.T, res *job.Result) {
				t.Helper()
				if !strings.Contains(res.Stdout, "x32 keyctl ENOSYS x32 mount ENOSYS") && !strings.Contains(res.Stdout, "x32 keyctl EPERM x32 mount EPERM") {
					t.Errorf("x32 system calls were not refused")
				}
			}),
		},
	})
}

// TestInfoLeaks looks for what a sandbox could learn of the host: its environment,
// processes, hostname, mounts, cgroups and file descriptors.
func TestInfoLeaks(t *testing.T) {
	hostname, _ := os.Hostname()
	leaks := []string{host.secret, host.dir, "codeexec-containment-", "/var/lib/codeexec/run"}
	leaked := absent(leaks...)
	if hostname != "sandbox" && hostname != "" {
		leaked = all(leaked, absentName(hostname))
	}
	runAttacks(t, []attack{
		{
			// Reads the environment (its own, pid 1's, an exec'd program's) for the keys
			// the server holds.
			name: "environment_secrets",
			code: `
import subprocess
allowed = {"PATH", "HOME", "USER", "LANG", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "MPLBACKEND", "MPLCONFIGDIR",
           "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
           "NODE_OPTIONS"}  # Node's heap limit, from the run's memory limit, for any program that starts Node
# The harness's own settings (the report's caps): it takes them out of os.environ, the
# initial environment keeps them.
initial = allowed | {"CODEEXEC_MAX_RESULT", "CODEEXEC_MAX_IMAGES", "CODEEXEC_MAX_IMAGE_BYTES",
                     "CODEEXEC_MAX_ERROR_NAME", "CODEEXEC_MAX_ERROR_MESSAGE", "CODEEXEC_MAX_TRACEBACK",
                     "CODEEXEC_MAX_OUTPUTS", "CODEEXEC_MAX_OUTPUT_BYTES"}
# The zygote's malloc settings (warm path, zygote.go zygoteMallocEnv): it takes them out
# of os.environ once read; the initial environment, which its children share, keeps them.
initial |= {"PYTHONMALLOC", "GLIBC_TUNABLES"}
print("extra", sorted(set(os.environ) - allowed))
blob = rd("/proc/1/environ") + rd("/proc/self/environ") + subprocess.run(["env"], capture_output=True).stdout
print("keys", sorted(set(kv.split(b"=")[0].decode() for kv in blob.replace(b"\n", b"\0").split(b"\0") if kv) - initial))
print(blob.decode(errors="replace"))
`,
			check: all(okLines("extra []", "keys []"), leaked, absent(secretEnv...)),
		},
		{
			// Looks for the host's processes: /proc, kill(2) of the test's pid and its
			// parent, kill(-1), and pid 1's identity.
			name: "host_processes",
			code: fmt.Sprintf(`
import signal
print("pids", [p for p in os.listdir("/proc") if p.isdigit()])
print("kill host", E(os.kill, %d, 0), E(os.kill, %d, 0), "proc", E(os.listdir, "/proc/%d"))
print("kill all", E(os.kill, -1, signal.SIGKILL))
print("pid1", rd("/proc/1/cmdline").split(b"\0")[0], [l.split()[1:] for l in open("/proc/1/status") if l.startswith(("PPid", "NSpid"))])
`, os.Getpid(), os.Getppid(), os.Getpid()),
			check: all(okLines("pids ['1']", "kill host ESRCH ESRCH proc ENOENT", "kill all ESRCH",
				"pid1 b'/usr/bin/python3' [['0'], ['1']]"), absent("codeexec-sandbox-init", os.Args[0])),
		},
		{
			// Reads and sets its hostname and domain name by every interface.
			name: "hostname",
			code: `
print("names", socket.gethostname(), os.uname().nodename, rd("/proc/sys/kernel/hostname").decode().strip(), rd("/etc/hostname").decode().strip())
print("domain", rd("/proc/sys/kernel/domainname").decode().strip())
print("set", E(socket.sethostname, "evil"), sc(171, b"evil", 4))
`,
			check: all(okLines("names sandbox sandbox sandbox sandbox", "domain (none)", "set EPERM EPERM"), leaked),
		},
		{
			// Reads its mount table for host paths: state dirs, the test's files, mounts
			// of the host that should not be there.
			name: "mountinfo",
			code: `
allowed = {"/", "/proc", "/dev", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm",
           "/tmp", "/work", "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/kcore",
           "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/acpi", "/proc/scsi",
           "/proc/asound", "/proc/interrupts", "/proc/timer_stats", "/proc/config.gz", "/proc/kallsyms", "/proc/modules",
           "/proc/iomem", "/proc/ioports", "/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/slabinfo",
           "/proc/vmallocinfo", "/proc/kpageflags", "/proc/kpagecount", "/proc/kpagecgroup"}
mounts = [l.split() for l in open("/proc/self/mountinfo")]
print("extra", sorted(set(m[4] for m in mounts) - allowed))
print("types", sorted(set(m[m.index("-") + 1] for m in mounts)))
print(open("/proc/self/mountinfo").read())
`,
			check: all(okLines("extra []", "types ['devtmpfs', 'ext4', 'proc', 'tmpfs']"), leaked),
		},
		{
			// Looks for a way into the cgroup tree to lift its limits: its own cgroup
			// paths, a cgroup file system to mount, a new cgroup namespace.
			name: "cgroup_escape",
			code: `
print("self", sorted(set(l.strip().split(":", 2)[2] for l in open("/proc/self/cgroup"))))
print("pid1", sorted(set(l.strip().split(":", 2)[2] for l in open("/proc/1/cgroup"))))
print("sysfs", E(os.listdir, "/sys/fs/cgroup"))
os.mkdir("/tmp/cg")
print("mount v2", sc(165, b"cgroup2", b"/tmp/cg", b"cgroup2", 0, None), "v1", sc(165, b"cgroup", b"/tmp/cg", b"cgroup", 0, b"memory"))
print("unshare", sc(272, 0x02000000))
print("write", E(wr, "/proc/self/cgroup", "0::/.."))
print("move", E(wr, "/sys/fs/cgroup/cgroup.procs", "1"), E(wr, "/sys/fs/cgroup/memory/tasks", "1"))
`,
			check: okLines("self ['/']", "pid1 ['/']", "sysfs ENOENT", "mount v2 EPERM v1 EPERM", "unshare EPERM", "write EACCES", "move ENOENT ENOENT"),
		},
		{
			// Lists its open file descriptors for anything of the server's: a socket, a
			// listener it inherited, a host file. Only stdio, the report pipe and (warm)
			// the child's own channel and /dev/null may be there.
			name:    "file_descriptors",
			code:    fdInventoryCode,
			checkOn: fdCheck,
		},
	})
}

// absentName requires that name does not appear as a whole name (a host name, say)
// in stdout or stderr: a short one ("vm") is part of ordinary output
// ("/proc/vmallocinfo").
func absentName(name string) check {
	rx := regexp.MustCompile(`(^|[^\w.-])` + regexp.QuoteMeta(name) + `($|[^\w.-])`)
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		if rx.MatchString(res.Stdout) || rx.MatchString(res.Stderr) {
			t.Errorf("the sandbox's output names %q", name)
		}
	}
}

// fdInventoryCode prints each descriptor the program holds: number, kind, access
// mode and target.
const fdInventoryCode = `
for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
    try:
        target = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        continue  # the listing's own descriptor, closed by now
    flags = int([l.split()[1] for l in open("/proc/self/fdinfo/%d" % fd) if l.startswith("flags")][0], 8)
    kind = target.split(":")[0] if ":" in target else target
    print("fd", fd, kind, {0: "r", 1: "w", 2: "rw"}[flags & 3], target)
`

// fdCheck compares the descriptors a program holds with those path gives it.
func fdCheck(path string) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		fdCheckOn(t, path, res)
	}
}

func fdCheckOn(t *testing.T, path string, res *job.Result) {
	t.Helper()
	status(job.StatusOK)(t, res)
	want := map[string][]string{
		// stdin, stdout, stderr, the report pipe (write end).
		"cold": {"0 /dev/null r", "1 pipe w", "2 pipe w", "3 pipe w"},
		// stdin, stdout, stderr, the child's channel to the server, its /dev/null, the
		// report pipe (write end, at whatever number recvmsg gave it).
		"warm": {"0 /dev/null r", "1 pipe w", "2 pipe w", "3 socket rw", "4 /dev/null w", "* pipe w"},
	}[path]
	var got []string
	for _, l := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != "fd" {
			continue
		}
		got = append(got, strings.Join(f[1:4], " "))
		if strings.Contains(f[4], "["+strconv.FormatUint(host.leakedIno, 10)+"]") {
			t.Errorf("fd %s is the server's inherited listener %s", f[1], f[4])
		}
	}
	if len(got) != len(want) {
		t.Errorf("the program holds %d descriptors %q, want %d %q", len(got), got, len(want), want)
		return
	}
	for i, w := range want {
		if g := got[i]; g != w && !(strings.HasPrefix(w, "* ") && strings.HasSuffix(g, w[1:])) {
			t.Errorf("descriptor %d: %q, want %q", i, g, w)
		}
	}
}

// TestNothingPersists writes everywhere a program can, then checks that the next
// execution on the same runner sees none of it.
func TestNothingPersists(t *testing.T) {
	plant := prelude + `
import builtins, json
for p in ["/work/persist", "/tmp/persist", "/dev/shm/persist"]:
    wr(p, "x")
os.environ["CODEEXEC_PERSIST"] = "1"
json.codeexec_persist = builtins.codeexec_persist = 1
sys.path.insert(0, "/tmp/persist-path")
libc.shmget(0xC0DE, 4096, 0o1666)
print("planted")
`
	probe := prelude + `
import builtins, json
print("files", [p for p in ["/work/persist", "/tmp/persist", "/dev/shm/persist", "/tmp/.matplotlib/persist"] if os.path.exists(p)])
print("env", "CODEEXEC_PERSIST" in os.environ, "attrs", hasattr(json, "codeexec_persist"), hasattr(builtins, "codeexec_persist"))
print("path", "/tmp/persist-path" in sys.path, "shm", libc.shmget(0xC0DE, 0, 0) >= 0)
`
	countAttacks(t.Name(), []attack{{name: "persistence"}})
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			r := runnerFor(t, p)
			attackCount.Add(1)
			okLines("planted")(t, run(t, r, plant, nil))
			res := run(t, r, probe, nil)
			okLines("files []", "env False attrs False False", "path False shm False")(t, res)
			if t.Failed() {
				t.Logf("stdout: %s\nstderr: %s", res.Stdout, res.Stderr)
			}
			checkHealthy(t, r)
		})
	}
}

// TestConcurrentStartsLeakNoFDs starts many executions at once. The server opens
// files of its own while it starts a sandbox (os/exec writes each child's
// /proc/<pid>/uid_map and gid_map through descriptors without close-on-exec, while
// other goroutines may be forking): none of them may reach a program.
func TestConcurrentStartsLeakNoFDs(t *testing.T) {
	const rounds, width = 4, 8
	countAttacks(t.Name(), []attack{{name: "concurrent_start_fds"}})
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			r := runnerFor(t, p)
			attackCount.Add(1)
			var mu sync.Mutex
			var leaked []string
			for range rounds {
				var wg sync.WaitGroup
				for range width {
					wg.Go(func() {
						res, err := tryRun(r, prelude+fdInventoryCode, nil)
						if err != nil {
							t.Errorf("Run: %v", err)
							return
						}
						for _, l := range strings.Split(res.Stdout, "\n") {
							if f := strings.Fields(l); len(f) == 5 && strings.HasPrefix(f[4], "/proc/") {
								mu.Lock()
								leaked = append(leaked, strings.Join(f[1:], " "))
								mu.Unlock()
							}
						}
					})
				}
				wg.Wait()
			}
			if len(leaked) > 0 {
				t.Errorf("programs held the server's descriptors: %q", leaked)
			}
			checkHealthy(t, r)
		})
	}
}
