# codeexec zygote: a Python process inside the sandbox image that has imported the
# scientific stack once, and forks a child per execution or session.
#
# It runs after harness.py in the same module (see harness.go); its arguments are
# the modules to preload (sandbox.Config.Preload). fd 3 is a
# SOCK_SEQPACKET control socket to the server. The zygote stays root in the
# sandbox's user namespace (which grants nothing on the host) because each child
# needs CAP_SYS_ADMIN there to make its own namespaces and mounts; every child
# drops all of it before user code runs.
#
# Control messages (JSON), server -> zygote:
#   {"op": "spawn", "id": N, "tmp_bytes": .., "work_bytes": .., "seccomp": base64,
#    "landlock": {"abi", "fs", "scoped", "rules": [{"path", "access"}]} or absent,
#    "proc_read_only": [path, ..], "proc_masked": [path, ..]}
#                                                  + SCM_RIGHTS [channel]
# zygote -> server:
#   {"op": "ready"}                               once, after the imports
#   {"op": "exit", "id": N, "status": S}          a child ended (wait status)
#   {"op": "exit", "id": N, "error": "..."}       a child could not be made
# Channel messages, server -> child:
#   {"op": "run", "file_bytes": .., "open_files": .., "env": ["K=V", ..], "last": bool,
#    "argv": [name, args..], "stdin": bool}
#                                                  + [code memfd, stdout, stderr, report]
#                                                    + [stdin] when "stdin" is set
#   (with "last", the child exits right after sending done; without "stdin", the
#   program's stdin is /dev/null)
# child -> server: "hello" (the server reads the child's host pid from
#   SCM_CREDENTIALS, moves it into its cgroup and answers "attached"), "ready" once
#   its namespaces and mounts are made, then {"op": "done", "exit_code": N} after each
#   run.
import ctypes
import errno
import fcntl
import gc
import selectors
import signal
import socket
import resource
import struct

libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, SECCOMP_MODE_FILTER = 38, 47, 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_RULE_PATH_BENEATH = 1
PROXY_VARS = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"]
SANDBOX_UID = SANDBOX_GID = 1000

CAP_LAST_CAP = int(open("/proc/sys/kernel/cap_last_cap").read())


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _b(s):
    return s.encode() if s is not None else None


def mount(source, target, fstype, flags, data=None):
    _check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           "mount %s" % target)


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def prctl(option, arg):
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl(%d)" % option)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install_seccomp(program):
    """Installs the server's filter (struct sock_filter array); it is never lifted."""
    if not program or len(program) % 8:
        raise OSError(errno.EINVAL, "no seccomp program")
    fprog = _SockFprog(len(program) // 8, program)
    _check(libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0),
           "prctl(PR_SET_SECCOMP)")


def _syscall(nr, *args):
    # syscall(2) is variadic and reads longs: pass every integer as one.
    return libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])


def apply_landlock(plan):
    """Restricts this process to the server's Landlock plan (the same one the cold
    path applies in Go, see landlock.go). no_new_privs must be set."""
    # struct landlock_ruleset_attr grew with the ABI: scoped arrived in ABI 6.
    attr = struct.pack("=QQQ", plan["fs"], 0, plan["scoped"]) if plan["abi"] >= 6 \
        else struct.pack("=QQ", plan["fs"], 0)
    ruleset = _syscall(SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        _check(-1, "landlock_create_ruleset")
    try:
        for rule in plan["rules"]:
            try:
                fd = os.open(rule["path"], os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # nothing there to grant access to
            try:
                # struct landlock_path_beneath_attr is packed: u64 access, s32 fd.
                beneath = struct.pack("=Qi", rule["access"], fd)
                _check(_syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, beneath, 0),
                       "landlock_add_rule %s" % rule["path"])
            finally:
                os.close(fd)
        _check(_syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


# Submodules a bare import leaves out but a first use would pay for.
PRELOAD_EXTRA = {
    "scipy": ["scipy.optimize", "scipy.stats", "scipy.linalg", "scipy.integrate"],
    "matplotlib": ["matplotlib.pyplot"],
}


def preload(modules):
    """Imports the modules of the server's list that the image has (a module that is
    not installed is skipped; one that is installed and fails to import is an error,
    which the build's verification should have caught), and warms what the first use
    would otherwise pay for."""
    import importlib
    import importlib.util
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue  # a dotted name whose parent package is missing
        if name == "matplotlib":
            import matplotlib
            matplotlib.use("Agg")
        importlib.import_module(name)
        for sub in PRELOAD_EXTRA.get(name, ()):
            importlib.import_module(sub)
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.plot([1, 2, 3])
        plt.savefig(io.BytesIO(), format="png")
        plt.close("all")
    compile("x = 1\nx", FILENAME, "exec")
    # Objects that exist now are never collected: children then do not dirty the
    # pages the GC would otherwise touch, so copy-on-write sharing holds.
    gc.collect()
    gc.freeze()


def setup_child(req):
    """Gives a new child its own namespaces and writable mounts (still privileged)."""
    unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The server's lists (init_linux.go), the same the cold path masks; a request
    # without them is refused rather than served with a /proc unmasked.
    for p in req["proc_read_only"]:
        if os.path.exists(p):
            mount(p, p, None, MS_BIND | MS_REC)
            mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for p in req["proc_masked"]:
        if os.path.isdir(p):
            mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        elif os.path.exists(p):
            mount("/dev/null", p, None, MS_BIND)
    tmp = "mode=1777,size=%d" % req["tmp_bytes"]
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, tmp)
    mount("tmpfs", "/work", "tmpfs", MS_NOSUID | MS_NODEV,
          "mode=0700,uid=%d,gid=%d,size=%d" % (SANDBOX_UID, SANDBOX_GID, req["work_bytes"]))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()
    os.chdir("/work")


def drop_privileges(run, program, landlock):
    """Leaves the child unprivileged for good, just before the first program runs."""
    # The cgroup namespace is made only now that the server has moved us into the
    # execution's cgroup, so that group is our "/".
    unshare(CLONE_NEWCGROUP)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (run["file_bytes"], run["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (run["open_files"], run["open_files"]))
    for c in range(CAP_LAST_CAP + 1):
        prctl(PR_CAPBSET_DROP, c)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(hdr), ctypes.byref(data)), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    # The credential change cleared both: die with the zygote, and own /proc/self
    # like any exec'd program (the cold path) does.
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_DUMPABLE, 1)
    if landlock:
        apply_landlock(landlock)
    # Last: nothing privileged is left to do, and the program runs next.
    install_seccomp(program)


# How Python made sys.stdin at startup, as the cold path's program gets it.
STDIN_ENCODING, STDIN_ERRORS = sys.stdin.encoding, sys.stdin.errors


def fresh_stdin():
    """Gives the program a sys.stdin over the fd 0 of this run: the one before may
    hold input an earlier run of the session read ahead, or be the program's own."""
    raw = io.FileIO(0, "rb", closefd=False)
    raw.name = "<stdin>"
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(raw), encoding=STDIN_ENCODING,
                                                 errors=STDIN_ERRORS)


def reap():
    """Collects exited descendants: this child is pid 1 of its namespace."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def child_main(req, chan_fd):
    # Only the channel and stdio survive: nothing of the zygote (its control socket
    # above all) may reach user code.
    os.dup2(chan_fd, 3)
    os.closerange(4, 65536)
    chan = socket.socket(fileno=3)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Wait to be moved into the execution's cgroup before touching memory: pages a
    # process dirties are charged to the group it is in at the time.
    chan.send(b"hello")
    if chan.recv(16) != b"attached":
        os._exit(3)
    setup_child(req)
    seccomp_program = base64.b64decode(req.get("seccomp") or "")
    chan.send(b"ready")
    namespace = new_namespace()
    setup_process()
    devnull = os.open("/dev/null", os.O_WRONLY)
    privileged = True
    while True:
        msg, fds, _, _ = socket.recv_fds(chan, 1 << 17, 5)
        if not msg:
            os._exit(0)
        run = json.loads(msg)
        if run.get("op") != "run" or len(fds) != (5 if run.get("stdin") else 4):
            os._exit(2)
        if privileged:
            drop_privileges(run, seccomp_program, req.get("landlock"))
            privileged = False
        # A run with limited network gets the proxy variables; any other run none.
        for k in PROXY_VARS:
            os.environ.pop(k, None)
        for kv in run.get("env") or []:
            k, _, v = kv.partition("=")
            os.environ[k] = v
        code_fd, out_fd, err_fd, rep_fd = fds[:4]
        with os.fdopen(code_fd, "rb") as f:
            source = f.read().decode("utf-8", errors="replace")
        if run.get("stdin"):
            os.dup2(fds[4], 0)
        else:
            # Read-only, as the cold path's: opened per run rather than held, so the
            # program sees no descriptor beyond the cold path's but the channel's.
            null_in = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null_in, 0)
            os.close(null_in)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in fds[1:3] + fds[4:]:
            os.close(fd)
        fresh_stdin()
        set_argv(run.get("argv") or [])
        os.set_inheritable(rep_fd, False)
        with os.fdopen(rep_fd, "w", encoding="utf-8") as report:
            code = execute(source, namespace, report)
        if run.get("last"):
            # A one-shot run ends like a program: the server believes "done" only
            # once this process has exited, so the program cannot end its run early
            # by forging the message on fd 3 and carrying on.
            sys.stdout.flush()
            sys.stderr.flush()
            chan.send(json.dumps({"op": "done", "exit_code": code}).encode())
            os._exit(code)
        os.dup2(devnull, 0)  # write-only: nothing reads between runs
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        reap()
        chan.send(json.dumps({"op": "done", "exit_code": code}).encode())


def spawn(ctl, req, chan_fd, own_pidns, sel):
    # The child becomes pid 1 of a new pid namespace: unshare(CLONE_NEWPID) applies to
    # the next fork only, and setns back restores the zygote for the one after.
    unshare(CLONE_NEWPID)
    try:
        pid = os.fork()
    except OSError:
        _check(libc.setns(own_pidns, CLONE_NEWPID), "setns")
        raise
    if pid == 0:
        status = 0
        try:
            child_main(req, chan_fd)
        except BaseException:
            traceback.print_exc()
            status = 70
        os._exit(status)
    _check(libc.setns(own_pidns, CLONE_NEWPID), "setns")
    os.close(chan_fd)
    sel.register(os.pidfd_open(pid), selectors.EVENT_READ, (req["id"], pid))


def zygote_main():
    ctl = socket.socket(fileno=3)
    preload(sys.argv[1:])
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, None)
    ctl.send(b'{"op": "ready"}')
    while True:
        for key, _ in sel.select():
            if key.data is None:
                msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 1)
                if not msg:
                    return 0  # the server is gone
                req = json.loads(msg)
                if req.get("op") != "spawn" or len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    continue
                try:
                    spawn(ctl, req, fds[0], own_pidns, sel)
                except OSError as e:
                    os.close(fds[0])
                    ctl.send(json.dumps({"op": "exit", "id": req["id"], "error": str(e)}).encode())
            else:
                ident, pid = key.data
                sel.unregister(key.fileobj)
                os.close(key.fileobj)
                _, status = os.waitpid(pid, 0)
                ctl.send(json.dumps({"op": "exit", "id": ident, "status": status}).encode())


if CODEEXEC_ZYGOTE:
    sys.exit(zygote_main())
