package containment_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// jsPrelude names the outcome of a call the way the Python prelude's E does: "ok", or
// the error's code (EACCES, ...), which is how Node reports an errno.
const jsPrelude = `const fs = require('fs'), cp = require('child_process'), net = require('net');
const E = (f) => { try { f(); return 'ok'; } catch (e) { return (e.info && e.info.code) || e.code || e.message; } };
const connect = (host, port) => new Promise((resolve) => {
  const s = net.connect({ host, port });
  s.on('connect', () => { s.destroy(); resolve('ok'); });
  s.on('error', (e) => resolve(e.code));
});
`

// TestJavaScript is the battery's attacks written as Node programs: a JavaScript
// program is as hostile as a Python one, and reaches the kernel through libuv, V8's
// JIT and Node's own bindings.
func TestJavaScript(t *testing.T) {
	list := []attack{
		{
			// Reads the host's files: the shadow file, pid 1's root, the marker the test
			// planted on the host, and /sys.
			name: "host_files",
			code: fmt.Sprintf(`
console.log('shadow ' + E(() => fs.readFileSync('/etc/shadow')));
console.log('proc1 shadow ' + E(() => fs.readFileSync('/proc/1/root/etc/shadow')));
console.log('proc1 hostname ' + fs.readFileSync('/proc/1/root/etc/hostname', 'utf8').trim());
console.log('marker ' + E(() => fs.readFileSync(%[1]q)));
console.log('proc1 marker ' + E(() => fs.readFileSync('/proc/1/root' + %[1]q)));
console.log('dotdot marker ' + E(() => fs.readFileSync('/work/../../..' + %[1]q)));
console.log('sys [' + fs.readdirSync('/sys').join(',') + ']');
console.log('cgroup ' + E(() => fs.readdirSync('/sys/fs/cgroup')));
`, host.marker),
			check: all(okLines("shadow EACCES", "proc1 shadow EACCES", "proc1 hostname sandbox",
				"marker ENOENT", "proc1 marker ENOENT", "dotdot marker ENOENT", "sys []", "cgroup ENOENT"),
				absent(host.secret)),
		},
		{
			// Writes outside the work dir: the image, and through a symlink made in /work.
			name: "write_outside_work",
			code: `
console.log('usr ' + E(() => fs.writeFileSync('/usr/x', 'x')));
console.log('etc ' + E(() => fs.writeFileSync('/etc/x', 'x')));
console.log('append bashrc ' + E(() => fs.appendFileSync('/etc/bash.bashrc', 'x\n')));
fs.symlinkSync('/etc/passwd', '/work/link');
console.log('through symlink ' + E(() => fs.appendFileSync('/work/link', 'x\n')));
console.log('chmod ' + E(() => fs.chmodSync('/usr/bin/node', 0o777)));
console.log('nice ' + E(() => require('os').setPriority(0, -20)));
`,
			check: okLines("usr EROFS", "etc EROFS", "append bashrc EACCES", "through symlink EACCES", "chmod EROFS",
				"nice EACCES"),
		},
		{
			// Connects to loopback with network off: sshd's port and the host's own
			// listener. Loopback is the sandbox's own (no listener): refused, and the host
			// listener's counter (checked in TestMain) stays zero.
			name: "connect_loopback",
			code: fmt.Sprintf(`
console.log('ssh ' + await connect('127.0.0.1', 22));
console.log('host ' + await connect('127.0.0.1', %[1]d));
console.log('host 127.0.1.1 ' + await connect('127.0.1.1', %[1]d));
console.log('host ::1 ' + await connect('::1', %[1]d));
`, host.tcpPort),
			check: okLines("ssh ECONNREFUSED", "host ECONNREFUSED", "host 127.0.1.1 ECONNREFUSED", "host ::1 ECONNREFUSED"),
		},
		{
			// Signals pid 1 and every process it may (there is none but pid 1). Pid 1 is
			// init of the sandbox's pid namespace (Node itself on the cold path, the
			// zygote's forked python on the warm one): the kernel drops a SIGKILL or
			// SIGSTOP sent to it from inside.
			name: "kill_pid1",
			code: `
console.log('kill 9 ' + E(() => process.kill(1, 'SIGKILL')));
console.log('kill stop ' + E(() => process.kill(1, 'SIGSTOP')));
console.log('kill all ' + E(() => process.kill(-1, 'SIGKILL')));
console.log('alive');
const st = fs.readFileSync('/proc/1/status', 'utf8');
console.log('pid1 ' + fs.readFileSync('/proc/1/comm', 'utf8').trim() + ' ' + /PPid:\s*(\d+)/.exec(st)[1] + ' ' + /NSpid:\s*(\d+)/.exec(st)[1]);
`,
			checkOn: func(path string) check {
				init := map[string]string{"cold": "node", "warm": "python3"}[path]
				return okLines("kill 9 ok", "kill stop ok", "kill all ESRCH", "alive", "pid1 "+init+" 0 1")
			},
		},
		{
			// Reads the environment, its own and pid 1's, for the server's keys.
			name: "environment",
			code: `
console.log(JSON.stringify(process.env));
console.log(fs.readFileSync('/proc/self/environ', 'utf8'));
console.log(E(() => console.log(fs.readFileSync('/proc/1/environ', 'utf8'))));
console.log('done');
`,
			check: all(okLines("done"), absent(append(secretEnv, host.secret)...)),
		},
		{
			// Spawns processes until the pids limit refuses them, and keeps them alive.
			// It must end in the timeout and leave no process behind.
			name: "spawn_bomb",
			code: `
let started = 0, refused = 0;
for (let i = 0; i < 200; i++) {
  const c = cp.spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  c.on('error', () => refused++);
  if (c.pid) started++;
}
await new Promise((r) => setTimeout(r, 500));
console.log('started ' + (started > 0) + ' refused ' + (refused > 0));
await new Promise((r) => setTimeout(r, 30000));
`,
			limits: func(l *job.Limits) {
				l.Timeout = 4 * time.Second
				l.Pids = 32
			},
			check:  all(status(job.StatusTimeout), exitCode(124), lines("started true refused true")),
			serial: true,
		},
		{
			// Fills memory outside V8's heap (Buffers) under a 64 MiB limit: the cgroup
			// kills it.
			name: "buffer_bomb",
			code: "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));\n",
			limits: func(l *job.Limits) {
				l.MemoryBytes = 64 << 20
			},
			check:  all(status(job.StatusMemoryLimit), peakMemory(64<<20)),
			serial: true,
		},
		{
			// Fills V8's heap under a 128 MiB limit: V8 stops at its heap limit (3/4 of
			// the memory limit), reported as the memory limit too.
			name: "heap_bomb",
			code: "const a = []; for (;;) a.push(new Array(1e5).fill(1.5));\n",
			limits: func(l *job.Limits) {
				l.MemoryBytes = 128 << 20
			},
			check:  all(status(job.StatusMemoryLimit), peakMemory(128<<20)),
			serial: true,
		},
		{
			// Floods stdout.
			name:   "stdout_flood",
			code:   "const s = 'x'.repeat(65536); for (;;) process.stdout.write(s);\n",
			limits: func(l *job.Limits) { l.OutputBytes = 64 << 10 },
			check: all(status(job.StatusOutputLimit), func(t *testing.T, res *job.Result) {
				t.Helper()
				if !res.StdoutTruncated || len(res.Stdout) != 64<<10 {
					t.Errorf("stdout truncated=%v with %d bytes, want truncated at %d", res.StdoutTruncated, len(res.Stdout), 64<<10)
				}
			}),
		},
		{
			// Native code: loads a shared object it wrote (a copy of one of the image's
			// libraries, as a compiled addon would be) from each writable directory, and
			// uses process.binding, Node's internal bindings, to spawn a shell that
			// reads the shadow file. Native code runs, as it does from Python's ctypes or
			// any binary the program writes: what contains it is the sandbox (uid,
			// seccomp, Landlock, namespaces), which the shell then meets.
			name: "native_addon_and_binding",
			code: `
for (const dir of ['/work', '/tmp', '/dev/shm']) {
  fs.copyFileSync('/usr/lib/x86_64-linux-gnu/libz.so.1', dir + '/addon.node');
  let r = 'ok';
  try { process.dlopen({ exports: {} }, dir + '/addon.node'); } catch (e) { r = /did not self-register/.test(e.message) ? 'loaded' : e.message; }
  console.log('dlopen ' + dir + ' ' + r);
}
const out = process.binding('spawn_sync').spawn({
  file: '/bin/sh', args: ['sh', '-c', 'cat /etc/shadow 2>&1; echo status $?'], envPairs: [],
  stdio: [{ type: 'pipe', readable: true, writable: false }, { type: 'pipe', readable: true, writable: true }, { type: 'pipe', readable: true, writable: true }],
});
console.log('binding ' + String(out.output[1]).split('\n').filter((l) => l.startsWith('status')).join(''));
`,
			check: all(okLines("dlopen /work loaded", "dlopen /tmp loaded", "dlopen /dev/shm loaded", "binding status 1"), absent("root:")),
		},
	}
	for i := range list {
		list[i].lang = job.LangJavaScript
		list[i].code = jsPrelude + list[i].code
	}
	runAttacks(t, list)
}
