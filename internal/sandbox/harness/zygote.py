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
#   {"op": "ready", "steps": [name, ..]}          once, after the imports; the names of
#                                                 a child's setup steps, in order
#   {"op": "exit", "id": N, "status": S}          a child ended (wait status)
#   {"op": "exit", "id": N, "error": "..."}       a child could not be made
# Channel messages, server -> child (its first message decides what it is):
#   {"op": "run", "rlimits": [[resource, value], ..], "env": ["K=V", ..], "last": true,
#    "argv": [name, args..], "stdin": bool}
#                                                  + [code memfd, stdout, stderr, report]
#                                                    + [stdin] when "stdin" is set
#     a one-shot execution: the child drops its privileges, runs the program itself,
#     sends done and sleeps until the server, having frozen the execution, kills it
#     (await_kill; without "stdin", the program's stdin is /dev/null); a
#     bash run ("lang": "bash") runs bash_alone, whose done has "empty": true;
#   {"op": "seal", "rlimits": [[resource, value], ..]}
#     a session: the child drops its privileges, answers {"op": "sealed"} and becomes
#     the sandbox's init, which never runs user code and serves:
#   {"op": "context", "id": N}                     + [channel]
#     forks an interpreter context that runs programs sent on channel (the "run"
#     message above, without "last"), one at a time, each answered by done;
#   {"op": "command", "id": N, "argv": [..], "env": ["K=V", ..], "dir": path}
#                                                  + [channel, stdin, stdout, stderr]
#     forks and executes argv (searched in the env's PATH) in dir;
# init -> server:
#   {"op": "exit", "id": N, "status": S}          a context or command ended (wait status)
#   {"op": "exit", "id": N, "error": "..."}       it could not be forked
# child, context or command -> server: "hello" (the server reads its host pid from
#   SCM_CREDENTIALS — for the child it then moves it into its cgroup; a context or a
#   command is born in it — and answers "attached"). The child then sends "ready" once
#   its namespaces and mounts are made, and {"op": "done", "exit_code": N} after its
#   run; a context sends the same after each run; a command's channel is closed by a
#   successful exec, or carries {"op": "error", "error": "..."} if exec failed.
import ctypes
import errno
import fcntl
import gc
import selectors
import signal
import socket
import resource
import struct
import time

libc = ctypes.CDLL(None, use_errno=True)

# The constants this file shares with Go (SANDBOX_UID, CHILD_NAMESPACES, the mount
# flags, prctl options, PROXY_VARS, ...) are generated from Go's values and come
# before the harness (zygote_source.go): none is written here.
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
    immortalize()
    gc.freeze()


def immortalize():
    """Makes every object the GC tracks now, and everything they refer to, immortal
    (PEP 683, CPython 3.12 and later): the interpreter then never writes their
    reference counts, so a child reading the zygote's modules copies no page of the
    zygote's heap for it, and the zygote's own loop stops splitting the huge pages
    its children share. Done before gc.freeze(), after which gc.get_objects() no
    longer lists the frozen objects. An immortal object is never freed: nothing the
    zygote holds at this point releases a resource on deallocation in a child, which
    ends by os._exit anyway. Returns how many objects it marked (0 where the
    interpreter has no immortal objects, or an object layout this does not know)."""
    imm = sys.getrefcount(None)
    # 3.12 and 3.13 on 64 bits: an object is immortal when the low 32 bits of its
    # Py_ssize_t ob_refcnt are all ones, the value None has. A bare object of 16
    # bytes is ob_refcnt and ob_type alone: not the free-threaded layout, nor a
    # Py_TRACE_REFS build. 3.14 keeps flags in the upper half of ob_refcnt: left out.
    if (sys.implementation.name != "cpython" or sys.version_info[:2] not in ((3, 12), (3, 13))
            or ctypes.sizeof(ctypes.c_void_p) != 8 or object().__sizeof__() != 16
            or imm != 0xFFFFFFFF):
        return 0
    # ob_refcnt is a Py_ssize_t at the object's address; one ctypes array spanning
    # the address space writes it without a ctypes object per write.
    cells = (ctypes.c_ssize_t * (1 << 60 >> 3)).from_address(0)
    getrefcount, referents = sys.getrefcount, gc.get_referents
    stack = gc.get_objects()
    marked = 0
    for o in stack:
        if getrefcount(o) != imm:
            cells[id(o) >> 3] = imm
            marked += 1
    while stack:
        for r in referents(stack.pop()):
            if getrefcount(r) != imm:
                cells[id(r) >> 3] = imm
                marked += 1
                stack.append(r)
    return marked


# A child's setup is three lists of steps, run in order, each named as the cold
# path's step of the same effect (init_linux.go's initSteps; TestSetupStepsMatch
# holds the two lists to each other). Each step takes the spawn request and the
# child's first message (None before it has come).


def step_close_descriptors(req, msg):
    # Only the channel and stdio survive: nothing of the zygote (its control socket
    # above all) may reach what the child runs.
    os.dup2(req["chan_fd"], 3)
    os.closerange(4, 65536)


def step_cgroup_namespace(req, msg):
    unshare(CLONE_NEWCGROUP)


def step_namespaces(req, msg):
    unshare(CHILD_NAMESPACES)


def step_mount_proc(req, msg):
    mount("proc", "/proc", "proc", PROC_MOUNT_FLAGS)


def step_mount_tmp(req, msg):
    tmp = "mode=1777,size=%d" % req["tmp_bytes"]
    mount("tmpfs", "/tmp", "tmpfs", TMPFS_MOUNT_FLAGS, tmp)
    mount("tmpfs", "/dev/shm", "tmpfs", TMPFS_MOUNT_FLAGS, tmp)


def step_mount_work(req, msg):
    mount("tmpfs", WORK_DIR, "tmpfs", TMPFS_MOUNT_FLAGS,
          "mode=0700,uid=%d,gid=%d,size=%d" % (SANDBOX_UID, SANDBOX_GID, req["work_bytes"]))


# What each /proc path of the server's lists is ("dir", "file" or None: absent), as
# the zygote found it once: the child's fresh /proc is of the same kernel, so it
# need not ask again for every execution. The zygote's own /proc is masked the same
# way (a masked directory is still a directory, a masked file still a file).
_PROC_KINDS = {}


def proc_kind(p):
    kind = _PROC_KINDS.get(p, False)
    if kind is False:
        kind = "dir" if os.path.isdir(p) else "file" if os.path.exists(p) else None
        _PROC_KINDS[p] = kind
    return kind


def classify_proc_paths(req):
    """Runs in the zygote before the fork: the child finds the kinds in its copy."""
    for p in (req.get("proc_read_only") or []) + (req.get("proc_masked") or []):
        proc_kind(p)


def step_proc_read_only(req, msg):
    # The server's lists (init_linux.go), the ones the cold path uses; a request
    # without them is refused rather than served with a /proc unmasked.
    for p in req["proc_read_only"]:
        if proc_kind(p):
            mount(p, p, None, MS_BIND | MS_REC)
            mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def step_proc_masked(req, msg):
    for p in req["proc_masked"]:
        kind = proc_kind(p)
        if kind == "dir":
            mount("tmpfs", p, "tmpfs", MASK_DIR_FLAGS, "size=0")
        elif kind == "file":
            mount("/dev/null", p, None, MS_BIND)


def step_loopback(req, msg):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def step_rlimits(req, msg):
    # Sent by the server with the first message (sandboxRlimits): a message without
    # them is refused rather than served without limits.
    for res, value in msg["rlimits"]:
        resource.setrlimit(res, (value, value))


# Set by zygote_main (setup_zygote); until then, every capability there is.
ZYGOTE_BOUNDING_SET = range(CAP_LAST_CAP + 1)


def step_drop_privileges(req, msg):
    # The zygote cleared the ambient set and set no_new_privs for every child
    # (setup_zygote); what is left of the bounding set is the few capabilities the
    # init kept for the children's setup (init_linux.go zygoteCaps).
    for c in ZYGOTE_BOUNDING_SET:
        prctl(PR_CAPBSET_DROP, c)
    os.setgroups([])
    os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    hdr = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(hdr), ctypes.byref(data)), "capset")
    # The credential change cleared both: die with the zygote, and own /proc/self
    # like any exec'd program (the cold path) does.
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_DUMPABLE, 1)


def step_home(req, msg):
    # A session that asks for it (SessionOptions.Home) sees its work dir at HOME_DIR
    # too: a bind of the same tmpfs, on a tmpfs of its own over the image's parent.
    if msg.get("home"):
        parent = os.path.dirname(HOME_DIR)
        mount("tmpfs", parent, "tmpfs", TMPFS_MOUNT_FLAGS, "mode=0755,size=16k")
        os.mkdir(HOME_DIR, 0o755)
        mount(WORK_DIR, HOME_DIR, None, MS_BIND)


def account_view(path, ident, line):
    """The lines of the image's passwd- or group-style file at path, with the entry of
    id ident (the third field) replaced by line, and any other entry of line's name
    dropped."""
    name = line.split(":", 1)[0]
    out = []
    with open(path) as f:
        for entry in f.read().splitlines():
            fields = entry.split(":")
            if len(fields) > 2 and (fields[2] == str(ident) or fields[0] == name):
                continue
            out.append(entry)
    out.append(line)
    return "\n".join(out) + "\n"


def step_accounts(req, msg):
    # E2B's sandboxes run as HOME_USER, home HOME_DIR: whoami, ls -l and the files
    # API's owners name that user. The same uid shows under that name through a view
    # of /etc/passwd and /etc/group bound over the image's, read-only; the image and
    # the uid (unprivileged, no sudo) stay what they are. The view's file is made on
    # the tmpfs over /home (step_home) and unlinked once bound: nothing else shows it.
    # Rejected: an image with that account, which every other sandbox would see too.
    if not msg.get("home"):
        return
    views = (("/etc/passwd", SANDBOX_UID, "%s:x:%d:%d::%s:/bin/bash" % (HOME_USER, SANDBOX_UID, SANDBOX_GID, HOME_DIR)),
             ("/etc/group", SANDBOX_GID, "%s:x:%d:" % (HOME_USER, SANDBOX_GID)))
    for path, ident, line in views:
        view = os.path.join(os.path.dirname(HOME_DIR), ".account-view")
        with os.fdopen(os.open(view, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as f:
            f.write(account_view(path, ident, line))
        mount(view, path, None, MS_BIND)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.unlink(view)


def step_work_dir(req, msg):
    os.chdir(HOME_DIR if msg.get("home") else WORK_DIR)


def step_landlock(req, msg):
    if req.get("landlock"):
        apply_landlock(req["landlock"])


# The server sends the same filter with every spawn: the zygote decodes it once.
_SECCOMP_PROGRAMS = {}


def seccomp_program(encoded):
    program = _SECCOMP_PROGRAMS.get(encoded)
    if program is None:
        program = _SECCOMP_PROGRAMS[encoded] = base64.b64decode(encoded)
    return program


def step_seccomp(req, msg):
    install_seccomp(seccomp_program(req.get("seccomp") or ""))


# Before the child says hello: it holds nothing of the zygote's when it first speaks.
BORN_STEPS = [
    ("close_descriptors", step_close_descriptors),
]

# Once the server has moved the child into its cgroup, before it says ready: its
# own sandbox, made with the zygote's capabilities.
SETUP_STEPS = [
    # First, now that the child is in its execution's cgroup: that group becomes the
    # sandbox's "/".
    ("cgroup_namespace", step_cgroup_namespace),
    ("namespaces", step_namespaces),
    ("mount_proc", step_mount_proc),
    ("mount_tmp", step_mount_tmp),
    ("mount_work", step_mount_work),
    ("proc_read_only", step_proc_read_only),
    ("proc_masked", step_proc_masked),
    ("loopback", step_loopback),
]

# At the first message (a one-shot run, or the seal of a session's init): unprivileged
# for good, as the cold init before its exec.
SEAL_STEPS = [
    # Before the drop: raising a hard limit would need CAP_SYS_RESOURCE.
    ("rlimits", step_rlimits),
    # Mounts, so before the drop.
    ("home", step_home),
    ("accounts", step_accounts),
    ("drop_privileges", step_drop_privileges),
    # As the sandbox user, who owns /work (0700).
    ("work_dir", step_work_dir),
    # After no_new_privs, which landlock_restrict_self requires.
    ("landlock", step_landlock),
    # Last: nothing privileged is left to do, and the program (or the init's loop)
    # runs next.
    ("seccomp", step_seccomp),
]

CHILD_STEPS = BORN_STEPS + SETUP_STEPS + SEAL_STEPS


def run_steps(steps, req, msg):
    for name, step in steps:
        try:
            step(req, msg)
        except OSError as e:
            raise OSError(e.errno, "%s: %s" % (name, e.strerror)) from e


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
    # The zygote's huge pages stay shared (a write copies 4 KiB of one), but the
    # child's own new memory comes in 4 KiB pages: glibc, set up for the zygote's
    # heap, would otherwise back each new stretch of the child's heap with a whole
    # 2 MiB page, charged to the execution.
    prctl(PR_SET_THP_DISABLE, 1)
    req["chan_fd"] = chan_fd
    run_steps(BORN_STEPS, req, None)
    chan = socket.socket(fileno=3)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Wait to be moved into the execution's cgroup before touching memory: pages a
    # process dirties are charged to the group it is in at the time.
    chan.send(b"hello")
    if chan.recv(16) != b"attached":
        os._exit(3)
    run_steps(SETUP_STEPS, req, None)
    chan.send(b"ready")
    devnull = os.open("/dev/null", os.O_WRONLY)
    msg, fds, _, _ = socket.recv_fds(chan, 1 << 17, 5)
    if not msg:
        os._exit(0)
    first = json.loads(msg)
    if first.get("op") == "run" and first.get("last"):
        run_steps(SEAL_STEPS, req, first)
        if first.get("lang") == "bash":
            bash_alone(first, fds, chan)  # does not return
        code = run_program(first, fds, new_namespace(), devnull)
        # The run is over: what is left of it goes, as this process's exit would
        # take it, and the output pipes are closed, so that the server reads their
        # end before "done". Then this process waits for the server's SIGKILL rather
        # than exiting: its exit (tearing down its copy of the zygote) costs
        # milliseconds the server need not wait for. None of this is trusted — the
        # program ran in this process and can forge "done" on fd 3: the server
        # freezes the execution's cgroup on "done", lists its files frozen and kills
        # every process of it before it replies (runOn), so a forger only ends its
        # own run early.
        sys.stdout.flush()
        sys.stderr.flush()
        empty_namespace()
        for fd in (0, 1, 2):
            try:
                os.close(fd)
            except OSError:
                pass
        chan.send(json.dumps({"op": "done", "exit_code": code}).encode())
        await_kill(chan, code)
    if first.get("op") == "seal" and not fds:
        run_steps(SEAL_STEPS, req, first)
        # The zygote's stderr, which the server logs, is out of reach of every
        # process this one forks.
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        chan.send(b'{"op": "sealed"}')
        serve_processes(chan, devnull)
    os._exit(2)


def await_kill(chan, code):
    """Waits for the server's SIGKILL after a one-shot run's done, and exits should the
    server close the channel instead (it has gone). The wait is a sleep, not a read of
    the channel: the kernel freezes a task asleep in clock_nanosleep (a freezable
    sleep) where it sleeps, while one asleep in recv must first be woken and get a CPU
    to stop, which on a busy machine takes milliseconds (measured: Linux 6.18, cgroup
    v1 freezer, the state read right after the write said FROZEN 30 times in 30 for
    time.sleep, 8 in 30 for recv on a socket)."""
    while True:
        try:
            if not chan.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK):
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        time.sleep(1)
    os._exit(code)


def attach_stdio(run, fds):
    """Makes a run's output pipes (fds[1], fds[2]) its stdout and stderr, and its stdin
    the pipe it sent (fds[4]) or /dev/null: read-only, as the cold path's, and opened
    for the run rather than held, so that the program sees no descriptor beyond the
    cold path's but its channel. The caller closes the originals."""
    if run.get("stdin"):
        os.dup2(fds[4], 0)
    else:
        null_in = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null_in, 0)
        os.close(null_in)
    os.dup2(fds[1], 1)
    os.dup2(fds[2], 2)


def run_program(run, fds, namespace, devnull):
    """Runs the program of a "run" message in namespace with the message's
    descriptors as its stdio and report, and returns its exit code."""
    if len(fds) != (5 if run.get("stdin") else 4):
        os._exit(2)
    # A run with limited network gets the proxy variables; any other run none.
    for k in PROXY_VARS:
        os.environ.pop(k, None)
    for kv in run.get("env") or []:
        k, _, v = kv.partition("=")
        os.environ[k] = v
    code_fd, rep_fd = fds[0], fds[3]
    with os.fdopen(code_fd, "rb") as f:
        source = f.read().decode("utf-8", errors="replace")
    attach_stdio(run, fds)
    for fd in fds[1:3] + fds[4:]:
        os.close(fd)
    fresh_stdin()
    set_argv(run.get("argv") or [])
    if run.get("lang") == "bash":
        # No report: a shell program has no result, error or figures, only its exit
        # status, which this process learns from the kernel, not from the program.
        os.close(rep_fd)
        return run_bash(source, run, namespace)
    if run.get("lang") == "javascript":
        return run_js(source, run, namespace, rep_fd)  # node.py
    os.set_inheritable(rep_fd, False)
    with os.fdopen(rep_fd, "w", encoding="utf-8") as report:
        return execute(source, namespace, report)


# A bash session's state between runs: each run is a fresh bash, which saves its
# working directory and exported variables on fd 3 as it exits, and the next starts
# from them. A run that replaces the EXIT trap or execs keeps the state of the run
# before. Rejected: one long-lived bash reading each program from a pipe, whose end
# of run the program could forge (or hide) by writing the marker itself, and whose
# shell options, traps and functions a failed program would leave half-changed.
BASH_SAVE_STATE = (
    "trap '__codeexec_status=$?; { builtin printf \"%s\\0\" \"$PWD\"; "
    "builtin compgen -e | while IFS= builtin read -r __codeexec_name; do "
    "builtin printf \"%s=%s\\0\" \"$__codeexec_name\" \"${!__codeexec_name}\"; done; } >&3 2>/dev/null; "
    "builtin exit \"$__codeexec_status\"' EXIT; "
)

# Variables a saved state does not carry over: each bash sets them afresh.
BASH_UNSAVED = ("SHLVL", "_", "OLDPWD")


def bash_env(run, saved):
    """The environment of run's bash: a session's saved one, or this process's
    without the harness's own variables, with the run's variables on top."""
    if saved is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEEXEC_")}
    else:
        env = dict(saved)
    # This run's proxy variables, not an earlier run's.
    for k in PROXY_VARS:
        env.pop(k, None)
    for kv in run.get("env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


# Signals Python ignores or handles that bash must get with their default action, as
# a shell started by a shell does: SIGPIPE ends a writer whose reader is gone.
BASH_SIGDEF = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def bash_alone(run, fds, chan):
    """Runs a one-shot run's program (a "run" message with "last") with /bin/bash -c
    and ends this process, which is pid 1 of the sandbox and sealed already. Once bash
    has exited, this process kills and reaps every process left in the namespace and
    closes its copies of the output pipes before it says "done" with "empty": the
    server may then take the run as over without waiting for this process's exit,
    which costs milliseconds (its address space is the zygote's). The claim is
    trusted only because no program can make it: bash and what it starts hold no
    descriptor but their stdio (the channel is closed on exec), and this process is
    not dumpable, so no process of the sandbox reaches its descriptors or memory
    through /proc/1 or ptrace. A Python run has no such claim: its program runs in
    this process. No Python set-up runs for a shell either."""
    prctl(PR_SET_DUMPABLE, 0)
    if len(fds) != (5 if run.get("stdin") else 4):
        os._exit(2)
    code_fd = fds[0]
    with os.fdopen(code_fd, "rb") as f:
        data = f.read()
    attach_stdio(run, fds)
    # Every descriptor but stdio and the channel goes; the channel is not bash's.
    os.closerange(4, 65536)
    os.set_inheritable(3, False)
    source = data.decode("utf-8", "surrogateescape")
    actions = []
    code = -1
    if len(data) > BASH_ARG_MAX:
        # Too long for an argument (E2BIG): bash sources it from fd 4, as on the cold path.
        code = _high(os.memfd_create("code", os.MFD_CLOEXEC))
        os.write(code, data)
        actions.append((os.POSIX_SPAWN_DUP2, code, 4))
        source = ". /proc/self/fd/4"
    argv = run.get("argv") or []
    name = argv[0] if argv and argv[0] else "bash"
    try:
        pid = os.posix_spawn("/bin/bash", ["bash", "-c", source, name] + argv[1:],
                             bash_env(run, None), file_actions=actions,
                             setsigdef=BASH_SIGDEF)
    except OSError as e:
        os.write(2, ("codeexec: cannot start /bin/bash: %s\n" % e).encode())
        pid = -1
    if code >= 0:
        os.close(code)
    status = 126
    if pid > 0:
        status = bash_status(pid)
    empty_namespace()
    for fd in (0, 1, 2):
        os.close(fd)
    chan.send(json.dumps({"op": "done", "exit_code": status, "empty": True}).encode())
    os._exit(status)


def bash_status(pid):
    """Waits for bash and returns its exit status, 128 + the signal's number when a
    signal ended it, as a shell says."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except KeyboardInterrupt:
            # An interrupt of the run is bash's to handle, as Ctrl-C in a terminal.
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    return code


def empty_namespace():
    """Kills and reaps every process of this pid namespace but this one (pid 1), as
    its exit would. kill(-1) reaches every process of the namespace; one forked while
    it ran is a child of a process it killed, so it is this process's child once its
    parent is reaped, and the next round kills it. The pids limit bounds the rounds."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_bash(source, run, namespace):
    """Runs source with /bin/bash -c in this process's stdio and returns its exit
    status (128 + the signal's number when a signal ended it, as a shell says). In a
    session (not "last"), the run starts in the directory and environment the run
    before left, kept in namespace. A one-shot run's bash does not come here
    (bash_alone)."""
    state = namespace.setdefault("__codeexec_bash__", {})
    env = bash_env(run, state.get("env"))
    argv = run.get("argv") or []
    name = argv[0] if argv and argv[0] else "bash"
    save = not run.get("last")
    actions = []
    state_fd = -1
    code_fd = -1
    data = source.encode("utf-8", "surrogateescape")
    if len(data) > BASH_ARG_MAX:
        # Too long for an argument (E2BIG): bash sources it from fd 4, as on the cold path.
        code_fd = _high(os.memfd_create("code", os.MFD_CLOEXEC))
        os.write(code_fd, data)
        actions.append((os.POSIX_SPAWN_DUP2, code_fd, 4))
        source = ". /proc/self/fd/4"
    if save:
        state_fd = os.memfd_create("bash-state")
        actions.append((os.POSIX_SPAWN_DUP2, state_fd, 3))
        source = BASH_SAVE_STATE + source  # one line: the program's line numbers stay
        try:
            os.chdir(state.get("cwd") or "/work")
        except OSError:
            os.chdir("/work")  # removed since: start where a session starts
    try:
        pid = os.posix_spawn("/bin/bash", ["bash", "-c", source, name] + argv[1:], env,
                             file_actions=actions,
                             setsigdef=BASH_SIGDEF)
    except OSError as e:
        os.write(2, ("codeexec: cannot start /bin/bash: %s\n" % e).encode())
        if state_fd >= 0:
            os.close(state_fd)
        return 126
    finally:
        if code_fd >= 0:
            os.close(code_fd)
    code = bash_status(pid)
    if save:
        saved = os.pread(state_fd, 1 << 24, 0)
        os.close(state_fd)
        parts = saved.split(b"\0")
        if len(parts) > 1 and parts[0].startswith(b"/"):
            new = {}
            for kv in parts[1:-1]:
                k, sep, v = kv.partition(b"=")
                if sep and k:
                    new[os.fsdecode(k)] = os.fsdecode(v)
            for k in BASH_UNSAVED:
                new.pop(k, None)
            state["cwd"], state["env"] = os.fsdecode(parts[0]), new
    return code


def serve_processes(chan, devnull):
    """The sandbox's init: forks the contexts and commands the server asks for,
    reports each one's end, and reaps every orphan (it is pid 1). It runs no user code,
    so that a program cannot stand in the way of the next process or forge its end."""
    # Not dumpable: no process of the sandbox, all of them the same user, may read the
    # init's memory or descriptors through /proc/1 (Landlock keeps the tree read-only,
    # so writing was never possible). Each process it forks is made dumpable again.
    prctl(PR_SET_DUMPABLE, 0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    # SIGCHLD writes to wake_w (the handler itself does nothing): select wakes up for
    # an exit as for a request.
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    sel = selectors.DefaultSelector()
    sel.register(chan, selectors.EVENT_READ, None)
    sel.register(wake_r, selectors.EVENT_READ, wake_r)
    procs = {}
    while True:
        for key, _ in sel.select():
            if key.data is None:
                msg, fds, _, _ = socket.recv_fds(chan, 1 << 17, 4)
                if not msg:
                    os._exit(0)  # the server is gone: the whole sandbox goes with pid 1
                start_process(chan, json.loads(msg), fds, procs)
            else:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                reap_processes(chan, procs)


def start_process(chan, req, fds, procs):
    """Forks the context or command req asks for."""
    op, ident = req.get("op"), req.get("id")
    if op not in ("context", "command") or len(fds) != (1 if op == "context" else 4):
        for fd in fds:
            os.close(fd)
        chan.send(json.dumps({"op": "exit", "id": ident, "error": "bad request"}).encode())
        return
    try:
        pid = os.fork()
    except OSError as e:
        for fd in fds:
            os.close(fd)
        chan.send(json.dumps({"op": "exit", "id": ident, "error": str(e)}).encode())
        return
    if pid == 0:
        status = 0
        try:
            if op == "context":
                context_main(chan, fds[0])
            else:
                command_main(chan, req, fds)
        except BaseException:
            status = 70
        os._exit(status)
    procs[pid] = ident
    for fd in fds:
        os.close(fd)


def reap_processes(chan, procs):
    """Reaps every exited child: the server hears of those it started."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ident = procs.pop(pid, None)
        if ident is not None:
            chan.send(json.dumps({"op": "exit", "id": ident, "status": status}).encode())


def leave_init(init_chan):
    """Undoes, in a process the init forked, what is the init's alone."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    prctl(PR_SET_DUMPABLE, 1)  # owns its /proc/self, as any program does
    init_chan.detach()  # fd 3 is about to be this process's own channel


def attach(chan):
    """Sends the hello whose credentials give the server this process's host pid, and
    waits until the server holds a pidfd on it."""
    chan.send(b"hello")
    if chan.recv(16) != b"attached":
        os._exit(3)


def context_main(init_chan, chan_fd):
    leave_init(init_chan)
    os.dup2(chan_fd, 3, inheritable=False)
    os.closerange(4, 65536)
    chan = socket.socket(fileno=3)
    attach(chan)
    devnull = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    namespace = new_namespace()
    while True:
        msg, fds, _, _ = socket.recv_fds(chan, 1 << 17, 5)
        if not msg:
            os._exit(0)
        run = json.loads(msg)
        if run.get("op") != "run" or run.get("last"):
            os._exit(2)
        code = run_program(run, fds, namespace, devnull)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        reap()
        chan.send(json.dumps({"op": "done", "exit_code": code}).encode())


def command_main(init_chan, req, fds):
    leave_init(init_chan)
    chan_fd, stdin_fd, stdout_fd, stderr_fd = fds
    # 0-3 are taken in the init (/dev/null and its channel), so none of fds is below 4.
    os.dup2(stdin_fd, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.dup2(chan_fd, 3, inheritable=False)  # closed by a successful exec
    os.closerange(4, 65536)
    chan = socket.socket(fileno=3)
    attach(chan)
    os.setsid()
    # Python ignores these; a program started from a shell expects the defaults.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    env = dict(kv.partition("=")[::2] for kv in req.get("env") or [])
    argv = req.get("argv") or []
    try:
        os.chdir(req.get("dir") or "/work")
        os.execvpe(argv[0], argv, env)
    except (OSError, IndexError) as e:
        chan.send(json.dumps({"op": "error", "error": "%s: %s" % (type(e).__name__, e)}).encode())
    os._exit(127)


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


# The zygote's heap on transparent huge pages. A fork copies the page tables of the
# zygote's ~190 MiB of private memory, and the child's exit frees them: with 4 KiB
# pages that is most of a warm execution's CPU; a 2 MiB page is one entry to copy and
# free instead of 512. pymalloc's 1 MiB arenas cannot be huge pages, so the zygote
# runs with PYTHONMALLOC=malloc and glibc's heap on THP (ZYGOTE_MALLOC_ENV, set by the
# server for the zygote only), and collapses its heap into huge pages once the
# imports are done and the GC frozen.
MADV_COLLAPSE = 25  # Linux 6.1
HPAGE_BYTES = 2 << 20
# Forks between re-collapses. A page the zygote writes while a child shares it is
# copied, and the write-protect fault on a shared huge page splits the zygote's
# mapping of all of it into 4 KiB entries, which every later fork copies again. The
# zygote's loop writes all over its heap: the reference counts of the objects it
# uses, and malloc's free chunks, which the frozen heap has everywhere (the objects
# gc.collect freed before the freeze). A re-collapse copies the split ranges into
# fresh huge pages: done when the zygote is idle, and at the latest after
# RECOLLAPSE_FORKS_BUSY forks.
RECOLLAPSE_FORKS = 128
RECOLLAPSE_FORKS_BUSY = 1024
# Whether this kernel collapses on request: cleared when no range could be collapsed
# (no THP on the host, or a kernel before 6.1), after which the zygote runs on 4 KiB
# pages and stops asking.
_collapse_works = True


def heap_ranges():
    """The zygote's anonymous private writable mappings (the malloc heap and
    anonymous mmaps, not its stack), cut to whole huge pages."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if parts[1] != "rw-p" or (len(parts) > 5 and parts[5] != "[heap]"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            lo, hi = (lo + HPAGE_BYTES - 1) & ~(HPAGE_BYTES - 1), hi & ~(HPAGE_BYTES - 1)
            if hi > lo:
                out.append((lo, hi))
    return out


def fill_heap_holes():
    """Takes for good every free chunk malloc has inside the heap (the objects
    gc.collect freed before the freeze left them all over it), so that what is
    allocated after, by the zygote or by a child, comes from the top of the heap: a
    child's new objects then fill fresh pages of its own instead of copying one shared
    page of the zygote's for each hole they land in, and the zygote's own allocations
    stay off the pages it shares with its children. Returns the bytes taken (already
    resident: the holes lie in touched pages)."""
    malloc, free, sbrk = libc.malloc, libc.free, libc.sbrk
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.restype, free.argtypes = None, [ctypes.c_void_p]
    sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    top = sbrk(0)
    taken = 0
    size = 1 << 20
    while size >= 16:
        while True:
            p = malloc(size)
            if not p or p >= top:
                free(p)  # from the top, or none: no hole of this size is left
                break
            taken += size
        size //= 2
    return taken


def collapse_heap():
    """Collapses the zygote's heap into huge pages where the kernel can; a host
    without THP (or with too little free memory for it) leaves it as it is."""
    global _collapse_works
    if not _collapse_works:
        return
    refused = 0
    ranges = heap_ranges()
    for lo, hi in ranges:
        if libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), MADV_COLLAPSE) != 0:
            # EINVAL for a mapping that cannot be on huge pages (or a kernel without
            # MADV_COLLAPSE); EAGAIN, ENOMEM when no huge page is free now: the range
            # stays as it is.
            if ctypes.get_errno() in (errno.EINVAL, errno.EPERM):
                refused += 1
    if ranges and refused == len(ranges):
        _collapse_works = False


def setup_zygote():
    """Does once what would be the same in every child, which inherits it across the
    fork: the harness's process-wide settings, and the parts of dropping privileges
    that need no credential change. Returns the capabilities left in the bounding
    set, which each child drops."""
    setup_process(WORK_DIR)
    # The zygote never execs, and neither may anything it forks gain privileges by
    # exec: no_new_privs cannot be unset, and Landlock requires it in every child.
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    left = []
    for c in range(CAP_LAST_CAP + 1):
        held = libc.prctl(PR_CAPBSET_READ, ctypes.c_ulong(c), 0, 0, 0)
        if held < 0:
            _check(held, "prctl(PR_CAPBSET_READ)")
        if held:
            left.append(c)
    return left


def zygote_main():
    global ZYGOTE_BOUNDING_SET
    ctl = socket.socket(fileno=3)
    modules = sys.argv[1:]  # before setup_process sets sys.argv for the programs
    ZYGOTE_BOUNDING_SET = setup_zygote()
    preload(modules)
    # Read by glibc and Python at start; what the zygote forks must not pass them on
    # to a program it execs (a session's commands).
    for k in ZYGOTE_MALLOC_ENV:
        os.environ.pop(k.partition("=")[0], None)
    fill_heap_holes()
    collapse_heap()
    forks = 0
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, None)
    ctl.send(json.dumps({"op": "ready", "steps": [name for name, _ in CHILD_STEPS]}).encode())
    while True:
        events = sel.select(0 if forks >= RECOLLAPSE_FORKS else None)
        if not events or forks >= RECOLLAPSE_FORKS_BUSY:
            collapse_heap()
            forks = 0
            if not events:
                continue
        for key, _ in events:
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
                    classify_proc_paths(req)
                    spawn(ctl, req, fds[0], own_pidns, sel)
                    forks += 1
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
