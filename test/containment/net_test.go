package containment_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// TestNetwork attacks the network boundary: the host's unix sockets (by path and
// abstract), its loopback listeners, and the outside world. No attack here sends a
// packet to an address other than loopback.
func TestNetwork(t *testing.T) {
	t.Cleanup(func() {
		if n := host.reached.Load(); n > 0 {
			t.Errorf("the host's listeners received %d connections or datagrams from sandboxes", n)
		}
	})
	runAttacks(t, []attack{
		{
			// Connects to a unix listener the test made in a host temp dir, by its path
			// and through pid 1's root.
			name: "host_unix_socket",
			code: fmt.Sprintf(`
p = %q
for label, path in [("path", p), ("proc1root", "/proc/1/root" + p)]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    print(label, E(s.connect, path))
`, host.sock),
			check: okLines("path ENOENT", "proc1root ENOENT"),
		},
		{
			// Connects to an abstract unix socket the test listens on: abstract names
			// belong to the network namespace, so it must not be there.
			name: "host_abstract_socket",
			code: fmt.Sprintf(`
name = "\0" + %q
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
print("stream", E(s.connect, name))
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("dgram", E(d.sendto, b"x", name))
print("listed", sum(1 for l in open("/proc/net/unix") if "codeexec-battery" in l))
`, host.abstract),
			check: okLines("stream ECONNREFUSED", "dgram ECONNREFUSED", "listed 0"),
		},
		{
			// Connects to TCP and UDP listeners the test holds on the host's loopback,
			// over IPv4, IPv6 and the 127/8 aliases: the sandbox's loopback is its own.
			name: "host_loopback",
			code: fmt.Sprintf(`
tcp, udp = %d, %d
for host in ["127.0.0.1", "127.0.1.1", "::1", "localhost"]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.settimeout(3)
    print("tcp", host, E(c.connect, (host, tcp)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", udp))
u.send(b"battery")
u.settimeout(1)
print("udp", E(u.recv, 16))
`, host.tcpPort, host.udpPort),
			check: okLines("tcp 127.0.0.1 ECONNREFUSED", "tcp 127.0.1.1 ECONNREFUSED", "tcp ::1 ECONNREFUSED",
				"tcp localhost ECONNREFUSED", "udp ECONNREFUSED"),
		},
		{
			// Looks for a way out: interfaces, routes and DNS. The resolver the image
			// names is loopback, so a lookup fails for want of a server ("temporary
			// failure", EAI_AGAIN), not because the name does not exist.
			name: "external_network",
			code: `
print("dev", [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]])
print("route", open("/proc/net/route").readlines()[1:])
print("route6", sorted(set(l.split()[-1] for l in open("/proc/net/ipv6_route"))))
print("ifaces", socket.if_nameindex())
try:
    socket.getaddrinfo("codeexec-battery.invalid", 443)
    print("dns resolved")
except socket.gaierror as e:
    print("dns", "EAI_AGAIN" if e.errno == socket.EAI_AGAIN else e)
print("localhost", sorted(set(a[4][0] for a in socket.getaddrinfo("localhost", 80))))
`,
			check: okLines("dev ['lo']", "route []", "route6 ['lo']", "ifaces [(1, 'lo')]", "dns EAI_AGAIN", "localhost ['127.0.0.1', '::1']"),
		},
		{
			// Builds packets of its own or reconfigures the network: raw and packet
			// sockets, ICMP, taking lo down, adding an address, a tun device.
			name: "raw_network",
			code: `
import fcntl, struct
print("packet", E(socket.socket, socket.AF_PACKET, socket.SOCK_RAW))
print("raw", E(socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
print("rawip", E(socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
print("ping", E(socket.socket, socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("lo down", E(fcntl.ioctl, s, 0x8914, struct.pack("16sH14x", b"lo", 0)))
addr = struct.pack("16sH2s4s8x", b"lo", socket.AF_INET, b"\0\0", socket.inet_aton("10.1.2.3"))
print("set addr", E(fcntl.ioctl, s, 0x8916, addr))
print("tun", E(rd, "/dev/net/tun"))
`,
			check: okLines("packet EAFNOSUPPORT", "raw EPERM", "rawip EPERM", "ping EACCES", "lo down EPERM", "set addr EPERM", "tun ENOENT"),
		},
	})
}

// TestSandboxesIsolatedFromEachOther runs two sandboxes at once on one runner.
// Sandbox A listens on an abstract unix socket and on TCP 127.0.0.1, makes a SysV
// shared memory segment and a /dev/shm file, and waits; sandbox B, started while A
// waits, tries to connect to both, to find A's segment and file, and to signal every
// pid it can name but its own (1). B must reach nothing, and A must see nothing of B.
func TestSandboxesIsolatedFromEachOther(t *testing.T) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "codeexec-battery-a-" + hex.EncodeToString(b[:])
	const port, key, window = 45731, 0xBA77, 8.0
	a := prelude + fmt.Sprintf(`
import signal, time
name, port, key, window = %q, %d, %d, %v
got = []
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
    signal.signal(s, lambda n, f: got.append(n))
ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ab.bind("\0" + name)
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.bind(("127.0.0.1", port))
for s in (ab, tcp):
    s.listen(16)
    s.setblocking(False)
print("A pid", os.getpid(), "shm", libc.shmget(key, 4096, 0o1666) >= 0)
wr("/dev/shm/" + name, "A")
start = time.time()
accepted = 0
while time.time() - start < window:
    for s in (ab, tcp):
        try:
            s.accept()[0].close()
            accepted += 1
        except BlockingIOError:
            pass
    time.sleep(0.01)
print("A window", repr(start), repr(time.time()))
print("A accepted", accepted, "signals", got)
`, name, port, key, window)
	bCode := prelude + fmt.Sprintf(`
import signal, time
name, port, key = %q, %d, %d
first, outcomes, signalled = time.time(), set(), set()
while time.time() - first < 4:
    for fam, addr in ((socket.AF_UNIX, "\0" + name), (socket.AF_INET, ("127.0.0.1", port))):
        s = socket.socket(fam, socket.SOCK_STREAM)
        outcomes.add(E(s.connect, addr))
        s.close()
    for pid in range(2, 512):
        if E(os.kill, pid, signal.SIGUSR1) != "ESRCH":
            signalled.add(pid)
    time.sleep(0.05)
print("B window", repr(first), repr(time.time()))
print("B connect", sorted(outcomes))
print("B signalled", sorted(signalled))
print("B pids", [p for p in os.listdir("/proc") if p.isdigit()])
r = libc.shmget(key, 0, 0)
print("B shm", "found" if r >= 0 else errno.errorcode[ctypes.get_errno()])
print("B shmfile", os.path.exists("/dev/shm/" + name))
`, name, port, key)
	countAttacks(t.Name(), []attack{{name: "neighbour_sockets_signals_ipc"}})
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			r := runnerFor(t, p)
			attackCount.Add(1)
			var wg sync.WaitGroup
			var resA, resB *job.Result
			var errA, errB error
			wg.Add(2)
			go func() {
				defer wg.Done()
				resA, errA = tryRun(r, a, nil)
			}()
			go func() {
				defer wg.Done()
				time.Sleep(time.Second) // A has started by then (or B's window still overlaps A's)
				resB, errB = tryRun(r, bCode, nil)
			}()
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("Run: A %v, B %v", errA, errB)
			}
			okLines("A pid 1 shm True", "A accepted 0 signals []")(t, resA)
			okLines("B connect ['ECONNREFUSED']", "B signalled []", "B pids ['1']", "B shm ENOENT", "B shmfile False")(t, resB)
			// B's attempts must have overlapped A's listening, or they prove nothing.
			aStart, aEnd := window2(t, resA.Stdout, "A window")
			bStart, bEnd := window2(t, resB.Stdout, "B window")
			t.Logf("A listened from %.2f to %.2f, B tried from %.2f to %.2f", aStart, aEnd, bStart, bEnd)
			if bEnd < aStart || bStart > aEnd {
				t.Errorf("B tried from %.2f to %.2f, outside A's window %.2f to %.2f", bStart, bEnd, aStart, aEnd)
			}
			if t.Failed() {
				t.Logf("A: %s %s %s\nB: %s %s %s", resA.Status, resA.Stdout, resA.Stderr, resB.Status, resB.Stdout, resB.Stderr)
			}
			checkHealthy(t, r)
		})
	}
}

// window2 parses the line "<label> <start> <end>" of out.
func window2(t *testing.T, out, label string) (start, end float64) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, label+" "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				start, _ = strconv.ParseFloat(f[0], 64)
				end, _ = strconv.ParseFloat(f[1], 64)
				return start, end
			}
		}
	}
	t.Errorf("no %q line in %q", label, out)
	return 0, 0
}
