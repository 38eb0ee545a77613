# codeexec harness: runs one program inside the sandbox and reports its outcome.
#
# Protocol (see harness.go): the program's source is read from fd 4, the report is
# written as one JSON object to fd 3; the program's name and arguments follow
# `-c SOURCE` on the command line. stdout and stderr belong to the program; the
# server never reads control data from them. The server treats the report as
# untrusted data of this execution only: status limits (timeout, memory, output)
# come from the kernel, not from here.
import ast
import base64
import io
import json
import linecache
import os
import signal
import sys
import traceback
import types
import warnings

FILENAME = "<code>"
# The report's caps. The server is their authority (harness.go Env): it refuses a
# report beyond any of them, so the harness cuts and flags rather than exceed one.
# Sizes are bytes of UTF-8.
MAX_RESULT = int(os.environ.pop("CODEEXEC_MAX_RESULT"))
MAX_IMAGES = int(os.environ.pop("CODEEXEC_MAX_IMAGES"))
MAX_IMAGE_BYTES = int(os.environ.pop("CODEEXEC_MAX_IMAGE_BYTES"))
MAX_ERROR_NAME = int(os.environ.pop("CODEEXEC_MAX_ERROR_NAME"))
MAX_ERROR_MESSAGE = int(os.environ.pop("CODEEXEC_MAX_ERROR_MESSAGE"))
MAX_TRACEBACK = int(os.environ.pop("CODEEXEC_MAX_TRACEBACK"))
# A kernel run's display data (kernel.py): how many bundles, and their JSON's bytes.
MAX_OUTPUTS = int(os.environ.pop("CODEEXEC_MAX_OUTPUTS"))
MAX_OUTPUT_BYTES = int(os.environ.pop("CODEEXEC_MAX_OUTPUT_BYTES"))


def _read_code():
    with os.fdopen(4, "rb", closefd=True) as f:
        return f.read().decode("utf-8", errors="replace")


def _report_file():
    # The report pipe must not leak into processes the program starts.
    os.set_inheritable(3, False)
    return os.fdopen(3, "w", encoding="utf-8", closefd=True)


def _user_traceback(exc):
    """Formats exc with the harness's own frames removed."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    # An interrupt is raised by _on_interrupt, called from the program's frame: the
    # handler's own frame is the harness's, not the program's.
    t = tb
    while t is not None and t.tb_next is not None:
        if t.tb_next.tb_frame.f_code is _on_interrupt.__code__:
            t.tb_next = None
        t = t.tb_next
    if isinstance(exc, SyntaxError) or tb is None:
        lines = traceback.format_exception_only(type(exc), exc)
        if not isinstance(exc, SyntaxError):
            lines = ["Traceback (most recent call last):\n"] + lines
        return "".join(lines)
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _cut(text, limit, tail=False):
    """Returns text cut to at most limit bytes of UTF-8 on a character boundary (its
    end with tail), and whether it was cut. Bytes are counted as the server will
    count them after JSON: a lone surrogate takes three."""
    if len(text) <= limit // 4:
        return text, False
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, False
    if tail:
        start = len(data) - limit
        while start < len(data) and data[start] & 0xC0 == 0x80:
            start += 1
        return data[start:].decode("utf-8", "surrogatepass"), True
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass"), True


def _text(value):
    """str(value) as a plain str; a broken __str__ must not lose the report."""
    try:
        return str.__str__(str(value))
    except BaseException as e:
        return "<str() failed: %s>" % type(e).__name__


def _error(exc):
    """The report's error for exc, each part within its cap; the whole traceback is
    returned as well, for stderr."""
    message = _text(exc)
    if isinstance(exc, SyntaxError) and exc.msg:
        message = _text(exc.msg)
    full = _user_traceback(exc)
    name, cut_name = _cut(_text(type(exc).__name__), MAX_ERROR_NAME)
    message, cut_message = _cut(message, MAX_ERROR_MESSAGE)
    traceback_, cut_traceback = _cut(full, MAX_TRACEBACK, tail=True)
    return {"name": name, "message": message, "traceback": traceback_,
            "truncated": cut_name or cut_message or cut_traceback}, full


def _repr(value):
    try:
        text = str.__str__(repr(value))
    except BaseException as e:  # a broken __repr__ must not lose the run's other output
        text = "<repr failed: %s: %s>" % (type(e).__name__, _text(e))
    return _cut(text, MAX_RESULT)


def _figures():
    """Renders every open matplotlib figure as PNG, then closes them."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return [], False
    images, dropped, total = [], False, 0
    try:
        nums = plt.get_fignums()
        for n in nums:
            if len(images) >= MAX_IMAGES:
                dropped = True
                break
            buf = io.BytesIO()
            plt.figure(n).savefig(buf, format="png")
            data = buf.getvalue()
            if total + len(data) > MAX_IMAGE_BYTES:
                dropped = True
                continue
            total += len(data)
            images.append({"name": "figure-%d.png" % (len(images) + 1), "mime_type": "image/png",
                           "data": base64.b64encode(data).decode("ascii")})
        plt.close("all")
    except BaseException as e:
        sys.stderr.write("codeexec: could not render figures: %s: %s\n" % (type(e).__name__, e))
    return images, dropped


def _run(source, namespace):
    """Runs source in namespace; returns the value of a trailing expression."""
    tree = compile(source, FILENAME, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, FILENAME, "exec", dont_inherit=True), namespace)
    if last is not None:
        return eval(compile(last, FILENAME, "eval", dont_inherit=True), namespace)
    return None


def new_namespace():
    """Makes a fresh __main__ module for a program (or a session) to run in."""
    main_mod = types.ModuleType("__main__")
    main_mod.__builtins__ = __builtins__
    sys.modules["__main__"] = main_mod
    return main_mod.__dict__


def _on_interrupt(signum, frame):
    """Raises KeyboardInterrupt in the program's own code, as Ctrl-C would, and
    ignores SIGINT anywhere else: an interrupt that arrives while the harness reports
    a run or waits for the next must not break the interpreter a session keeps.
    (Rejected: switching the handler on and off around each run, which leaves a
    window where a pending signal raises in the harness.)"""
    while frame is not None:
        if frame.f_code.co_filename == FILENAME:
            raise KeyboardInterrupt
        frame = frame.f_back


def setup_process(work_dir=None):
    """Process-wide settings, made once before any program runs: by the cold path's
    interpreter in its work dir, or by the zygote for every child it forks, which
    inherits them (work_dir is then the directory the children will run in)."""
    warnings.filterwarnings("ignore", message=".*non-GUI backend.*")
    warnings.filterwarnings("ignore", message=".*FigureCanvasAgg is non-interactive.*")
    sys.argv = [FILENAME]
    work_dir = work_dir or os.getcwd()
    if work_dir not in sys.path:
        sys.path.insert(0, work_dir)
    signal.signal(signal.SIGINT, _on_interrupt)


def set_argv(argv):
    """Gives the program its sys.argv: argv is [name, arguments...] as the server
    sent it; an empty name is shown as FILENAME."""
    sys.argv = [(argv[0] if argv else "") or FILENAME] + list(argv[1:])


def execute(source, namespace, report):
    """Runs source in namespace, writes the JSON report to the file report, and
    returns the exit code. `result` is reset first, so each run reports its own.
    A run the server marked as a kernel run (kernel.py) runs as a notebook cell:
    its result and figures are display data in "outputs", not "result" alone."""
    kernel = None
    options = kernel_options()
    if options is not None:
        kernel = Kernel(options, namespace, report)
    # Tracebacks show the program's own lines (a kernel run's rewriting keeps them).
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    if kernel is None:
        namespace.pop("result", None)
    out = {"ok": True, "result": None, "result_truncated": False, "error": None,
           "images": [], "images_truncated": False, "exit_code": 0}
    last = None
    try:
        if kernel is not None:
            kernel.enter()
            source = kernel.transform(source)
        last = _run(source, namespace)
    except SystemExit as e:
        code = e.code
        if code is None or code == 0:
            out["exit_code"] = 0
        else:
            message = _text(code)
            if isinstance(code, int):
                out["ok"], out["exit_code"] = False, code & 0xFF or 1
            else:
                sys.stderr.write("%s\n" % message)
                out["ok"], out["exit_code"] = False, 1
            message, cut = _cut(message, MAX_ERROR_MESSAGE)
            out["error"] = {"name": "SystemExit", "message": message, "traceback": "", "truncated": cut}
    except UsageError as e:
        # As IPython's: the message alone, without the kernel's own frames.
        out["ok"], out["exit_code"] = False, 1
        message, cut = _cut(_text(e), MAX_ERROR_MESSAGE)
        out["error"] = {"name": "UsageError", "message": message, "traceback": "UsageError: %s\n" % message,
                        "truncated": cut}
        sys.stderr.write("UsageError: %s\n" % message)
    except BaseException as e:
        out["ok"], out["exit_code"] = False, 1
        out["error"], full = _error(e)
        sys.stderr.write(full)

    if kernel is not None:
        _flush()
        if out["ok"] and last is not None and not suppressed(source):
            out["result"], out["result_truncated"] = _repr(last)
            kernel.result(last, False)
        kernel.flush_figures()
        kernel.leave()
        out["outputs"], out["outputs_truncated"] = kernel.outputs, kernel.truncated
    else:
        if out["ok"]:
            value = namespace["result"] if "result" in namespace else last
            if value is not None or "result" in namespace:
                out["result"], out["result_truncated"] = _repr(value)
        out["images"], out["images_truncated"] = _figures()

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    report.write(json.dumps(out))
    report.flush()
    return out["exit_code"]


def main():
    argv = sys.argv[1:]  # what followed -c SOURCE: the program's name and arguments
    report = _report_file()
    source = _read_code()
    setup_process()
    set_argv(argv)
    code = execute(source, new_namespace(), report)
    report.close()
    return code


if __name__ == "__main__" and not globals().get("CODEEXEC_ZYGOTE"):
    sys.exit(main())
