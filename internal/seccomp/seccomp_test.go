package seccomp

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestProgramAssembles(t *testing.T) {
	p, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	// A binary search over ~100 runs of numbers; a linear list of every allowed call
	// would be three times as long.
	if len(p) < 50 || len(p) > 400 {
		t.Fatalf("program has %d instructions, want a search tree of 50 to 400", len(p))
	}
	t.Logf("%d instructions", len(p))
	b := Encode(p)
	if len(b) != 8*len(p) {
		t.Fatalf("Encode gave %d bytes for %d instructions", len(b), len(p))
	}
	back, err := Decode(b)
	if err != nil || len(back) != len(p) {
		t.Fatalf("Decode(Encode(p)) = %d instructions, %v", len(back), err)
	}
	for i := range p {
		if back[i] != p[i] {
			t.Fatalf("instruction %d: %+v after the round trip, want %+v", i, back[i], p[i])
		}
	}
	if _, err := Decode(b[:7]); err == nil {
		t.Error("Decode accepted a partial instruction")
	}
}

// vm runs the filter on crafted struct seccomp_data, as the kernel would.
type vm struct{ *bpf.VM }

func newVM(t *testing.T) vm {
	t.Helper()
	p, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	insns := make([]bpf.Instruction, len(p))
	for i, f := range p {
		insns[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
	}
	v, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("the filter is not a valid program: %v", err)
	}
	return vm{v}
}

// answer runs the filter for system call nr of architecture auditArch with args.
// x/net/bpf's VM loads words big-endian (network order) where the kernel loads them
// in the machine's order, so each 32-bit word is laid out big-endian at the offset
// the program reads: the value the program sees is the one the kernel would give it.
func (v vm) answer(t *testing.T, auditArch, nr uint32, args ...uint64) Action {
	t.Helper()
	data := make([]byte, 64) // sizeof(struct seccomp_data)
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))       // low half first on x86-64
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32)) // then the high half
	}
	n, err := v.Run(data)
	if err != nil {
		t.Fatalf("running the filter for %d: %v", nr, err)
	}
	return Action(uint32(n))
}

func nr(t *testing.T, name string) uint32 {
	t.Helper()
	n, ok := arch.X86_64.SyscallNames[name]
	if !ok {
		t.Fatalf("no x86-64 system call %q", name)
	}
	return uint32(n)
}

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case KillProcess:
		return "kill"
	case EPERM:
		return "EPERM"
	case ENOSYS:
		return "ENOSYS"
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT"
	}
	return fmt.Sprintf("action %#x", uint32(a))
}

func TestAnswers(t *testing.T) {
	v := newVM(t)
	const hi = 1 << 32 // a high half the kernel ignores for int arguments
	tests := []struct {
		name string
		nr   uint32
		args []uint64
		want Action
	}{
		// what every program does
		{"read", nr(t, "read"), nil, Allow},
		{"write", nr(t, "write"), nil, Allow},
		{"execve", nr(t, "execve"), nil, Allow},
		{"exit_group", nr(t, "exit_group"), nil, Allow},
		{"futex", nr(t, "futex"), nil, Allow},
		{"mmap", nr(t, "mmap"), nil, Allow},
		{"rseq", nr(t, "rseq"), nil, Allow},
		{"close_range", nr(t, "close_range"), nil, Allow},
		{"futex_waitv, the highest allowed", nr(t, "futex_waitv"), nil, Allow},
		// refused by name
		{"mount", nr(t, "mount"), nil, EPERM},
		{"unshare", nr(t, "unshare"), nil, EPERM},
		{"setns", nr(t, "setns"), nil, EPERM},
		{"ptrace", nr(t, "ptrace"), nil, EPERM},
		{"bpf", nr(t, "bpf"), nil, EPERM},
		{"keyctl", nr(t, "keyctl"), nil, EPERM},
		{"io_uring_setup", nr(t, "io_uring_setup"), nil, EPERM},
		{"personality", nr(t, "personality"), []uint64{0xffffffff}, EPERM},
		{"mknodat", nr(t, "mknodat"), nil, EPERM},
		{"sethostname", nr(t, "sethostname"), nil, EPERM},
		// never named: ENOSYS, whatever the kernel has
		{"clone3", nr(t, "clone3"), nil, ENOSYS},
		{"open_tree_attr", nr(t, "open_tree_attr"), nil, ENOSYS},
		{"listmount", nr(t, "listmount"), nil, ENOSYS},
		{"statmount", nr(t, "statmount"), nil, ENOSYS},
		{"memfd_secret", nr(t, "memfd_secret"), nil, ENOSYS},
		{"process_madvise", nr(t, "process_madvise"), nil, ENOSYS},
		{"modify_ldt", nr(t, "modify_ldt"), nil, ENOSYS},
		{"io_setup", nr(t, "io_setup"), nil, ENOSYS},
		{"a future call (500)", 500, nil, ENOSYS},
		{"x32 read", 0x40000000, nil, ENOSYS},
		{"x32 mount", 0x40000000 | nr(t, "mount"), nil, ENOSYS},
		{"number -1", 0xffffffff, nil, ENOSYS},
		// clone: threads and fork, not namespaces
		{"clone thread", nr(t, "clone"), []uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID}, Allow},
		{"clone fork", nr(t, "clone"), []uint64{unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | uint64(unix.SIGCHLD)}, Allow},
		{"clone newuser", nr(t, "clone"), []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, EPERM},
		{"clone newnet, high half set", nr(t, "clone"), []uint64{hi | unix.CLONE_NEWNET}, EPERM},
		{"clone newtime", nr(t, "clone"), []uint64{unix.CLONE_NEWTIME}, EPERM},
		// socket: unix, inet, inet6 and netlink routing only
		{"socket unix", nr(t, "socket"), []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, Allow},
		{"socket inet", nr(t, "socket"), []uint64{unix.AF_INET, unix.SOCK_DGRAM}, Allow},
		{"socket inet6", nr(t, "socket"), []uint64{unix.AF_INET6, unix.SOCK_STREAM}, Allow},
		{"socket inet, high half set", nr(t, "socket"), []uint64{hi | unix.AF_INET, unix.SOCK_STREAM}, Allow},
		{"socket netlink route", nr(t, "socket"), []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, Allow},
		{"socket netlink audit", nr(t, "socket"), []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}, EAFNOSUPPORT},
		{"socket netlink uevent", nr(t, "socket"), []uint64{unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_KOBJECT_UEVENT}, EAFNOSUPPORT},
		{"socket netlink sock_diag", nr(t, "socket"), []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG}, EAFNOSUPPORT},
		{"socket netlink route, audit in the high half", nr(t, "socket"), []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT << 32}, Allow},
		{"socket vsock", nr(t, "socket"), []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, EAFNOSUPPORT},
		{"socket vsock, high half set", nr(t, "socket"), []uint64{hi | unix.AF_VSOCK, unix.SOCK_STREAM}, EAFNOSUPPORT},
		{"socket packet", nr(t, "socket"), []uint64{unix.AF_PACKET, unix.SOCK_RAW}, EAFNOSUPPORT},
		{"socket alg", nr(t, "socket"), []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET}, EAFNOSUPPORT},
		{"socket tipc", nr(t, "socket"), []uint64{unix.AF_TIPC, unix.SOCK_RDM}, EAFNOSUPPORT},
		{"socket rds", nr(t, "socket"), []uint64{unix.AF_RDS, unix.SOCK_SEQPACKET}, EAFNOSUPPORT},
		{"socket key", nr(t, "socket"), []uint64{unix.AF_KEY, unix.SOCK_RAW}, EAFNOSUPPORT},
		{"socket xdp", nr(t, "socket"), []uint64{unix.AF_XDP, unix.SOCK_RAW}, EAFNOSUPPORT},
		{"socket bluetooth", nr(t, "socket"), []uint64{unix.AF_BLUETOOTH, unix.SOCK_STREAM}, EAFNOSUPPORT},
		{"socket can", nr(t, "socket"), []uint64{unix.AF_CAN, unix.SOCK_RAW}, EAFNOSUPPORT},
		{"socket family 0", nr(t, "socket"), []uint64{0, unix.SOCK_STREAM}, EAFNOSUPPORT},
		// socketpair: unix only
		{"socketpair unix", nr(t, "socketpair"), []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, Allow},
		{"socketpair inet", nr(t, "socketpair"), []uint64{unix.AF_INET, unix.SOCK_STREAM}, EAFNOSUPPORT},
		{"socketpair vsock", nr(t, "socketpair"), []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, EAFNOSUPPORT},
		{"socketpair tipc", nr(t, "socketpair"), []uint64{unix.AF_TIPC, unix.SOCK_STREAM}, EAFNOSUPPORT},
		// ioctl: not the terminal's input
		{"ioctl TCGETS", nr(t, "ioctl"), []uint64{0, unix.TCGETS}, Allow},
		{"ioctl FIONREAD (0x541b)", nr(t, "ioctl"), []uint64{3, 0x541b}, Allow},
		{"ioctl TIOCSTI", nr(t, "ioctl"), []uint64{0, tiocsti}, EPERM},
		{"ioctl TIOCSTI, high half set", nr(t, "ioctl"), []uint64{0, hi | tiocsti}, EPERM},
		{"ioctl TIOCLINUX", nr(t, "ioctl"), []uint64{0, tioclinux}, EPERM},
	}
	for _, tt := range tests {
		if got := v.answer(t, unix.AUDIT_ARCH_X86_64, tt.nr, tt.args...); got != tt.want {
			t.Errorf("%s (%d, %#x): %v, want %v", tt.name, tt.nr, tt.args, got, tt.want)
		}
	}
	for _, a := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_AARCH64, 0} {
		if got := v.answer(t, a, 3); got != KillProcess {
			t.Errorf("system call 3 of architecture %#x: %v, want kill", a, got)
		}
	}
}

// TestEveryNumber checks the search tree against the lists it was built from, for
// every number up to well past the newest system call.
func TestEveryNumber(t *testing.T) {
	v := newVM(t)
	want := map[uint32]Action{}
	for _, n := range Allowed {
		want[nr(t, n)] = Allow
	}
	for _, n := range Denied {
		want[nr(t, n)] = EPERM
	}
	for n, r := range ArgRules {
		want[nr(t, n)] = r.answer(make([]uint64, 6))
	}
	allowed := 0
	for n := uint32(0); n < 1024; n++ {
		w, ok := want[n]
		if !ok {
			w = Default
		}
		if got := v.answer(t, unix.AUDIT_ARCH_X86_64, n); got != w {
			t.Errorf("system call %d (%s): %v, want %v", n, arch.X86_64.SyscallNumbers[int(n)], got, w)
		}
		if w == Allow {
			allowed++
		}
	}
	t.Logf("%d of %d x86-64 system calls allowed without looking at arguments", allowed, len(arch.X86_64.SyscallNumbers))
}

// answer is the reference meaning of a Rule, for TestEveryNumber.
func (r Rule) answer(args []uint64) Action {
	for _, c := range r.Cases {
		holds := true
		for _, cond := range c.If {
			a := uint32(args[cond.Arg])
			switch cond.Op {
			case Equal:
				holds = holds && a == cond.Value
			case BitsSet:
				holds = holds && a&cond.Value != 0
			}
		}
		if holds {
			return c.Then
		}
	}
	return r.Else
}

func TestListsAreDisjoint(t *testing.T) {
	seen := map[string]string{}
	check := func(list, name string) {
		if prev, dup := seen[name]; dup {
			t.Errorf("%q is in %s and in %s", name, prev, list)
		}
		seen[name] = list
	}
	for _, n := range Allowed {
		check("Allowed", n)
	}
	for _, n := range Denied {
		check("Denied", n)
	}
	for n := range ArgRules {
		check("ArgRules", n)
	}
}

// withFilter runs f on a thread of its own under the filter; the thread, and the
// filter with it, ends with f. The filter needs no privilege, only no_new_privs.
func withFilter(t *testing.T, f func()) {
	t.Helper()
	prog, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			done <- err
			return
		}
		if err := Install(prog); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestKernelAnswers installs the filter for real and checks the kernel's answers.
func TestKernelAnswers(t *testing.T) {
	type call struct {
		name string
		nr   uintptr
		args [3]uintptr
		want error // nil: the call succeeded (a descriptor it returned is closed)
	}
	calls := []call{
		{"socket inet", unix.SYS_SOCKET, [3]uintptr{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0}, nil},
		{"socket netlink route", unix.SYS_SOCKET, [3]uintptr{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE}, nil},
		{"socket vsock", unix.SYS_SOCKET, [3]uintptr{unix.AF_VSOCK, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}, unix.EAFNOSUPPORT},
		{"socket netlink uevent", unix.SYS_SOCKET, [3]uintptr{unix.AF_NETLINK, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT}, unix.EAFNOSUPPORT},
		{"listmount", 458, [3]uintptr{}, unix.ENOSYS},
		{"unshare", unix.SYS_UNSHARE, [3]uintptr{unix.CLONE_NEWUSER}, unix.EPERM},
		{"getpid", unix.SYS_GETPID, [3]uintptr{}, nil},
	}
	got := make([]error, len(calls))
	withFilter(t, func() {
		for i, c := range calls {
			r, _, errno := unix.Syscall(c.nr, c.args[0], c.args[1], c.args[2])
			if errno != 0 {
				got[i] = errno
			} else if c.nr == unix.SYS_SOCKET {
				unix.Close(int(r))
			}
		}
	})
	for i, c := range calls {
		if got[i] != c.want {
			t.Errorf("%s: %v, want %v", c.name, got[i], c.want)
		}
	}
}

// BenchmarkInstall measures what installing the filter costs a new sandbox process
// (the kernel verifies, translates and JIT-compiles it, and runs it once per system
// call number to learn which calls it never needs to run it for).
func BenchmarkInstall(b *testing.B) {
	prog, err := Program()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		done := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with its filter
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				done <- err
				return
			}
			done <- Install(prog)
		}()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
