package image

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// fakeRoot makes a small tree shaped like a fresh bootstrap: /etc with passwd, group and
// the host's resolv.conf (a symlink, as with systemd-resolved), docs and caches.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd":                                  "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":                                   "root:x:0:\nnogroup:x:65534:", // no final newline
		"etc/hostname":                                "vm\n",
		"usr/share/doc/bash/copyright":                "GPL",
		"usr/share/man/man1/ls.1.gz":                  "x",
		"usr/share/info/dir":                          "x",
		"usr/share/locale/locale.alias":               "C C.UTF-8",
		"usr/share/locale/de/LC_MESSAGES/dpkg.mo":     "x",
		"var/cache/apt/archives/python3_3.11.2-1.deb": "x",
		"var/lib/apt/lists/deb.debian.org_dists":      "x",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostResolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(hostResolv, []byte("nameserver 10.255.255.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostResolv, filepath.Join(root, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(hostResolv); err != nil || string(b) != "nameserver 10.255.255.53\n" {
			t.Errorf("the host's resolv.conf behind the symlink was changed: %q, %v", b, err)
		}
	})
	return root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAddSandboxUser(t *testing.T) {
	root := fakeRoot(t)
	for i := 0; i < 2; i++ { // the second call finds the entries and adds nothing
		if err := addSandboxUser(root); err != nil {
			t.Fatalf("addSandboxUser() call %d = %v", i+1, err)
		}
	}
	wantPasswd := "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" +
		"sandbox:x:1000:1000:codeexec sandbox:/work:/usr/sbin/nologin\n"
	if got := readFile(t, filepath.Join(root, "etc/passwd")); got != wantPasswd {
		t.Errorf("/etc/passwd = %q, want %q", got, wantPasswd)
	}
	wantGroup := "root:x:0:\nnogroup:x:65534:\nsandbox:x:1000:\n"
	if got := readFile(t, filepath.Join(root, "etc/group")); got != wantGroup {
		t.Errorf("/etc/group = %q, want %q", got, wantGroup)
	}
}

func TestAddSandboxUserConflict(t *testing.T) {
	tests := []struct{ name, passwd string }{
		{"uid taken", "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/bash\n"},
		{"name taken", "root:x:0:0:root:/root:/bin/bash\nsandbox:x:1001:1001::/home/sandbox:/bin/bash\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeRoot(t)
			if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(tt.passwd), 0o644); err != nil {
				t.Fatal(err)
			}
			err := addSandboxUser(root)
			if err == nil || !strings.Contains(err.Error(), "conflicts") {
				t.Errorf("addSandboxUser() = %v, want a conflict", err)
			}
		})
	}
}

func TestWriteNetworkFiles(t *testing.T) {
	root := fakeRoot(t)
	// The files must be readable by the sandbox user whatever the umask.
	defer syscall.Umask(syscall.Umask(0o077))
	if err := writeNetworkFiles(root); err != nil {
		t.Fatalf("writeNetworkFiles() = %v", err)
	}
	if got := readFile(t, filepath.Join(root, "etc/hostname")); got != "sandbox\n" {
		t.Errorf("/etc/hostname = %q, want %q", got, "sandbox\n")
	}
	hosts := readFile(t, filepath.Join(root, "etc/hosts"))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost", "127.0.1.1\tsandbox\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts = %q, want a line %q", hosts, want)
		}
	}
	for _, name := range []string{"hostname", "hosts"} {
		if fi, err := os.Lstat(filepath.Join(root, "etc", name)); err != nil || fi.Mode() != 0o644 {
			t.Errorf("/etc/%s: mode %v (%v), want 0644", name, fi.Mode(), err)
		}
	}
	fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != 0 || fi.Mode().Perm() != 0o644 {
		t.Errorf("/etc/resolv.conf: mode %v size %d, want an empty regular file with mode 0644", fi.Mode(), fi.Size())
	}
}

func TestStripPrivileges(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "su")
	type file struct {
		path string
		mode os.FileMode
	}
	for _, f := range []file{
		{"usr/bin/su", 0o755 | os.ModeSetuid},
		{"usr/bin/chage", 0o755 | os.ModeSetgid},
		{"usr/bin/both", 0o750 | os.ModeSetuid | os.ModeSetgid},
		{"usr/bin/ls", 0o755},
		{"tmp/sticky", 0o644 | os.ModeSticky},
	} {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	// A setgid directory is left alone (only regular files are changed), and a symlink to
	// a setuid file outside the tree must not be followed.
	if err := os.Mkdir(filepath.Join(root, "srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "srv"), 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outside, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "usr/bin/link-to-su")); err != nil {
		t.Fatal(err)
	}

	changed, err := stripPrivileges(root)
	if err != nil {
		t.Fatalf("stripPrivileges() = %v", err)
	}
	if want := []string{"/usr/bin/both", "/usr/bin/chage", "/usr/bin/su"}; !reflect.DeepEqual(changed, want) {
		t.Errorf("stripPrivileges() changed %v, want %v", changed, want)
	}
	for path, want := range map[string]os.FileMode{
		"usr/bin/su":    0o755,
		"usr/bin/chage": 0o755,
		"usr/bin/both":  0o750,
		"usr/bin/ls":    0o755,
		"tmp/sticky":    0o644 | os.ModeSticky,
		"srv":           0o755 | os.ModeSetgid | os.ModeDir,
	} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode()&^os.ModeType | (fi.Mode() & os.ModeDir); got != want {
			t.Errorf("after stripPrivileges, %s has mode %v, want %v", path, got, want)
		}
	}
	if fi, err := os.Lstat(outside); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("stripPrivileges followed a symlink out of the tree: %v, %v", fi.Mode(), err)
	}
}

func TestRemoveDocs(t *testing.T) {
	root := fakeRoot(t)
	if err := removeDocs(root); err != nil {
		t.Fatalf("removeDocs() = %v", err)
	}
	for _, gone := range []string{"usr/share/doc/bash", "usr/share/man/man1", "usr/share/info/dir",
		"usr/share/locale/de", "var/cache/apt/archives/python3_3.11.2-1.deb", "var/lib/apt/lists/deb.debian.org_dists"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("after removeDocs, %s: %v, want it gone", gone, err)
		}
	}
	for _, kept := range []string{"usr/share/locale/locale.alias", "var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "usr/share/doc"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("after removeDocs, %s: %v, want it kept", kept, err)
		}
	}
}

func TestMakeDirs(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o700); err != nil { // existing dirs are kept as they are
		t.Fatal(err)
	}
	if err := makeDirs(root); err != nil {
		t.Fatalf("makeDirs() = %v", err)
	}
	for path, want := range map[string]os.FileMode{
		"work": os.ModeDir | 0o755,
		"proc": os.ModeDir | 0o555,
		"sys":  os.ModeDir | 0o555,
		"dev":  os.ModeDir | 0o755,
		"tmp":  os.ModeDir | 0o700,
	} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("after makeDirs, /%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	// A file where a mount point belongs is an error.
	root2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(root2, "work"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := makeDirs(root2); err == nil {
		t.Error("makeDirs() with a file at /work = nil, want an error")
	}
}

func TestMakeDirsTmpSticky(t *testing.T) {
	root := t.TempDir()
	if err := makeDirs(root); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if want := os.ModeDir | os.ModeSticky | 0o777; fi.Mode() != want {
		t.Errorf("/tmp has mode %v, want %v", fi.Mode(), want)
	}
}

func TestMissingBytecode(t *testing.T) {
	root := t.TempDir()
	write := func(p string) {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("usr/lib/python3.11/os.py")
	write("usr/lib/python3.11/__pycache__/os.cpython-311.pyc")
	write("usr/lib/python3.11/json/__init__.py") // no bytecode
	write("usr/lib/python3/dist-packages/numpy/__init__.py")
	write("usr/lib/python3/dist-packages/numpy/__pycache__/__init__.cpython-311.pyc")
	write("usr/lib/python3/dist-packages/six.py") // no bytecode
	write("usr/lib/python3/dist-packages/README.txt")
	// What pip installs from a recipe's wheels.
	write("usr/local/lib/python3.11/dist-packages/tabulate/__init__.py") // no bytecode
	write("usr/local/lib/python3.11/dist-packages/probe.py")
	write("usr/local/lib/python3.11/dist-packages/__pycache__/probe.cpython-311.pyc")
	n, dirs, err := missingBytecode(root)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("missingBytecode() = %d, want 3", n)
	}
	if want := []string{"/usr/lib/python3.11", "/usr/lib/python3/dist-packages", "/usr/local/lib/python3.11/dist-packages"}; !reflect.DeepEqual(dirs, want) {
		t.Errorf("missingBytecode() dirs = %v, want %v", dirs, want)
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"numpy", true}, {"six", true}, {"tabulate", true}, {"probe", true}, {"json", true}, {"matplotlib", false}} {
		if got := hasPythonPackage(root, tt.name); got != tt.want {
			t.Errorf("hasPythonPackage(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
