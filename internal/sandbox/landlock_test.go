package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

func TestLandlockPlan(t *testing.T) {
	for _, tc := range []struct {
		abi        int
		wantNil    bool
		wantScoped bool
		wantRights uint64
	}{
		{abi: 0, wantNil: true},
		{abi: 1, wantRights: 1<<13 - 1},
		{abi: 3, wantRights: 1<<15 - 1},
		{abi: 5, wantRights: 1<<16 - 1},
		{abi: 6, wantRights: 1<<16 - 1, wantScoped: true},
		{abi: 99, wantRights: 1<<16 - 1, wantScoped: true}, // newer kernels: the newest known set
	} {
		p := newLandlockPlan(tc.abi)
		if tc.wantNil {
			if p != nil {
				t.Errorf("abi %d: plan %+v, want none", tc.abi, p)
			}
			continue
		}
		if p.FS != tc.wantRights {
			t.Errorf("abi %d: handled rights %#x, want %#x", tc.abi, p.FS, tc.wantRights)
		}
		if (p.Scoped != 0) != tc.wantScoped {
			t.Errorf("abi %d: scoped %#x", tc.abi, p.Scoped)
		}
		for _, r := range p.Rules {
			if r.Access&^p.FS != 0 {
				t.Errorf("abi %d: rule %s grants %#x beyond the handled %#x", tc.abi, r.Path, r.Access, p.FS)
			}
			if r.Path == "/" && r.Access&(ll.AccessFSWriteFile|ll.AccessFSMakeReg|ll.AccessFSRemoveFile) != 0 {
				t.Errorf("abi %d: the image is writable: %#x", tc.abi, r.Access)
			}
		}
	}
}

// landlockHelperEnv makes the test binary a helper that applies the plan and then
// tries to signal its parent and reach the parent's abstract socket.
const landlockHelperEnv = "CODEEXEC_TEST_LANDLOCK_HELPER"

// landlockHelper runs in a child test binary; see TestLandlockScopesIPC.
func landlockHelper() {
	runtime.LockOSThread() // Landlock restricts this thread, which makes the calls
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("prctl:", err)
		os.Exit(1)
	}
	if err := newLandlockPlan(landlockABI()).apply(); err != nil {
		fmt.Println("apply:", err)
		os.Exit(1)
	}
	fmt.Println("kill:", errName(unix.Kill(os.Getppid(), 0)))
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Println("socket:", err)
		os.Exit(1)
	}
	fmt.Println("connect:", errName(unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + os.Getenv(landlockHelperEnv)})))
	_, err = os.ReadFile("/etc/hostname")
	fmt.Println("read:", errName(err))
	fmt.Println("write:", errName(os.WriteFile(os.Getenv("CODEEXEC_TEST_LANDLOCK_FILE"), []byte("x"), 0o600)))
	os.Exit(0)
}

func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// The plan's scopes keep a sandbox from signalling, or connecting to the abstract
// unix sockets of, any process outside its Landlock domain — here, its parent.
func TestLandlockScopesIPC(t *testing.T) {
	if landlockABI() < 6 {
		skipOrFail(t, "Landlock ABI 6 (scoping) is missing")
	}
	name := fmt.Sprintf("codeexec-landlock-test-%d", os.Getpid())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// Not under /tmp, which the plan leaves writable.
	dir, err := os.MkdirTemp("/var/tmp", "codeexec-landlock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), landlockHelperEnv+"="+name, "CODEEXEC_TEST_LANDLOCK_FILE="+dir+"/f")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	for _, want := range []string{"kill: EPERM", "connect: EPERM", "read: ok", "write: EACCES"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q in the helper's output:\n%s", want, out)
		}
	}
}
