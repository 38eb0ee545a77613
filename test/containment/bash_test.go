package containment_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// bashPrelude names the outcome of a command the way the Python prelude's E does: "ok",
// or the last part of the command's error message ("Permission denied", ...), which
// is how the tools of the image report an errno.
const bashPrelude = `E() { local e; if e=$("$@" 2>&1 >/dev/null); then echo ok; else e=${e%%$'\n'*}; echo "${e##*: }"; fi; }
`

// TestBash is the battery's attacks written as bash programs: a shell script is as
// hostile as a Python one, and reaches the kernel through other tools (coreutils,
// bash's own /dev/tcp, its fork per command).
func TestBash(t *testing.T) {
	list := []attack{
		{
			// Reads the host's files: the shadow file, pid 1's root, the marker the test
			// planted on the host, and /sys.
			name: "host_files",
			code: fmt.Sprintf(`
echo "shadow $(E cat /etc/shadow)"
echo "proc1 shadow $(E cat /proc/1/root/etc/shadow)"
echo "proc1 hostname $(cat /proc/1/root/etc/hostname)"
echo "marker $(E cat %[1]s)"
echo "proc1 marker $(E cat /proc/1/root%[1]s)"
echo "dotdot marker $(E cat /work/../../../..%[1]s)"
echo "sys [$(ls -A /sys)]"
echo "cgroup $(E ls /sys/fs/cgroup)"
`, host.marker),
			checkOn: func(path string) check {
				// Pid 1 of a warm one-shot bash run is the child, which is not dumpable
				// (bash_alone): its /proc/1/root is closed to the program altogether.
				hostname, marker := "proc1 hostname sandbox", "proc1 marker No such file or directory"
				if path == "warm" {
					hostname, marker = "proc1 hostname ", "proc1 marker Permission denied"
				}
				return all(okLines("shadow Permission denied", "proc1 shadow Permission denied", hostname,
					"marker No such file or directory", marker,
					"dotdot marker No such file or directory", "sys []", "cgroup No such file or directory"),
					absent(host.secret))
			},
		},
		{
			// Writes the image, and mounts over it.
			name: "write_image_and_mount",
			code: `
echo "touch usr $(E touch /usr/x)"
echo "touch etc $(E touch /etc/x)"
echo "append bashrc $(E sh -c 'echo x >>/etc/bash.bashrc')" "$(grep -c '^x$' /etc/bash.bashrc)"
echo "mount $(E mount -t tmpfs x /mnt)"
echo "bind $(E mount --bind /work /usr)"
`,
			check: okLines("touch usr Read-only file system", "touch etc Read-only file system",
				"append bashrc Permission denied 0", "mount must be superuser to use mount.", "bind must be superuser to use mount."),
		},
		{
			// Connects with bash's /dev/tcp to loopback: sshd's port and the host's own
			// listener. Loopback is the sandbox's own (no listener): refused, and the host
			// listener's counter (checked in TestMain) stays zero.
			name: "dev_tcp",
			code: fmt.Sprintf(`
c() { (exec 3<>"/dev/tcp/$1/$2") 2>&1 | sed -n '1s/.*: //p'; }
echo "ssh $(c 127.0.0.1 22)"
echo "host $(c 127.0.0.1 %[1]d)"
echo "host 127.0.1.1 $(c 127.0.1.1 %[1]d)"
echo "host ::1 $(c ::1 %[1]d)"
`, host.tcpPort),
			check: okLines("ssh Connection refused", "host Connection refused", "host 127.0.1.1 Connection refused",
				"host ::1 Connection refused"),
		},
		{
			// Signals pid 1 from a child. Pid 1 is init of the sandbox's pid namespace (the
			// script's own bash on the cold path, the zygote's forked python on the warm
			// one): the kernel drops a SIGKILL or SIGSTOP sent to it from inside, and no
			// process outside the namespace is pid 1 here.
			name: "kill_pid1",
			code: `
echo "kill 9 $(E kill -9 1)"
echo "kill stop $(E kill -STOP 1)"
echo "alive"
echo "pid1 $(cat /proc/1/comm) $(while read -r k v; do case $k in PPid:|NSpid:) printf '%s %s ' "$k" "$v";; esac; done </proc/1/status)"
echo "pids $(ls -d /proc/[0-9]* | wc -l)"
`,
			checkOn: func(path string) check {
				init := map[string]string{"cold": "bash", "warm": "python3"}[path]
				return okLines("kill 9 ok", "kill stop ok", "alive", "pid1 "+init+" PPid: 0 NSpid: 1 ")
			},
		},
		{
			// Reads the environment, its own, pid 1's and env's, for the server's keys.
			name: "environment",
			code: `
tr '\0' '\n' </proc/self/environ
tr '\0' '\n' </proc/1/environ 2>&1
env
echo done
`,
			check: all(okLines("done"), absent(append(secretEnv, host.secret)...)),
		},
		{
			// The classic fork bomb. It must end in the pids limit (bash retries the
			// refused forks) and the timeout, and leave no process behind.
			name: "fork_bomb",
			code: ":(){ :|:& };:\nsleep 30\n",
			limits: func(l *job.Limits) {
				l.Timeout = 3 * time.Second
				l.Pids = 32
			},
			check: all(status(job.StatusTimeout), exitCode(124), func(t *testing.T, res *job.Result) {
				t.Helper()
				if !strings.Contains(res.Stderr, "fork: Resource temporarily unavailable") && !strings.Contains(res.Stderr, "fork: retry: Resource temporarily unavailable") {
					t.Errorf("stderr does not show a fork refused by the pids limit")
				}
			}),
			serial: true,
		},
		{
			// Reads 2 GiB into a shell variable under a 64 MiB memory limit.
			name: "memory_bomb",
			code: "x=$(head -c 2G /dev/zero | tr '\\0' a)\necho \"${#x}\"\n",
			limits: func(l *job.Limits) {
				l.Timeout = 20 * time.Second
				l.MemoryBytes = 64 << 20
			},
			check:  all(status(job.StatusMemoryLimit), peakMemory(64<<20)),
			serial: true,
		},
		{
			// Fills the work dir with dd: 4000 MiB into an 8 MiB work dir.
			name: "disk_bomb",
			code: `
dd if=/dev/zero of=/work/f bs=1M count=4000 2>&1 | head -1
echo "size $(( $(stat -c %s /work/f) >> 20 ))"
`,
			limits: func(l *job.Limits) {
				l.WorkBytes = 8 << 20
				l.FileBytes = 16 << 20
			},
			check: okLines("dd: error writing '/work/f': No space left on device", "size 8"),
		},
	}
	for i := range list {
		list[i].lang = job.LangBash
		list[i].code = bashPrelude + list[i].code
	}
	runAttacks(t, list)
}
