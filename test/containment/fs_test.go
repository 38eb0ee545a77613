package containment_test

import (
	"fmt"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestFilesystem attacks the sandbox's view of the file system: host files, the
// image, devices and sysfs.
func TestFilesystem(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Lines of the host's shadow file that the image's does not have: a sandbox that
	// printed one of them read the host's file.
	var hostShadow []string
	if data, err := os.ReadFile("/etc/shadow"); err == nil {
		image, _ := os.ReadFile(filepath.Join(sandboxtest.Rootfs(t), "etc/shadow"))
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Split(l, ":"); len(f) > 2 && len(f[1]) > 4 && !strings.Contains(string(image), l) {
				hostShadow = append(hostShadow, f[1])
			}
		}
	}
	hostShadow = append(hostShadow, host.secret)

	runAttacks(t, []attack{
		{
			// Reads the shadow files, directly and through pid 1's root: the image's are
			// root's alone, the host's are out of reach.
			name: "shadow_files",
			code: `
print("shadow", E(rd, "/etc/shadow"))
print("gshadow", E(rd, "/etc/gshadow"))
print("proc1 shadow", E(rd, "/proc/1/root/etc/shadow"))
print("selfroot shadow", E(rd, "/proc/self/root/../../etc/shadow"))
`,
			check: all(okLines("shadow EACCES", "gshadow EACCES", "proc1 shadow EACCES", "selfroot shadow EACCES"), absent(hostShadow...)),
		},
		{
			// Reads a world-readable marker file the test wrote on the host, by every
			// route that could lead out of the sandbox's root.
			name: "host_marker_file",
			code: fmt.Sprintf(`
m, d = %q, %q
print("direct", E(rd, m))
print("proc1root", E(rd, "/proc/1/root" + m))
print("selfroot", E(rd, "/proc/self/root/../../.." + m))
print("dotdot", E(rd, "/work/../../../.." + m))
print("dir", E(os.listdir, d))
`, host.marker, host.dir),
			check: all(okLines("direct ENOENT", "proc1root ENOENT", "selfroot ENOENT", "dotdot ENOENT", "dir ENOENT"), absent(host.secret)),
		},
		{
			// Looks for the host's private directories: /root, the image store and its
			// state dirs, the test's own source tree (whose host path starts with /work).
			name: "host_directories",
			code: fmt.Sprintf(`
import glob
print("root", E(os.listdir, "/root"))
print("store", E(os.listdir, "/var/lib/codeexec"))
print("state", glob.glob("/var/lib/codeexec*") + glob.glob("/tmp/codeexec-*") + glob.glob("/proc/*/root/var/lib/codeexec"))
print("cwd", E(os.listdir, %q))
print("home", ls("/home"), "mnt", ls("/mnt"), "media", ls("/media"))
`, cwd),
			check: okLines("root EACCES", "store ENOENT", "state []", "cwd ENOENT", "home [] mnt [] media []"),
		},
		{
			// Climbs out through the magic links of /proc: root, cwd and exe of pid 1 and
			// of itself, nested.
			name: "proc_root_links",
			code: `
print("roots", os.readlink("/proc/self/root"), os.readlink("/proc/1/root"))
print("rootdotdot", os.stat("/proc/self/root/..").st_ino == os.stat("/").st_ino and ls("/proc/1/root/..") == ls("/"))
print("nested", rd("/proc/self/root/proc/self/root/proc/1/root/etc/hostname").decode().strip())
print("cwd", os.readlink("/proc/1/cwd"))
print("exe", os.readlink("/proc/self/exe").startswith("/usr/bin/python3"))
`,
			check: okLines("roots / /", "rootdotdot True", "nested sandbox", "cwd /work", "exe True"),
		},
		{
			// Walks up from /work with "..": by chdir, in one long path, and from an open
			// directory's descriptor.
			name: "dotdot_from_work",
			code: `
for _ in range(64):
    os.chdir("..")
print("cwd", os.getcwd(), ls(".") == ls("/"))
print("deep", rd("/work/" + "../" * 64 + "etc/hostname").decode().strip())
fd = os.open("/work", os.O_RDONLY | os.O_DIRECTORY)
print("fromfd", rd("/proc/self/fd/%d/../../../../etc/hostname" % fd).decode().strip())
print("openat", ls(os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)) == ls("/"))
`,
			check: okLines("cwd / True", "deep sandbox", "fromfd sandbox", "openat True"),
		},
		{
			// Plants symlinks to pid 1's root, to host paths and to the image store in
			// every writable place, and follows them.
			name: "symlink_escape",
			code: fmt.Sprintf(`
m, d = %q, %q
os.symlink("/proc/1/root", "/work/l1")
print("l1", ls("/work/l1") == ls("/"))
os.symlink(m, "/work/l2")
print("l2", E(rd, "/work/l2"))
os.symlink("/", "/work/l3")
print("l3", rd("/work/l3/etc/hostname").decode().strip())
os.symlink("/proc/self/root/../../../../var/lib/codeexec", "/tmp/l4")
print("l4", E(os.listdir, "/tmp/l4"))
os.symlink("/proc/1/root" + d, "/dev/shm/l5")
print("l5", E(os.listdir, "/dev/shm/l5"))
os.symlink("../../../../../../.." + m, "/work/l6")
print("l6", E(rd, "/work/l6"))
`, host.marker, host.dir),
			check: all(okLines("l1 True", "l2 ENOENT", "l3 sandbox", "l4 ENOENT", "l5 ENOENT", "l6 ENOENT"), absent(host.secret)),
		},
		{
			// Hard-links image files into the writable mounts, including through a
			// /proc/self/fd magic link: every mount boundary refuses.
			name: "hardlink_image_files",
			code: `
print("passwd", E(os.link, "/etc/passwd", "/work/passwd"))
print("python", E(os.link, "/usr/bin/python3", "/tmp/python3"))
print("shadow", E(os.link, "/etc/shadow", "/dev/shm/shadow"))
fd = os.open("/etc/hostname", os.O_RDONLY)
print("fdlink", E(lambda: os.link("/proc/self/fd/%d" % fd, "/work/hostname", follow_symlinks=True)))
`,
			check: okLines("passwd EXDEV", "python EXDEV", "shadow EXDEV", "fdlink EXDEV"),
		},
		{
			// Reads sysfs for host information (network devices, the cgroup tree, CPUs)
			// and tries to mount a sysfs of its own.
			name: "sysfs",
			code: `
print("sys", ls("/sys"))
for p in ["/sys/class/net", "/sys/fs/cgroup", "/sys/kernel", "/sys/firmware", "/sys/devices/system/cpu"]:
    print(p, E(os.listdir, p))
print("mount sysfs", sc(165, b"sysfs", b"/tmp", b"sysfs", 0, None))
`,
			check: okLines("sys []", "/sys/class/net ENOENT", "/sys/fs/cgroup ENOENT", "/sys/kernel ENOENT",
				"/sys/firmware ENOENT", "/sys/devices/system/cpu ENOENT", "mount sysfs EPERM"),
		},
		{
			// Writes to the image: new files in /usr, /etc, /bin, /var and /, appends to
			// existing ones, and metadata changes that would be no-ops if allowed. Appending
			// to a file of the image's root fails on its permissions before the read-only
			// mount is consulted; creating one fails on the mount.
			name: "image_writes",
			code: `
def ap(p):
    with open(p, "a") as f:
        f.write("")
for p in ["/usr/evil", "/etc/evil", "/bin/evil", "/var/evil", "/evil", "/usr/lib/python3/dist-packages/evil.py"]:
    print("create", p, E(wr, p))
for p in ["/etc/passwd", "/usr/bin/python3", "/etc/ld.so.preload"]:
    print("append", p, E(ap, p))
print("mkdir", E(os.mkdir, "/opt/evil"))
print("rename", E(os.rename, "/etc/hostname", "/etc/hostname"))
print("chmod", E(os.chmod, "/etc/hostname", os.stat("/etc/hostname").st_mode & 0o7777))
print("utime", E(os.utime, "/etc/hostname"))
`,
			check: okLines("create /usr/evil EROFS", "create /etc/evil EROFS", "create /bin/evil EROFS", "create /var/evil EROFS",
				"create /evil EROFS", "create /usr/lib/python3/dist-packages/evil.py EROFS", "append /etc/passwd EACCES",
				"append /usr/bin/python3 EACCES", "append /etc/ld.so.preload EROFS", "mkdir EROFS", "rename EROFS", "chmod EROFS", "utime EROFS"),
		},
		{
			// Lists /dev: only the harmless devices, the fd links and shm; /dev itself is
			// read-only.
			name: "dev_listing",
			code: `
print("dev", ls("/dev"))
print("links", os.readlink("/dev/fd"), os.readlink("/dev/stdin"))
print("kinds", [stat.S_ISCHR(os.stat("/dev/" + d).st_mode) for d in ["null", "zero", "full", "random", "urandom"]])
print("create", E(wr, "/dev/evil"))
print("shm", E(wr, "/dev/shm/ok"))
`,
			check: okLines("dev ['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero']",
				"links /proc/self/fd /proc/self/fd/0", "kinds [True, True, True, True, True]", "create EROFS", "shm ok"),
		},
		{
			// Opens the dangerous device nodes (physical memory, kernel log, disks, ttys,
			// KVM, tun, fuse) for reading and writing: none exists, and /dev is read-only
			// so none can be created by opening it.
			name: "device_nodes",
			code: `
for d in ["mem", "kmem", "port", "kmsg", "vda", "sda", "tty", "console", "tty0", "loop0", "loop-control", "kvm", "net/tun", "fuse", "vsock"]:
    print(d, E(rd, "/dev/" + d, 1), E(wr, "/dev/" + d))
`,
			check: okLines("mem ENOENT EROFS", "kmem ENOENT EROFS", "port ENOENT EROFS", "kmsg ENOENT EROFS",
				"vda ENOENT EROFS", "sda ENOENT EROFS", "tty ENOENT EROFS", "console ENOENT EROFS", "tty0 ENOENT EROFS",
				"loop0 ENOENT EROFS", "loop-control ENOENT EROFS", "kvm ENOENT EROFS", "net/tun ENOENT ENOENT",
				"fuse ENOENT EROFS", "vsock ENOENT EROFS"),
		},
		{
			// Makes device nodes of its own (/dev/mem's numbers, a disk) and FIFOs: the
			// filter refuses mknod outright.
			name: "mknod",
			code: `
print("chr", E(os.mknod, "/tmp/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1)))
print("blk", E(os.mknod, "/work/vda", stat.S_IFBLK | 0o666, os.makedev(254, 0)))
print("dev", E(os.mknod, "/dev/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1)))
print("fifo", E(os.mkfifo, "/tmp/fifo"))
print("mknodat", sc(259, -100, b"/tmp/kmsg", stat.S_IFCHR | 0o666, os.makedev(1, 11)))
`,
			check: okLines("chr EPERM", "blk EPERM", "dev EPERM", "fifo EPERM", "mknodat EPERM"),
		},
	})
}

// TestOutputDirLinks attacks the server's copy of produced files (Request.OutputDir,
// `codeexec run --out`): links to host files and to the image, and a process that keeps
// swapping a produced file for a symlink while the server collects. Only the regular
// file the program wrote may come out, and nothing of the host.
func TestOutputDirLinks(t *testing.T) {
	code := prelude + fmt.Sprintf(`
import time
m, d = %q, %q
wr("/work/real.txt", "genuine")
for name, target in [("marker", m), ("dir", d), ("root", "/"), ("proc1", "/proc/1/root" + m), ("shadow", "/etc/shadow")]:
    os.symlink(target, "/work/" + name)
print("link", E(os.link, "/etc/passwd", "/work/passwd"))
# A process outlives the program and swaps swap.txt between a file and a symlink to the
# marker for as long as the server may be collecting (a warm child is killed only after).
wr("/work/swap.txt", "plain")
if os.fork() == 0:
    os.setsid()
    end = time.time() + 3
    while time.time() < end:
        try:
            os.symlink(m, "/work/swap.new")
            os.replace("/work/swap.new", "/work/swap.txt")
            wr("/work/swap.new", "plain")
            os.replace("/work/swap.new", "/work/swap.txt")
        except OSError:
            pass
    os._exit(0)
time.sleep(0.2)
print("done")
`, host.marker, host.dir)
	// The regular files the program writes; the swapper's temporary name may be caught,
	// and empty if caught between its creation and its write.
	produced := map[string]bool{"real.txt": true, "swap.txt": true, "swap.new": true}
	countAttacks(t.Name(), []attack{{name: "output_dir_links"}})
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			r := runnerFor(t, p)
			attackCount.Add(1)
			out := t.TempDir()
			l := limits()
			res, err := r.Run(t.Context(), &job.Request{Code: code, Limits: l, OutputDir: out})
			if err != nil {
				// A file the swapper changes between the listing and its copy is
				// skipped and reported (save_error), never a failed run.
				t.Fatalf("Run: %v", err)
			}
			okLines("link EXDEV", "done")(t, res)
			err = filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(out, path)
				if !d.Type().IsRegular() {
					t.Errorf("output dir holds %s, not a regular file (%v)", rel, d.Type())
					return nil
				}
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				switch {
				case strings.Contains(string(data), host.secret):
					t.Errorf("output file %s holds the host's marker", rel)
				case rel == "real.txt" && string(data) != "genuine", rel != "real.txt" && string(data) != "plain" && len(data) > 0:
					t.Errorf("output file %s holds %q", rel, data)
				case !produced[rel]:
					t.Errorf("output dir holds %s (%q): only files the program wrote may come out", rel, data)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(out, "real.txt")); err != nil {
				t.Errorf("the program's own file was not copied out: %v", err)
			}
			for _, f := range res.Files {
				switch {
				case !produced[f.Path]:
					t.Errorf("Result lists %s", f.Path)
				case f.SaveError != "" && f.Path == "real.txt":
					t.Errorf("real.txt was not saved: %s", f.SaveError)
				case f.SaveError != "":
					t.Logf("%s changed while it was copied: %s", f.Path, f.SaveError)
				case f.SavedAs != filepath.Join(out, f.Path):
					t.Errorf("%s saved as %q", f.Path, f.SavedAs)
				}
			}
			checkHealthy(t, r)
		})
	}
}
