// Package seccomp builds the system call filter every sandbox process runs under,
// and installs it.
//
// The filter is an allowlist, after Docker's and runc's default profiles: a sandbox
// may make the system calls the Python stack, its subprocesses and the harness need
// (Allowed, and the calls of ArgRules with the arguments they accept), and no other.
// A call that codeexec refuses by name (Denied) gets EPERM, the answer of a kernel to
// a caller without the privilege. Every other number — a call nothing here needs,
// one added to a kernel after this list was written, or one of another ABI (x32) —
// gets ENOSYS, the answer of a kernel that lacks it: the C library and Python then
// take their fallback path, where EPERM would often be fatal. (runc answers ENOSYS
// for calls newer than its profile for the same reason.) A denylist, which this
// package was until it missed open_tree_attr, listmount, statmount and memfd_secret,
// was rejected: it lets through whatever its author did not know of.
package seccomp

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Allowed may be called with any arguments. The list is Docker's default profile
// for x86-64 (moby profiles/seccomp/default.json, for a container without added
// capabilities), less what codeexec refuses (Denied: Docker allows mknod,
// personality, io_uring, adjtimex, name_to_handle_at), less what nothing in the
// image needs and has a record of kernel bugs — Linux AIO (io_setup, …),
// modify_ldt, set_thread_area and get_thread_area, remap_file_pages, fanotify_mark
// (fanotify_init is refused), process_mrelease, memfd_secret, the unimplemented
// epoll_*_old — plus fchmodat2, fchmodat with the flags argument glibc 2.39 passes.
// A call that a program turns out to need comes with a workload in TestWorkloads
// (internal/sandbox) that shows it.
var Allowed = []string{
	// processes and threads (clone is in ArgRules; clone3 is absent, see there)
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
	"getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid",
	"set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl", "prctl",
	"pidfd_open", "pidfd_send_signal",
	// identity: without capabilities only ever to the ids the process already has
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
	"setgroups", "capget", "capset",
	// scheduling and limits
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
	"sched_getscheduler", "sched_setscheduler", "sched_getattr", "sched_setattr",
	"sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
	"getpriority", "setpriority", "ioprio_get", "ioprio_set", "getcpu",
	"getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname",
	// restricting oneself further
	"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	// signals
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
	"kill", "tkill", "tgkill", "restart_syscall", "pause", "signalfd", "signalfd4",
	// time and timers
	"clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep",
	"alarm", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
	"timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	// memory
	"brk", "mmap", "munmap", "mprotect", "mremap", "msync", "mincore", "madvise",
	"mlock", "mlock2", "munlock", "mlockall", "munlockall", "membarrier",
	"pkey_alloc", "pkey_free", "pkey_mprotect", "memfd_create",
	// randomness
	"getrandom",
	// synchronisation
	"futex", "futex_waitv",
	// descriptors, I/O and waiting on them (ioctl is in ArgRules)
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl",
	"pipe", "pipe2", "sendfile", "copy_file_range", "splice", "tee", "vmsplice",
	"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
	// files and directories
	"open", "openat", "openat2", "creat", "stat", "fstat", "lstat", "newfstatat", "statx",
	"statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
	"getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir",
	"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
	"unlink", "unlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown",
	"fchownat", "lchown", "umask", "utime", "utimes", "utimensat", "futimesat",
	"truncate", "ftruncate", "fallocate", "fadvise64", "readahead", "flock",
	"fsync", "fdatasync", "sync", "syncfs", "sync_file_range",
	"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
	"setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	// sockets (socket and socketpair are in ArgRules)
	"bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
	"setsockopt", "getsockopt",
	// System V and POSIX IPC, both private to the sandbox's IPC namespace
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
	"msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
	"mq_timedreceive", "mq_notify", "mq_getsetattr",
}

// Denied are refused with EPERM. Most need a capability the sandbox does not have;
// refusing them here keeps the kernel code behind them out of reach even where a
// kernel bug would skip that check.
var Denied = []string{
	// mounts and file system views
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
	"fsconfig", "fsmount", "fspick", "mount_setattr",
	// namespaces (clone with namespace flags is refused in ArgRules)
	"unshare", "setns", "sethostname", "setdomainname",
	// other processes' memory and tracing
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// kernel attack surface
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
	// the machine itself
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime",
	"clock_adjtime", "adjtimex", "quotactl", "quotactl_fd", "vhangup", "iopl", "ioperm",
	"personality", "mknod", "mknodat",
}

// Action is the filter's answer to a system call (a SECCOMP_RET_* value).
type Action uint32

// The answers the filter gives.
const (
	Allow       = Action(unix.SECCOMP_RET_ALLOW)
	KillProcess = Action(unix.SECCOMP_RET_KILL_PROCESS)
	EPERM       = Action(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	ENOSYS      = Action(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	// EAFNOSUPPORT is a kernel's answer for a socket family it was built without:
	// programs that probe one (vsock, say) take it as "not here".
	EAFNOSUPPORT = Action(unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT))
)

// Default is the answer to every system call the profile does not name.
const Default = ENOSYS

// Op compares an argument with a value.
type Op int

const (
	Equal   Op = iota // the argument is the value
	BitsSet           // the argument has one of the value's bits set
)

// Cond is a condition on the low 32 bits of argument Arg. Every argument checked
// here is an int or unsigned int to the kernel, which ignores the high half: a
// check of all 64 bits could be passed with the high half set to anything.
type Cond struct {
	Arg   int
	Op    Op
	Value uint32
}

// Case answers Then when all of If hold.
type Case struct {
	If   []Cond
	Then Action
}

// Rule answers a system call by its arguments: the first Case that holds, or Else.
type Rule struct {
	Cases []Case
	Else  Action
}

// Values of x86-64 (ioctl numbers are per architecture).
const (
	tiocsti   = 0x5412 // TIOCSTI: fake input on a terminal
	tioclinux = 0x541c // TIOCLINUX: console functions, among them selection paste
)

// namespaceFlags are the clone flags that make new namespaces (all in the low half).
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// ArgRules are the system calls whose answer depends on their arguments. clone3 is
// not among them, nor allowed: its flags are in memory a filter cannot read, and
// ENOSYS makes the C library fall back to clone, whose flags are checked (as
// Docker does).
var ArgRules = map[string]Rule{
	"clone": {
		Cases: []Case{{If: []Cond{{Arg: 0, Op: BitsSet, Value: namespaceFlags}}, Then: EPERM}},
		Else:  Allow,
	},
	// Only the families a program needs, so that vsock (which no network namespace
	// confines: the host's and the hypervisor's ports), packet, alg, tipc, rds, key,
	// xdp, bluetooth and the rest, with their long record of kernel bugs, stay out of
	// reach. Netlink only for routing (NETLINK_ROUTE): glibc's getifaddrs and
	// if_nameindex (socket.if_nameindex, psutil) and getaddrinfo's AI_ADDRCONFIG read
	// the sandbox's own interfaces through it.
	"socket": {
		Cases: []Case{
			{If: []Cond{{Arg: 0, Op: Equal, Value: unix.AF_UNIX}}, Then: Allow},
			{If: []Cond{{Arg: 0, Op: Equal, Value: unix.AF_INET}}, Then: Allow},
			{If: []Cond{{Arg: 0, Op: Equal, Value: unix.AF_INET6}}, Then: Allow},
			{If: []Cond{{Arg: 0, Op: Equal, Value: unix.AF_NETLINK}, {Arg: 2, Op: Equal, Value: unix.NETLINK_ROUTE}}, Then: Allow},
		},
		Else: EAFNOSUPPORT,
	},
	// Of the allowed families only AF_UNIX has socketpair (Python's
	// socket.socketpair, multiprocessing's pipes, asyncio's self-pipe).
	"socketpair": {
		Cases: []Case{{If: []Cond{{Arg: 0, Op: Equal, Value: unix.AF_UNIX}}, Then: Allow}},
		Else:  EAFNOSUPPORT,
	},
	// A sandbox has no terminal today; should it ever get one, it must not type into
	// it (TIOCSTI) or paste the console's selection (TIOCLINUX).
	"ioctl": {
		Cases: []Case{
			{If: []Cond{{Arg: 1, Op: Equal, Value: tiocsti}}, Then: EPERM},
			{If: []Cond{{Arg: 1, Op: Equal, Value: tioclinux}}, Then: EPERM},
		},
		Else: Allow,
	},
}

// Offsets in struct seccomp_data; the argument's low half comes first on x86-64.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Program assembles the filter: the architecture check, then a binary search over
// the system call number whose leaves answer or check arguments. A search takes
// about eight comparisons where a list of every allowed call would take up to
// three hundred, and it keeps the program small, which also keeps the kernel's
// work at install time small (it runs the filter once per system call number to
// learn which calls it may allow without running it again).
func Program() ([]unix.SockFilter, error) {
	segs, err := segments()
	if err != nil {
		return nil, err
	}
	// Another architecture's system call numbers mean other calls: a 32-bit
	// syscall (int 0x80) would bypass every rule below, so it kills the process.
	insns := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: uint32(KillProcess)},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	insns = append(insns, search(segs)...)
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	if len(raw) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: the filter has %d instructions, more than the kernel's %d", len(raw), unix.BPF_MAXINSNS)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
}

// segment is a run of system call numbers, from lo up to the next segment's lo,
// that get one answer: an Action, or a Rule (then the run is one number).
type segment struct {
	lo     uint32
	action Action
	rule   *Rule
}

// segments maps every system call number to its answer, in runs.
func segments() ([]segment, error) {
	table := arch.X86_64.SyscallNames
	named := map[int]segment{}
	add := func(name string, s segment) error {
		nr, ok := table[name]
		if !ok {
			return fmt.Errorf("seccomp: %q is no x86-64 system call", name)
		}
		if _, dup := named[nr]; dup {
			return fmt.Errorf("seccomp: %q is named twice", name)
		}
		s.lo = uint32(nr)
		named[nr] = s
		return nil
	}
	for _, n := range Allowed {
		if err := add(n, segment{action: Allow}); err != nil {
			return nil, err
		}
	}
	for _, n := range Denied {
		if err := add(n, segment{action: EPERM}); err != nil {
			return nil, err
		}
	}
	for n, r := range ArgRules {
		if err := add(n, segment{rule: &r}); err != nil {
			return nil, err
		}
	}
	nrs := make([]int, 0, len(named))
	for nr := range named {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	var segs []segment
	next := 0 // the lowest number not yet in segs
	for _, nr := range nrs {
		if nr > next {
			segs = appendRun(segs, segment{lo: uint32(next), action: Default})
		}
		segs = appendRun(segs, named[nr])
		next = nr + 1
	}
	return appendRun(segs, segment{lo: uint32(next), action: Default}), nil
}

// appendRun appends s, or extends the last run when s answers the same.
func appendRun(segs []segment, s segment) []segment {
	if n := len(segs); n > 0 && s.rule == nil && segs[n-1].rule == nil && segs[n-1].action == s.action {
		return segs
	}
	return append(segs, s)
}

// search returns a program that answers, for the system call number in the
// accumulator, as segs say. The number is known to be at least segs[0].lo.
func search(segs []segment) []bpf.Instruction {
	if len(segs) == 1 {
		if s := segs[0]; s.rule != nil {
			return s.rule.program()
		}
		return []bpf.Instruction{bpf.RetConstant{Val: uint32(segs[0].action)}}
	}
	mid := len(segs) / 2
	below, above := search(segs[:mid]), search(segs[mid:])
	if len(below) <= 255 {
		node := bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: segs[mid].lo, SkipTrue: uint8(len(below))}
		return slices.Concat([]bpf.Instruction{node}, below, above)
	}
	// A conditional jump reaches 255 instructions; an unconditional one reaches any.
	node := bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: segs[mid].lo, SkipFalse: 1}
	return slices.Concat([]bpf.Instruction{node, bpf.Jump{Skip: uint32(len(below))}}, below, above)
}

// program returns the instructions that answer as r says. They may overwrite the
// accumulator: every path ends in a return.
func (r *Rule) program() []bpf.Instruction {
	var out []bpf.Instruction
	for _, c := range r.Cases {
		for i, cond := range c.If {
			// A failed condition skips the rest of this case: two instructions per
			// remaining condition, and its return.
			skip := uint8(2*(len(c.If)-1-i) + 1)
			out = append(out, bpf.LoadAbsolute{Off: offArgs + 8*uint32(cond.Arg), Size: 4})
			switch cond.Op {
			case Equal:
				out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: cond.Value, SkipFalse: skip})
			case BitsSet:
				out = append(out, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cond.Value, SkipFalse: skip})
			}
		}
		out = append(out, bpf.RetConstant{Val: uint32(c.Then)})
	}
	return append(out, bpf.RetConstant{Val: uint32(r.Else)})
}

// Encode lays prog out as the kernel's struct sock_filter array, for a process that
// installs it itself (the warm path's Python children).
func Encode(prog []unix.SockFilter) []byte {
	out := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		out = binary.LittleEndian.AppendUint16(out, f.Code)
		out = append(out, f.Jt, f.Jf)
		out = binary.LittleEndian.AppendUint32(out, f.K)
	}
	return out
}

// Decode reverses Encode.
func Decode(b []byte) ([]unix.SockFilter, error) {
	if len(b) == 0 || len(b)%8 != 0 {
		return nil, fmt.Errorf("seccomp: %d bytes is not a filter program", len(b))
	}
	prog := make([]unix.SockFilter, len(b)/8)
	for i := range prog {
		e := b[8*i:]
		prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(e), Jt: e[2], Jf: e[3], K: binary.LittleEndian.Uint32(e[4:])}
	}
	return prog, nil
}

// Install applies prog to the calling thread, which must have no_new_privs set and
// must be the one that then calls execve: filters are per thread until exec.
func Install(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_SECCOMP)", Err: err}
	}
	return nil
}
