package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/codeexec/codeexec/internal/container"
)

func TestUserNSSysctlsCheck(t *testing.T) {
	tests := []struct {
		name   string
		vals   map[string]string
		want   Status
		detail string
		fix    string
	}{
		{"disabled", map[string]string{"user/max_user_namespaces": "0"}, Fail, "is 0", "sysctl -w user.max_user_namespaces=15000"},
		{"no file", map[string]string{}, Fail, "no /proc/sys/user/max_user_namespaces", "CONFIG_USER_NS"},
		{"garbage", map[string]string{"user/max_user_namespaces": "lots"}, Fail, `"lots"`, "sysctl -w"},
		{"plain", map[string]string{"user/max_user_namespaces": "96365"}, OK, "user.max_user_namespaces=96365", ""},
		{"ubuntu", map[string]string{
			"user/max_user_namespaces":                     "63000",
			"kernel/unprivileged_userns_clone":             "1",
			"kernel/apparmor_restrict_unprivileged_userns": "1",
		}, OK, "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=1 (these limit unprivileged users", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := userNSSysctlsCheck(tt.vals)
			if c.Status != tt.want || !strings.Contains(c.Detail, tt.detail) || !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("userNSSysctlsCheck(%v) = %+v, want status %q, detail containing %q, fix containing %q",
					tt.vals, c, tt.want, tt.detail, tt.fix)
			}
			if tt.want == OK && c.Fix != "" {
				t.Errorf("userNSSysctlsCheck(%v).Fix = %q, want none", tt.vals, c.Fix)
			}
		})
	}
}

func TestCheckUserNSSysctlsReadsFiles(t *testing.T) {
	proc := writeProc(t, map[string]string{
		"sys/user/max_user_namespaces":         "0\n",
		"sys/kernel/unprivileged_userns_clone": "0\n",
	})
	if c := checkUserNSSysctls(proc); c.Status != Fail {
		t.Errorf("checkUserNSSysctls(max_user_namespaces=0) = %+v, want fail", c)
	}
	proc = writeProc(t, map[string]string{
		"sys/user/max_user_namespaces":         "15000\n",
		"sys/kernel/unprivileged_userns_clone": "0\n",
	})
	want := "user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=0"
	if c := checkUserNSSysctls(proc); c.Status != OK || !strings.HasPrefix(c.Detail, want) {
		t.Errorf("checkUserNSSysctls(15000, clone=0) = %+v, want ok with detail starting %q", c, want)
	}
}

func TestNamespacesCheckNamesTheMissingKind(t *testing.T) {
	eperm := syscall.EPERM
	tests := []struct {
		name        string
		fails       uintptr // a try including any of these flags fails
		euid        int
		rt          container.Runtime
		want        Status
		detail, fix string
	}{
		{"all work", 0, 0, container.None, OK, "created user, mount, pid, net, ipc, uts, cgroup", ""},
		{"no user namespaces", syscall.CLONE_NEWUSER, 0, container.None, Fail, "cannot create a user namespace: operation not permitted", "CONFIG_USER_NS=y"},
		{"no user namespaces in a pod", syscall.CLONE_NEWUSER, 0, container.Kubernetes, Fail, "cannot create a user namespace",
			"capabilities.add [SYS_ADMIN, SETUID, SETGID, DAC_OVERRIDE], seccompProfile RuntimeDefault"},
		{"no user namespaces under podman", syscall.CLONE_NEWUSER, 0, container.Podman, Fail, "cannot create a user namespace",
			"--cap-add SYS_ADMIN,SETUID,SETGID,DAC_OVERRIDE --security-opt apparmor=unconfined"},
		{"no net or ipc", syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC, 0, container.None, Fail,
			"cannot create namespaces: net (operation not permitted), ipc (operation not permitted)", "CONFIG_NET_NS=y CONFIG_IPC_NS=y"},
		{"not root", syscall.CLONE_NEWUSER, 1000, container.None, Fail, "as uid 1000", "run as root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tried []uintptr
			try := func(flags uintptr) error {
				tried = append(tried, flags)
				if flags&tt.fails != 0 {
					return eperm
				}
				return nil
			}
			c := namespacesCheck(try, tt.euid, tt.rt)
			if c.Status != tt.want || !strings.Contains(c.Detail, tt.detail) || !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("namespacesCheck(failing %#x, euid %d, %q) = %+v, want status %q, detail containing %q, fix containing %q",
					tt.fails, tt.euid, tt.rt, c, tt.want, tt.detail, tt.fix)
			}
			if tt.want == OK && len(tried) != 1 {
				t.Errorf("namespacesCheck(all work) made %d attempts, want 1", len(tried))
			}
		})
	}
}

func TestCheckNamespacesMissingBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "no-such-true")
	c := checkNamespaces(context.Background(), bin, 0, container.None)
	if c.Status != Fail || !strings.Contains(c.Detail, "cannot test") || !strings.Contains(c.Fix, bin) {
		t.Errorf("checkNamespaces(%q) = %+v, want fail saying it cannot test, with a fix naming the binary", bin, c)
	}
}

func TestCheckNamespacesNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("tests the message for users other than root")
	}
	c := checkNamespaces(context.Background(), "/bin/true", os.Geteuid(), container.None)
	if c.Status != Fail || !strings.Contains(c.Fix, "root") {
		t.Errorf("checkNamespaces as uid %d = %+v, want fail telling to run as root", os.Geteuid(), c)
	}
}
