# codeexec: JavaScript programs on the warm path. A Node process cannot be forked
# from this zygote, so a warm child starts one: a one-shot run spawns
# `node -e NODE_HARNESS` with the run's stdio, report pipe (fd 3) and code (fd 4),
# as the cold path execs it; a session's context keeps one Node serving its runs
# (harness.js serve mode) and relays each run's output to the run's own pipes.
import fcntl
import selectors
import socket

NODE = "/usr/bin/node"


def node_env(extra):
    """The environment of a Node harness: this process's, the report caps the harness
    reads (harness.py took them out of the environment when the zygote started), and
    extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEEXEC_")}
    env.update({"CODEEXEC_MAX_RESULT": str(MAX_RESULT), "CODEEXEC_MAX_IMAGES": str(MAX_IMAGES),
                "CODEEXEC_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
                "CODEEXEC_MAX_ERROR_NAME": str(MAX_ERROR_NAME),
                "CODEEXEC_MAX_ERROR_MESSAGE": str(MAX_ERROR_MESSAGE),
                "CODEEXEC_MAX_TRACEBACK": str(MAX_TRACEBACK)})
    env.update(extra)
    return env


def node_argv(argv):
    name = argv[0] if argv else ""
    return ["node", "-e", NODE_HARNESS, "--", name] + list(argv[1:])


def _high(fd):
    """A close-on-exec duplicate of fd at 10 or above, so that the spawn's dup2 onto
    3 and 4 cannot overwrite it; fd is closed."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _ForwardInterrupts:
    """Passes the SIGINT of an interrupt on to Node while this process waits for it:
    the harness's own handler (_on_interrupt) raises only in a program's frames, and
    this process runs none."""

    def __init__(self, pid):
        self.pid = pid

    def _forward(self, signum, frame):
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def __enter__(self):
        self.prev = signal.signal(signal.SIGINT, self._forward)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.prev)


def _wait_forwarding_interrupts(pid):
    """Waits for pid, passing an interrupt of the run on to it, and returns its exit
    status as a shell says it (128 + the signal's number for a signal)."""
    with _ForwardInterrupts(pid):
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_js(source, run, namespace, rep_fd):
    """Runs a JavaScript program and returns its exit status. The report comes from
    the Node harness, on rep_fd."""
    if not run.get("last"):
        return run_js_session(source, run, namespace, rep_fd)
    code_fd = os.memfd_create("code", os.MFD_CLOEXEC)
    os.write(code_fd, source.encode("utf-8", "surrogatepass"))
    os.lseek(code_fd, 0, os.SEEK_SET)
    code_fd, rep_fd = _high(code_fd), _high(rep_fd)
    try:
        pid = os.posix_spawn(NODE, node_argv(run.get("argv") or []), node_env({}),
                             file_actions=[(os.POSIX_SPAWN_DUP2, rep_fd, 3), (os.POSIX_SPAWN_DUP2, code_fd, 4)],
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT))
    except OSError as e:
        os.write(2, ("codeexec: cannot start %s: %s\n" % (NODE, e)).encode())
        return 126
    finally:
        os.close(code_fd)
        os.close(rep_fd)
    return _wait_forwarding_interrupts(pid)


def _node_start():
    """Starts the Node that serves a context's runs: its stdout and stderr are pipes
    this process relays, its fd 3 a socket for the runs and their reports."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    fds = [_high(f) for f in (null, out_w, err_w, os.dup(theirs.fileno()))]
    theirs.close()
    try:
        pid = os.posix_spawn(NODE, node_argv([]), node_env({"CODEEXEC_JS_SERVE": "1"}),
                             file_actions=[(os.POSIX_SPAWN_DUP2, fds[0], 0), (os.POSIX_SPAWN_DUP2, fds[1], 1),
                                           (os.POSIX_SPAWN_DUP2, fds[2], 2), (os.POSIX_SPAWN_DUP2, fds[3], 3)],
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT))
    finally:
        for f in fds:
            os.close(f)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return {"pid": pid, "sock": mine, "out": out_r, "err": err_r}


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return  # the server stopped reading: the run is being stopped
        data = data[n:]


def _relay(src, dst):
    """Copies what src holds now to dst; returns False at src's end."""
    while True:
        try:
            data = os.read(src, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        _write_all(dst, data)


def run_js_session(source, run, namespace, rep_fd):
    """Runs a program in the context's Node, which keeps its globals between runs.
    Node writes to pipes synchronously, so once its report has come, all it wrote
    during the run is in the pipes: relayed to this run's stdout and stderr (fds 1 and
    2 now) before the report is passed on. If Node dies, so does this context: a new
    Node would have silently lost the session's variables."""
    node = namespace.get("__codeexec_node__")
    if node is None:
        try:
            node = namespace["__codeexec_node__"] = _node_start()
        except OSError as e:
            os.write(2, ("codeexec: cannot start %s: %s\n" % (NODE, e)).encode())
            os.close(rep_fd)
            return 126
    msg = json.dumps({"code": source, "argv": run.get("argv") or [], "env": run.get("env") or [],
                      "drain": bool(run.get("drain"))}) + "\n"
    sock = node["sock"]
    sock.sendall(msg.encode("utf-8", "surrogatepass"))
    sel = selectors.DefaultSelector()
    sel.register(node["out"], selectors.EVENT_READ, 1)
    sel.register(node["err"], selectors.EVENT_READ, 2)
    sel.register(sock, selectors.EVENT_READ, 0)
    with _ForwardInterrupts(node["pid"]):
        report = _relay_until_report(sel, node, rep_fd)
    sel.close()
    if run.get("drain"):
        # Node exits after its report (its run was the sandbox's only one); not
        # waited for, as its exit is no part of the program.
        namespace.pop("__codeexec_node__", None)
    for fd, dst in ((node["out"], 1), (node["err"], 2)):
        _relay(fd, dst)
    _write_all(rep_fd, report)
    os.close(rep_fd)
    try:
        return int(json.loads(report).get("exit_code") or 0) & 0xFF
    except (ValueError, AttributeError, TypeError):
        return 1


def _relay_until_report(sel, node, rep_fd):
    """Relays what Node writes until its report line has come, and returns the
    line. If Node dies first, so does this process (see run_js_session)."""
    sock = node["sock"]
    buf = b""
    while True:
        for key, _ in sel.select():
            if key.data:
                if not _relay(key.fd, key.data):
                    sel.unregister(key.fd)
                continue
            data = sock.recv(1 << 16)
            if not data:
                # Node is gone: what it wrote last, then its status, end the context.
                for fd, dst in ((node["out"], 1), (node["err"], 2)):
                    _relay(fd, dst)
                os.close(rep_fd)
                os._exit(_wait_forwarding_interrupts(node["pid"]))
            buf += data
            if b"\n" in buf:
                return buf[:buf.index(b"\n")]
