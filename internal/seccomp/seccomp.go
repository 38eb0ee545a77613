// Package seccomp builds the system call filter every sandbox process runs under,
// and installs it.
//
// The filter allows by default and refuses, with EPERM, what untrusted Python never
// needs and what kernel exploits most often start from. An allowlist was considered
// and rejected for now: the scientific stack's syscall set is large and varies with
// library versions, and a denied syscall that numpy needs is an outage, while the
// namespaces, the unprivileged uid and the capability drop already bound the rest.
package seccomp

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	libseccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Denied are refused with EPERM.
var Denied = []string{
	// mounts and file system views
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
	"fsconfig", "fsmount", "fspick", "mount_setattr",
	// namespaces (clone with namespace flags is refused below)
	"unshare", "setns",
	// other processes' memory and tracing
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// kernel attack surface
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
	// the machine itself
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime",
	"clock_adjtime", "adjtimex", "quotactl", "vhangup", "iopl", "ioperm", "personality",
	"mknod", "mknodat",
}

// namespaceFlags are the clone flags that make new namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Program assembles the filter.
func Program() ([]unix.SockFilter, error) {
	policy := libseccomp.Policy{
		DefaultAction: libseccomp.ActionAllow,
		Syscalls: []libseccomp.SyscallGroup{
			{Names: Denied, Action: libseccomp.ActionErrno},
			{
				NamesWithCondtions: []libseccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: libseccomp.ArgumentConditions{{Argument: 0, Operation: libseccomp.BitsSet, Value: namespaceFlags}},
				}},
				Action: libseccomp.ActionErrno,
			},
			// clone3 passes its flags in memory a filter cannot read: ENOSYS makes the C
			// library fall back to clone, whose flags are checked (as Docker does).
			{Names: []string{"clone3"}, Action: libseccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))},
		},
	}
	body, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	// The library lets other architectures through; a 32-bit syscall table would
	// bypass every rule above, so anything but x86-64 kills the process.
	insns := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
	}, body...)
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
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
