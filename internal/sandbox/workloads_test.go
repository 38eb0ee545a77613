package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestWorkloads runs what sandboxes are for under the seccomp allowlist, on both
// paths: a system call the filter refuses shows up here as an exception, a failed
// child or a wrong answer. Limited network (requests through the egress proxy) is
// TestLimitedNetwork's.
func TestWorkloads(t *testing.T) {
	tests := []struct {
		name, code string
		want       []string // lines of stdout
	}{
		{"numpy", `
import numpy as np
a = np.random.default_rng(1).random((300, 300))
print("solve", np.allclose(a @ np.linalg.solve(a, np.ones(300)), 1))
print("fft", round(float(np.abs(np.fft.fft(np.ones(8)))[0]), 3))
print("eig", np.linalg.eigvalsh(np.eye(3)).tolist())
`, []string{"solve True", "fft 8.0", "eig [1.0, 1.0, 1.0]"}},
		{"pandas", `
import pandas as pd
df = pd.DataFrame({"k": list("abab"), "v": [1, 2, 3, 4], "d": pd.date_range("2024-01-01", periods=4)})
df.to_csv("/tmp/df.csv", index=False)
back = pd.read_csv("/tmp/df.csv", parse_dates=["d"])
print("groupby", back.groupby("k")["v"].sum().to_dict())
print("dates", str(back["d"].max().date()))
print("rolling", df["v"].rolling(2).mean().tolist()[1:])
`, []string{"groupby {'a': 4, 'b': 6}", "dates 2024-01-04", "rolling [1.5, 2.5, 3.5]"}},
		{"scipy", `
from scipy import optimize, integrate, sparse, stats
from scipy.sparse.linalg import spsolve
import numpy as np
print("min", round(optimize.minimize(lambda x: (x[0] - 3) ** 2 + (x[1] + 1) ** 2, [0, 0]).x.round(3).tolist()[0], 2))
print("quad", round(integrate.quad(lambda x: x ** 2, 0, 3)[0], 6))
print("sparse", spsolve(sparse.csr_matrix(np.diag([2.0, 4.0])), np.array([2.0, 4.0])).tolist())
print("norm", round(stats.norm.cdf(0), 2))
`, []string{"min 3.0", "quad 9.0", "sparse [1.0, 1.0]", "norm 0.5"}},
		{"sympy", `
import sympy as sp
x = sp.Symbol("x")
print("solve", sp.solve(x ** 2 - 4, x))
print("integrate", sp.integrate(sp.sin(x) ** 2, (x, 0, sp.pi)))
`, []string{"solve [-2, 2]", "integrate pi/2"}},
		{"matplotlib", `
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 4, 9])
ax.set_title("squares")
fig.savefig("/work/squares.png")
print("png", open("/work/squares.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n")
`, []string{"png True"}},
		{"subprocess", `
import subprocess
print("bash", subprocess.run(["bash", "-c", "echo $((6 * 7))"], capture_output=True, text=True, check=True).stdout.strip())
print("ls", subprocess.run(["ls", "-la", "/"], capture_output=True, text=True, check=True).stdout.count("\n") > 5)
p = subprocess.run("seq 1 100 | sort -rn | head -1", shell=True, capture_output=True, text=True, check=True)
print("pipeline", p.stdout.strip())
print("python", subprocess.run([__import__("sys").executable, "-c", "print(2 + 2)"], capture_output=True, text=True, check=True).stdout.strip())
`, []string{"bash 42", "ls True", "pipeline 100", "python 4"}},
		{"threads", `
import threading, concurrent.futures
total = []
lock = threading.Lock()
def work(i):
    with lock:
        total.append(i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    squares = list(ex.map(lambda i: i * i, range(10)))
print("threads", sorted(total) == list(range(8)), "pool", sum(squares))
`, []string{"threads True pool 285"}},
		{"multiprocessing", `
import multiprocessing as mp
def square(x):
    return x * x
def child(q, v, lock):
    with lock:
        v.value += 1
    q.put("from child")
ctx = mp.get_context("fork")
with ctx.Pool(2) as pool:
    print("pool", pool.map(square, range(5)))
q, v, lock = ctx.Queue(), ctx.Value("i", 0), ctx.Lock()
p = ctx.Process(target=child, args=(q, v, lock))
p.start()
print("queue", q.get(timeout=10))
p.join()
print("value", v.value, "exit", p.exitcode)
a, b = ctx.Pipe()
a.send([1, 2])
print("pipe", b.recv())
`, []string{"pool [0, 1, 4, 9, 16]", "queue from child", "value 1 exit 0", "pipe [1, 2]"}},
		{"fork", `
import os
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, b"hi")
    os._exit(7)
os.close(w)
print("fork", os.read(r, 2), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
fd = os.pidfd_open(os.posix_spawn("/bin/true", ["true"], os.environ))
print("pidfd", fd > 0)
`, []string{"fork b'hi' 7", "pidfd True"}},
		{"asyncio", `
import asyncio
async def handle(reader, writer):
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"echo\n")
    print("tcp", (await reader.readline()).decode().strip())
    server.close()
    proc = await asyncio.create_subprocess_exec("echo", "sub", stdout=asyncio.subprocess.PIPE)
    print("subprocess", (await proc.communicate())[0].decode().strip())
    await asyncio.sleep(0.01)
    print("gather", await asyncio.gather(*(asyncio.sleep(0, i) for i in range(3))))
asyncio.run(main())
`, []string{"tcp ECHO", "subprocess sub", "gather [0, 1, 2]"}},
		{"sockets", `
import socket, threading
def echo(srv):
    c, _ = srv.accept()
    c.sendall(c.recv(16))
    c.close()
for fam, host in [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]:
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen()
    threading.Thread(target=echo, args=(srv,)).start()
    c = socket.create_connection(srv.getsockname()[:2])
    c.sendall(b"ping")
    print("tcp", fam.name, c.recv(16))
u1, u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u1.bind(("127.0.0.1", 0))
u2.sendto(b"dgram", u1.getsockname())
print("udp", u1.recv(16))
a, b = socket.socketpair()
a.sendall(b"pair")
print("socketpair", b.recv(16))
us = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
us.bind("/tmp/s.sock")
us.listen()
uc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
uc.connect("/tmp/s.sock")
print("unix", us.accept()[0].fileno() > 0)
`, []string{"tcp AF_INET b'ping'", "tcp AF_INET6 b'ping'", "udp b'dgram'", "socketpair b'pair'", "unix True"}},
		{"getaddrinfo", `
import socket
print("localhost", sorted(set(a[4][0] for a in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))))
print("addrconfig", len(socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_ADDRCONFIG)) > 0)
print("numeric", socket.getaddrinfo("::1", 443, type=socket.SOCK_STREAM)[0][4][:2])
print("ifaces", socket.if_nameindex(), socket.if_nametoindex("lo"))
print("hostname", socket.gethostname())
`, []string{"localhost ['127.0.0.1', '::1']", "addrconfig True", "numeric ('::1', 443)", "ifaces [(1, 'lo')] 1", "hostname sandbox"}},
		{"time_and_signals", `
import os, signal, time
got = []
signal.signal(signal.SIGALRM, lambda n, f: got.append("alarm"))
signal.setitimer(signal.ITIMER_REAL, 0.01)
time.sleep(0.2)
signal.signal(signal.SIGUSR1, lambda n, f: got.append("usr1"))
os.kill(os.getpid(), signal.SIGUSR1)
signal.pthread_kill(__import__("threading").get_ident(), signal.SIGUSR1)
t0, c0 = time.monotonic(), time.process_time()
time.sleep(0.01)
print("signals", got)
print("clocks", time.monotonic() > t0, time.time() > 1.7e9, time.perf_counter_ns() > 0, time.thread_time() >= 0)
print("sigwait", signal.sigtimedwait([signal.SIGUSR2], 0.01))
`, []string{"signals ['alarm', 'usr1', 'usr1']", "clocks True True True True", "sigwait None"}},
		{"proc_and_resources", `
import os, resource, sys
print("status", any(l.startswith("Seccomp:") for l in open("/proc/self/status")))
print("cpuinfo", "processor" in open("/proc/cpuinfo").read(), "meminfo", open("/proc/meminfo").readline().startswith("MemTotal"))
print("cpus", os.cpu_count() >= 1, len(os.sched_getaffinity(0)) >= 1, os.getloadavg() is not None)
print("rusage", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0, resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 0)
print("fds", len(os.listdir("/proc/self/fd")) > 2, os.readlink("/proc/self/exe") == os.path.realpath(sys.executable))
`, []string{"status True", "cpuinfo True meminfo True", "cpus True True True", "rusage True True", "fds True True"}},
		{"files", `
import fcntl, mmap, os, shutil, sqlite3, tempfile
with tempfile.NamedTemporaryFile("wb", dir="/work", delete=False) as f:
    f.write(b"x" * 100000)
shutil.copyfile(f.name, "/tmp/copy")
os.posix_fallocate(os.open("/tmp/alloc", os.O_CREAT | os.O_WRONLY), 0, 4096)
with open("/tmp/copy", "r+b") as g:
    fcntl.flock(g, fcntl.LOCK_EX)
    m = mmap.mmap(g.fileno(), 0)
    print("copy", len(m), m[:1])
print("statvfs", os.statvfs("/work").f_bsize > 0, "scandir", sorted(e.name for e in os.scandir("/tmp") if e.name in ("alloc", "copy")))
db = sqlite3.connect("/work/db.sqlite")
db.execute("create table t (v)")
db.executemany("insert into t values (?)", [(i,) for i in range(10)])
db.commit()
print("sqlite", db.execute("select sum(v) from t").fetchone()[0])
os.symlink("/tmp/copy", "/tmp/link")
os.rename("/tmp/link", "/tmp/link2")
os.utime("/tmp/copy")
os.chmod("/tmp/copy", 0o600)
print("meta", os.readlink("/tmp/link2"), oct(os.stat("/tmp/copy").st_mode & 0o777))
`, []string{"copy 100000 b'x'", "statvfs True scandir ['alloc', 'copy']", "sqlite 45", "meta /tmp/copy 0o600"}},
		{"stdlib", `
import hashlib, json, secrets, ssl, uuid, zlib, ctypes, platform, locale, shutil
print("ssl", ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED)
print("random", len(secrets.token_bytes(16)), uuid.uuid4().version, uuid.uuid1().version)
print("zlib", zlib.decompress(zlib.compress(b"a" * 100)) == b"a" * 100, hashlib.sha256(b"").hexdigest()[:8])
print("libc", ctypes.CDLL(None).getpid() == __import__("os").getpid(), platform.machine())
print("disk", shutil.disk_usage("/work").total > 0)
`, []string{"ssl True", "random 16 4 1", "zlib True e3b0c442", "libc True x86_64", "disk True"}},
	}
	bothPaths(t, func(t *testing.T, r *Runner) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, nil)
				got := strings.Split(res.Stdout, "\n")
				for _, w := range tt.want {
					if !slices.Contains(got, w) {
						t.Errorf("stdout lacks %q", w)
					}
				}
				if res.Status != job.StatusOK || t.Failed() {
					t.Fatalf("status %s error %+v\nstdout:\n%s\nstderr:\n%s", res.Status, res.Error, res.Stdout, res.Stderr)
				}
			})
		}
	})
}
