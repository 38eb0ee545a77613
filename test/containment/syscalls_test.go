package containment_test

import "testing"

// TestSyscallAllowlist attacks the seccomp filter's edges: socket families the
// network namespace does not confine or that carry a long record of kernel bugs,
// netlink beyond routing, system calls the profile does not name (newer than it, or
// left out of it), and the terminal ioctls.
func TestSyscallAllowlist(t *testing.T) {
	runAttacks(t, syscallAttacks())
}

// socketFamiliesAttack creates a socket of every family but unix, inet, inet6 and
// netlink. vsock above all: no network namespace confines it, so on a VM host it
// reaches the hypervisor's and the host's ports. Each family is tried with a valid
// type and with type 99, which the kernel refuses with EINVAL after it found the
// family: EAFNOSUPPORT for both shows the filter refused the family, on any kernel,
// also where the kernel lacks it. Nothing is connected anywhere.
var socketFamiliesAttack = attack{
	name: "socket_families",
	code: `
named = {"AF_VSOCK": (40, socket.SOCK_STREAM), "AF_PACKET": (17, socket.SOCK_RAW), "AF_ALG": (38, socket.SOCK_SEQPACKET),
         "AF_TIPC": (30, socket.SOCK_RDM), "AF_RDS": (21, socket.SOCK_SEQPACKET), "AF_KEY": (15, socket.SOCK_RAW),
         "AF_XDP": (44, socket.SOCK_RAW), "AF_BLUETOOTH": (31, socket.SOCK_STREAM), "AF_CAN": (29, socket.SOCK_RAW),
         "AF_KCM": (41, socket.SOCK_DGRAM), "AF_SMC": (43, socket.SOCK_STREAM), "AF_QIPCRTR": (42, socket.SOCK_DGRAM)}
for name, (fam, typ) in named.items():
    print(name, sc(41, fam, typ | socket.SOCK_CLOEXEC, 0), sc(41, fam, 99, 0))
print("python vsock", E(socket.socket, socket.AF_VSOCK, socket.SOCK_STREAM))
print("vsock in the high half", sc(41, (1 << 32) | 40, socket.SOCK_STREAM, 0))
others = [f for f in range(64) if f not in (1, 2, 10, 16) and sc(41, f, 99, 0) != "EAFNOSUPPORT"]
print("other families not refused", others)
for name, (fam, typ) in [("AF_UNIX", (1, socket.SOCK_STREAM)), ("AF_INET", (2, socket.SOCK_DGRAM)), ("AF_INET6", (10, socket.SOCK_STREAM))]:
    print(name, E(lambda: socket.socket(fam, typ).close()))
`,
	check: okLines("AF_VSOCK EAFNOSUPPORT EAFNOSUPPORT", "AF_PACKET EAFNOSUPPORT EAFNOSUPPORT", "AF_ALG EAFNOSUPPORT EAFNOSUPPORT",
		"AF_TIPC EAFNOSUPPORT EAFNOSUPPORT", "AF_RDS EAFNOSUPPORT EAFNOSUPPORT", "AF_KEY EAFNOSUPPORT EAFNOSUPPORT",
		"AF_XDP EAFNOSUPPORT EAFNOSUPPORT", "AF_BLUETOOTH EAFNOSUPPORT EAFNOSUPPORT", "AF_CAN EAFNOSUPPORT EAFNOSUPPORT",
		"AF_KCM EAFNOSUPPORT EAFNOSUPPORT", "AF_SMC EAFNOSUPPORT EAFNOSUPPORT", "AF_QIPCRTR EAFNOSUPPORT EAFNOSUPPORT",
		"python vsock EAFNOSUPPORT", "vsock in the high half EAFNOSUPPORT", "other families not refused []",
		"AF_UNIX ok", "AF_INET ok", "AF_INET6 ok"),
}

func syscallAttacks() []attack {
	return []attack{
		socketFamiliesAttack,
		{
			// socketpair of the same families; only unix has one.
			name: "socketpair_families",
			code: `
sv = (ctypes.c_int * 2)()
for name, fam in [("AF_VSOCK", 40), ("AF_TIPC", 30), ("AF_INET", 2), ("AF_NETLINK", 16), ("AF_PACKET", 17)]:
    print(name, sc(53, fam, socket.SOCK_STREAM, 0, sv), sc(53, fam, 99, 0, sv))
a, b = socket.socketpair()
a.send(b"x")
print("AF_UNIX", b.recv(1))
`,
			check: okLines("AF_VSOCK EAFNOSUPPORT EAFNOSUPPORT", "AF_TIPC EAFNOSUPPORT EAFNOSUPPORT", "AF_INET EAFNOSUPPORT EAFNOSUPPORT",
				"AF_NETLINK EAFNOSUPPORT EAFNOSUPPORT", "AF_PACKET EAFNOSUPPORT EAFNOSUPPORT", "AF_UNIX b'x'"),
		},
		{
			// Netlink beyond routing: audit, uevents (the host's device events),
			// socket diagnostics, netfilter, xfrm, generic netlink (nl80211, …),
			// the connector (process events), crypto, rdma, scsi transport.
			name: "netlink_protocols",
			code: `
for name, proto in [("AUDIT", 9), ("KOBJECT_UEVENT", 15), ("SOCK_DIAG", 4), ("NETFILTER", 12), ("XFRM", 6), ("GENERIC", 16),
                    ("CONNECTOR", 11), ("CRYPTO", 21), ("RDMA", 20), ("SCSITRANSPORT", 18), ("SELINUX", 7), ("FIB_LOOKUP", 10)]:
    print("netlink", name, sc(41, 16, socket.SOCK_RAW, proto), sc(41, 16, socket.SOCK_DGRAM, proto))
print("route", E(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()), socket.if_nameindex())
`,
			check: okLines("netlink AUDIT EAFNOSUPPORT EAFNOSUPPORT", "netlink KOBJECT_UEVENT EAFNOSUPPORT EAFNOSUPPORT",
				"netlink SOCK_DIAG EAFNOSUPPORT EAFNOSUPPORT", "netlink NETFILTER EAFNOSUPPORT EAFNOSUPPORT",
				"netlink XFRM EAFNOSUPPORT EAFNOSUPPORT", "netlink GENERIC EAFNOSUPPORT EAFNOSUPPORT",
				"netlink CONNECTOR EAFNOSUPPORT EAFNOSUPPORT", "netlink CRYPTO EAFNOSUPPORT EAFNOSUPPORT",
				"netlink RDMA EAFNOSUPPORT EAFNOSUPPORT", "netlink SCSITRANSPORT EAFNOSUPPORT EAFNOSUPPORT",
				"netlink SELINUX EAFNOSUPPORT EAFNOSUPPORT", "netlink FIB_LOOKUP EAFNOSUPPORT EAFNOSUPPORT",
				"route ok [(1, 'lo')]"),
		},
		{
			// System calls the profile does not name reach no kernel code: the mount
			// listing and the new mount API (listmount, statmount, open_tree_attr),
			// secret memory, another process's memory advice, what Docker allows but
			// nothing here needs (modify_ldt, Linux AIO), and numbers past today's
			// table. Each gets ENOSYS, as from a kernel without it. The arguments are
			// ones the kernel would act on.
			name: "unnamed_syscalls",
			code: `
req = (ctypes.c_uint64 * 3)(24, 0xffffffffffffffff, 0)  # struct mnt_id_req v0: size 24, LSMT_ROOT
ids = (ctypes.c_uint64 * 64)()
print("listmount", sc(458, ctypes.byref(req), ids, 64, 0))
sm = ctypes.create_string_buffer(4096)
print("statmount", sc(457, ctypes.byref(req), sm, 4096, 0))
print("open_tree_attr", sc(467, -100, b"/", 0, None, 0))
print("memfd_secret", sc(447, 0))
pidfd = os.pidfd_open(os.getpid())
print("process_madvise", sc(440, pidfd, None, 0, 8, 0))
ldt = ctypes.create_string_buffer(16)
print("modify_ldt", sc(154, 0, ldt, 16))
ctx = ctypes.c_ulong(0)
print("io_setup", sc(206, 1, ctypes.byref(ctx)))
print("clone3", sc(435, None, 0))
print("future", [sc(n) for n in (468, 500, 1000, 4000)])
`,
			check: okLines("listmount ENOSYS", "statmount ENOSYS", "open_tree_attr ENOSYS", "memfd_secret ENOSYS",
				"process_madvise ENOSYS", "modify_ldt ENOSYS", "io_setup ENOSYS", "clone3 ENOSYS",
				"future ['ENOSYS', 'ENOSYS', 'ENOSYS', 'ENOSYS']"),
		},
		{
			// Types into a terminal (TIOCSTI) or pastes the console's selection
			// (TIOCLINUX), also with the command's high half set, which the kernel
			// ignores. stdin is /dev/null, so the kernel alone would say ENOTTY.
			name: "terminal_ioctls",
			code: `
ch = ctypes.c_char(b"x")
print("TIOCSTI", sc(16, 0, 0x5412, ctypes.byref(ch)), sc(16, 0, (1 << 32) | 0x5412, ctypes.byref(ch)))
print("TIOCLINUX", sc(16, 0, 0x541C, ctypes.byref(ch)))
print("TCGETS", sc(16, 0, 0x5401, ctypes.create_string_buffer(64)))
`,
			check: okLines("TIOCSTI EPERM EPERM", "TIOCLINUX EPERM", "TCGETS ENOTTY"),
		},
	}
}
