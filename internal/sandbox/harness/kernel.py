# codeexec kernel mode: a run that asks for it (CODEEXEC_KERNEL in its environment,
# set by the server for E2B's code interpreter, never by /v1/execute) runs as a cell
# of a Jupyter kernel would: IPython's syntax (!cmd, %magic, %%cell magic, obj?),
# display() and rich display data (MIME bundles), IPython.display for programs that
# import it, inline matplotlib figures, `_` for the last result, and environment
# variables for this run only. The image has no IPython, so this is codeexec's own
# small implementation of the part of IPython that programs written for a notebook
# rely on; a magic it lacks is a UsageError naming it, as IPython's is.
#
# Display data goes into the report's "outputs" (harness.go Output), in the order the
# program displayed it, within MAX_OUTPUTS and MAX_OUTPUT_BYTES (bytes of the
# bundle's JSON, as the report carries it): what does not fit is dropped, its
# largest representations first, and flagged. A run that asks (KernelOptions.Stream)
# also gets each bundle on the report pipe as it is shown, ahead of the report.
import re
import shlex
import subprocess
import time
import timeit
import tokenize

KERNEL_VAR = "CODEEXEC_KERNEL"

# The representations a bundle may hold, by the method that gives each, in
# IPython's order. Binary ones are base64 text in the bundle.
_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BINARY = ("image/png", "image/jpeg", "application/pdf")
_JSON_MIMES = ("application/json", "e2b/data", "e2b/chart")

# A DataFrame's data (E2B's "e2b/data") is built only below this many cells: its
# HTML stays, and a bigger frame's data would not fit the outputs' cap anyway.
_MAX_DATA_CELLS = 200_000

# IPython's default shell aliases (the POSIX ones), run as !commands.
_ALIASES = {"ls": "ls -F", "ll": "ls -F -l", "cat": "cat", "cp": "cp", "mv": "mv",
            "rm": "rm", "mkdir": "mkdir", "rmdir": "rmdir"}


class UsageError(Exception):
    """A magic misused or unknown: IPython's name, so programs and people read it
    as they would IPython's."""


class SList(list):
    """The lines a `x = !cmd` captured, with IPython's SList views."""

    @property
    def s(self):
        return " ".join(self)

    @property
    def n(self):
        return "\n".join(self)

    @property
    def l(self):  # noqa: E743 — IPython's name
        return list(self)

    p = property(lambda self: list(self))


def _plain(v, depth=0):
    """v as strict JSON data (no NaN, numpy scalars as Python numbers, times as ISO
    text), or raises TypeError."""
    if depth > 64:
        raise TypeError("too deep")
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, dict):
        return {str(k): _plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x, depth + 1) for x in v]
    iso = getattr(v, "isoformat", None)
    if callable(iso):
        try:
            return _plain(v.item(), depth + 1) if type(v).__name__ == "NaTType" else iso()
        except (ValueError, AttributeError):
            return None
    item = getattr(v, "item", None)  # a numpy scalar
    if callable(item) and getattr(v, "shape", None) == ():
        return _plain(item(), depth + 1)
    tolist = getattr(v, "tolist", None)  # a numpy array
    if callable(tolist):
        return _plain(tolist(), depth + 1)
    raise TypeError("%s is not JSON data" % type(v).__name__)


def _format_time(seconds):
    """IPython's rendering of a duration: three significant digits and a unit."""
    if seconds >= 60:
        m, s = divmod(seconds, 60)
        return "%dmin %.0fs" % (m, s) if m < 60 else "%dh %dmin %.0fs" % (m // 60, m % 60, s)
    for unit, scale in (("s", 1), ("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        if seconds >= 1 / scale or unit == "ns":
            return "%.*g %s" % (3, seconds * scale, unit)


# -- E2B's chart data: what a matplotlib figure shows, as series ------------------------

def _chart(fig):
    """E2B's "e2b/chart" of a figure: its one chart, or a superchart of its axes'."""
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    if len(axes) == 1:
        return _axes_chart(axes[0])
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else None
    return {"type": "superchart", "title": title or None, "elements": [_axes_chart(ax) for ax in axes]}


def _unit(label):
    """The unit a label names in its trailing parentheses: "Time (s)" is in s."""
    m = re.search(r"\(([^()]*)\)\s*$", label or "")
    return m.group(1) if m else None


def _scale(axis, scale):
    import matplotlib.category
    import matplotlib.dates
    fmt = axis.get_major_formatter()
    if isinstance(fmt, (matplotlib.dates.AutoDateFormatter, matplotlib.dates.ConciseDateFormatter,
                        matplotlib.dates.DateFormatter)):
        return "datetime"
    if isinstance(fmt, matplotlib.category.StrCategoryFormatter):
        return "categorical"
    return scale


def _value(v, scale):
    """A coordinate as E2B gives it: an ISO time on a datetime axis."""
    if scale == "datetime":
        import matplotlib.dates
        return matplotlib.dates.num2date(float(v)).isoformat()
    return v


def _axes_chart(ax):
    import matplotlib.collections
    import matplotlib.patches
    title = ax.get_title() or None
    xlabel, ylabel = ax.get_xlabel() or None, ax.get_ylabel() or None
    base = {"title": title, "x_label": xlabel, "y_label": ylabel, "x_unit": _unit(xlabel), "y_unit": _unit(ylabel)}
    wedges = [p for p in ax.patches if isinstance(p, matplotlib.patches.Wedge)]
    if wedges and len(wedges) == len(ax.patches):
        return {"type": "pie", "title": title, "elements": [
            {"label": w.get_label(), "angle": float(w.theta2 - w.theta1), "radius": float(w.r)} for w in wedges]}
    box = _box_elements(ax)
    if box is not None:
        return dict(base, type="box_and_whisker", elements=box)
    bars = [c for c in ax.containers if type(c).__name__ == "BarContainer"]
    if bars:
        ticks = {round(float(t), 6): l.get_text() for t, l in zip(ax.get_xticks(), ax.get_xticklabels())}
        elements = []
        for c in bars:
            group = c.get_label() if not (c.get_label() or "").startswith("_") else ""
            for r in c.patches:
                x = r.get_x() + r.get_width() / 2
                elements.append({"label": ticks.get(round(float(x), 6), str(x)), "group": group, "value": r.get_height()})
        return dict(base, type="bar", elements=elements)
    xscale, yscale = _scale(ax.xaxis, ax.get_xscale()), _scale(ax.yaxis, ax.get_yscale())
    axes2d = dict(base, x_scale=xscale, y_scale=yscale,
                  x_ticks=[_value(t, xscale) for t in ax.get_xticks()], y_ticks=[_value(t, yscale) for t in ax.get_yticks()],
                  x_tick_labels=[t.get_text() for t in ax.get_xticklabels()],
                  y_tick_labels=[t.get_text() for t in ax.get_yticklabels()])
    scatters = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
    if scatters:
        return dict(axes2d, type="scatter", elements=[
            {"label": c.get_label(), "points": [[_value(x, xscale), _value(y, yscale)] for x, y in c.get_offsets()]}
            for c in scatters])
    lines = [l for l in ax.get_lines() if l.get_visible()]
    if lines:
        return dict(axes2d, type="line", elements=[
            {"label": l.get_label(), "points": [[_value(x, xscale), _value(y, yscale)]
                                                for x, y in zip(l.get_xdata(orig=False), l.get_ydata(orig=False))]}
            for l in lines])
    return {"type": "unknown", "title": title, "elements": []}


def _box_elements(ax):
    """A boxplot's boxes, read from the lines it drew: per box two whiskers, two
    caps, the box (unless drawn as a patch), the median and the outliers."""
    lines = ax.get_lines()
    boxes = [p for p in ax.patches if type(p).__name__ == "PathPatch"]
    per = 6 if boxes else 7
    if not lines or len(lines) % per or any(l.get_label() != "_nolegend_" for l in lines):
        return None
    n = len(lines) // per
    if boxes and len(boxes) != n:
        return None
    labels = [t.get_text() for t in ax.get_xticklabels()]
    out = []
    for i in range(n):
        g = lines[i * per:(i + 1) * per]
        low, high = g[0].get_ydata(), g[1].get_ydata()
        median, fliers = g[-2].get_ydata(), g[-1].get_ydata()
        out.append({"label": labels[i] if i < len(labels) else str(i + 1),
                    "min": float(low[1]), "first_quartile": float(low[0]), "median": float(median[0]),
                    "third_quartile": float(high[0]), "max": float(high[1]),
                    "outliers": [float(v) for v in fliers]})
    return out


class Kernel:
    """The state of one kernel run; the namespace's own state (`_`, the working
    directory, the environment) lives in the process between runs."""

    def __init__(self, options, namespace, report):
        self.ns = namespace
        # With "stream", each bundle goes to the report pipe as it is shown, a line
        # each, ahead of the report (harness.go KernelOptions.Stream).
        self.stream = report if options.get("stream") else None
        self.env = {str(k): str(v) for k, v in (options.get("env") or {}).items()}
        self.base_env = {str(k): str(v) for k, v in (options.get("base_env") or {}).items()}
        self.outputs = []
        self.size = 0
        self.truncated = False
        self.saved_env = {}

    # -- the run ---------------------------------------------------------------

    def enter(self):
        """Makes the kernel's names visible to the program and sets the run's
        environment (base_env for good, env until leave)."""
        import builtins
        global _current
        _current = self
        os.environ.update(self.base_env)
        for k, v in self.env.items():
            self.saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        builtins.display = display
        builtins.get_ipython = get_ipython
        _install_ipython_display()
        _hook_imports()

    def leave(self):
        """Restores the variables this run set: as E2B's, a run's env_vars are the
        run's only."""
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def transform(self, source):
        return transform_cell(source)

    def result(self, value, suppressed):
        """Shows the value of the cell's last expression, as IPython's displayhook."""
        if value is None or suppressed:
            return
        self.ns["___"] = self.ns.get("__")
        self.ns["__"] = self.ns.get("_")
        self.ns["_"] = value
        self.show(value, main=True)

    def flush_figures(self):
        """Shows every open matplotlib figure and closes it, as the inline backend
        does when a cell ends or calls plt.show()."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            for n in plt.get_fignums():
                self.show(plt.figure(n))
            plt.close("all")
        except BaseException as e:
            sys.stderr.write("codeexec: could not render figures: %s: %s\n" % (type(e).__name__, e))

    # -- display data -----------------------------------------------------------

    def show(self, obj, main=False, raw=False, include=None, exclude=None):
        if raw and isinstance(obj, dict):
            data = {str(k): v for k, v in obj.items()}
        else:
            data = self.bundle(obj, include, exclude)
        self.add(data, main)

    def add(self, data, main):
        data = {k: v for k, v in data.items() if v is not None}
        if not data:
            return
        if len(self.outputs) >= MAX_OUTPUTS:
            self.truncated = True
            return
        entry = {"data": data, "main": bool(main)}
        size = len(json.dumps(entry)) + 1
        while self.size + size > MAX_OUTPUT_BYTES:
            self.truncated = True
            big = max((k for k in data if k != "text/plain"), key=lambda k: len(json.dumps(data[k])), default=None)
            if big is None:
                return
            del data[big]
            size = len(json.dumps(entry)) + 1
        self.size += size
        self.outputs.append(entry)
        if self.stream is not None:
            try:
                self.stream.write(json.dumps({"output": entry}) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                self.stream = None  # the server stopped reading: the report still has it

    def bundle(self, obj, include=None, exclude=None):
        """obj's MIME bundle: its own representations, those codeexec gives common
        types (figures, DataFrames' data, lists and dicts as JSON), and text/plain."""
        data = {}
        is_class = isinstance(obj, type)
        mb = None if is_class else getattr(obj, "_repr_mimebundle_", None)
        if callable(mb):
            got = self._call(obj, mb, include=include, exclude=exclude)
            if isinstance(got, tuple) and got:
                got = got[0]
            if isinstance(got, dict):
                for k, v in got.items():
                    if isinstance(k, str):
                        data[k] = v
        for mime, name in _REPR_METHODS:
            if mime in data or is_class:
                continue
            m = getattr(obj, name, None)
            if callable(m):
                v = self._call(obj, m)
                if isinstance(v, tuple) and v:
                    v = v[0]
                if v is not None:
                    data[mime] = v
        if not is_class:
            try:
                self._common(obj, data)
            except Exception as e:
                sys.stderr.write("codeexec: could not render %s: %s: %s\n" % (type(obj).__name__, type(e).__name__, _text(e)))
        if "text/plain" not in data:
            data["text/plain"] = _repr(obj)[0]
        for k in list(data):
            if include is not None and k not in include and k != "text/plain":
                del data[k]
            elif exclude is not None and k in exclude:
                del data[k]
            else:
                data[k] = self._normal(k, data[k])
        return data

    def _common(self, obj, data):
        mpl_figure = sys.modules.get("matplotlib.figure")
        if mpl_figure is not None and isinstance(obj, mpl_figure.Figure) and "image/png" not in data:
            buf = io.BytesIO()
            obj.savefig(buf, format="png", bbox_inches="tight")
            data["image/png"] = buf.getvalue()
            plt = sys.modules.get("matplotlib.pyplot")
            if plt is not None:
                plt.close(obj)
            if "e2b/chart" not in data:
                try:
                    data["e2b/chart"] = _plain(_chart(obj))
                except Exception:
                    data["e2b/chart"] = {}  # as E2B's: a figure whose chart is not read
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(obj, pandas.DataFrame) and "e2b/data" not in data:
            if obj.size <= _MAX_DATA_CELLS:
                try:
                    data["e2b/data"] = _plain(obj.to_dict(orient="list"))
                except (TypeError, ValueError):
                    pass
            else:
                self.truncated = True
        if isinstance(obj, (list, dict)) and "application/json" not in data:
            try:
                data["application/json"] = _plain(obj)
            except (TypeError, ValueError, RecursionError):
                pass

    def _call(self, obj, method, **kw):
        try:
            return method(**kw)
        except Exception as e:
            # IPython reports a broken formatter and carries on with the others.
            sys.stderr.write("codeexec: %s.%s failed: %s: %s\n" % (
                type(obj).__name__, getattr(method, "__name__", "?"), type(e).__name__, _text(e)))
            return None

    @staticmethod
    def _normal(mime, v):
        """v as the report carries it: text, base64 text for binary types, JSON data
        for JSON types; None drops it."""
        if mime in _BINARY and isinstance(v, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(v)).decode("ascii")
        if mime in _JSON_MIMES or mime.endswith("+json"):
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    return None
            try:
                return _plain(v)
            except (TypeError, ValueError, RecursionError):
                return None
        if isinstance(v, (bytes, bytearray)):
            return bytes(v).decode("utf-8", "replace")
        if mime == "text/plain":
            return _cut(_text(v), MAX_RESULT)[0]
        return _text(v)

    # -- shell and magics ------------------------------------------------------

    def system(self, cmd):
        """!cmd: bash runs it with the program's stdout and stderr; its status is
        _exit_code."""
        _flush()
        try:
            code = subprocess.call(["/bin/bash", "-c", self.expand(cmd)], stdin=subprocess.DEVNULL)
        finally:
            _flush()
        self.ns["_exit_code"] = code
        return None

    def getoutput(self, cmd):
        """x = !cmd: the lines cmd printed (stderr too, as IPython's)."""
        _flush()
        p = subprocess.run(["/bin/bash", "-c", self.expand(cmd)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.ns["_exit_code"] = p.returncode
        return SList(p.stdout.decode("utf-8", "replace").splitlines())

    def expand(self, cmd):
        """IPython's expansion of a shell command: {expr} and $name from the
        program's variables; what does not evaluate is left to the shell."""
        def brace(m):
            try:
                return _text(eval(m.group(1), self.ns))
            except Exception:
                return m.group(0)

        def dollar(m):
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(2)
            if name in self.ns:
                return _text(self.ns[name])
            return m.group(0)
        cmd = re.sub(r"\{([^{}]+)\}", brace, cmd)
        return re.sub(r"\$\$|\$\{(\w+)\}|\$([A-Za-z_]\w*)", dollar, cmd)

    def run_line_magic(self, name, line):
        if name in _ALIASES:
            return self.system(_ALIASES[name] + (" " + line if line else ""))
        f = _LINE_MAGICS.get(name)
        if f is None:
            raise UsageError("Line magic function `%%%s` not found." % name)
        return f(self, line.strip())

    def run_cell_magic(self, name, line, cell):
        f = _CELL_MAGICS.get(name)
        if f is None:
            raise UsageError("Cell magic `%%%%%s` not found." % name)
        return f(self, line.strip(), cell)

    @property
    def user_ns(self):
        return self.ns

    def ev(self, expr):
        return eval(expr, self.ns)

    def ex(self, cmd):
        exec(cmd, self.ns)

    def push(self, variables):
        self.ns.update(variables)


_current = None


def get_ipython():
    """The running kernel, as IPython's get_ipython() (None outside a kernel run)."""
    return _current


def display(*objs, include=None, exclude=None, metadata=None, transient=None, display_id=None,
            raw=False, clear=False, **kwargs):
    """Shows each object as display data, mid-run, as IPython's display()."""
    k = _current
    if k is None:
        for o in objs:
            print(repr(o))
        return None
    for o in objs:
        k.show(o, raw=raw, include=include, exclude=exclude)
    return None


def _show(*args, **kwargs):
    """plt.show(): the open figures are shown now, as the inline backend does."""
    if _current is not None:
        _current.flush_figures()


def _patch_pil(image_mod):
    """As in a notebook on E2B: Image.show() displays the image (there is no viewer
    to start), and saving one to a named file displays it too."""
    cls = image_mod.Image
    if getattr(cls.show, "_codeexec", False):
        return
    save = cls.save

    def show(self, title=None, **options):
        display(self)

    def save_and_show(self, fp, format=None, **params):
        result = save(self, fp, format, **params)
        if isinstance(fp, (str, os.PathLike)):
            display(self)
        return result

    show._codeexec = True
    cls.show, cls.save = show, save_and_show


class _ImportHook:
    """Patches a module when a program first imports it (importing it for every run
    would cost the runs that never use it): PIL.Image, and matplotlib.pyplot when the
    interpreter did not preload it."""

    def find_spec(self, name, path=None, target=None):
        patch = _IMPORT_PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                loader = spec.loader
                exec_module = loader.exec_module

                class Loader:
                    def create_module(self, spec):
                        return loader.create_module(spec)

                    def exec_module(self, module):
                        exec_module(module)
                        patch(module)
                spec.loader = Loader()
                return spec
        return None


def _patch_pyplot(plt):
    if getattr(plt.show, "__module__", "") != __name__:
        plt.show = _show


_IMPORT_PATCHES = {"PIL.Image": _patch_pil, "matplotlib.pyplot": _patch_pyplot}


def _hook_imports():
    for name, patch in _IMPORT_PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# -- magics -------------------------------------------------------------------------

def _magic_cd(k, arg):
    """%cd [-q] [dir|-]: changes the working directory and prints it, as IPython's."""
    quiet = arg == "-q" or arg.startswith("-q ")
    if quiet:
        arg = arg[2:].strip()
    if arg in ("", "~"):
        target = os.environ.get("HOME") or os.getcwd()
    elif arg == "-":
        target = os.environ.get("OLDPWD") or os.getcwd()
    else:
        target = os.path.expanduser(k.expand(arg.strip("'\"")))
    old = os.getcwd()
    try:
        os.chdir(target)
    except OSError as e:
        raise UsageError("%s: %s" % (target, e.strerror)) from None
    os.environ["OLDPWD"] = old
    if not quiet:
        print(os.getcwd())


def _magic_pwd(k, arg):
    return os.getcwd()


def _magic_env(k, arg):
    if not arg:
        return dict(os.environ)
    m = re.match(r"^(\w+)\s*(?:=\s*|\s+)(.*)$", arg)
    if m is None:
        if arg not in os.environ:
            raise UsageError("Environment does not have key: %s" % arg)
        return os.environ[arg]
    name, value = m.group(1), k.expand(m.group(2))
    os.environ[name] = value
    print("env: %s=%s" % (name, value))


def _magic_set_env(k, arg):
    parts = arg.split(None, 1)
    if len(parts) != 2:
        raise UsageError("usage: %set_env NAME VALUE")
    return _magic_env(k, parts[0] + "=" + parts[1])


def _times():
    t = os.times()
    return t.user, t.system, time.perf_counter()


def _print_times(t0, t1):
    user, sys_, total = t1[0] - t0[0], t1[1] - t0[1], (t1[0] - t0[0]) + (t1[1] - t0[1])
    print("CPU times: user %s, sys: %s, total: %s" % (_format_time(user), _format_time(sys_), _format_time(total)))
    print("Wall time: %s" % _format_time(t1[2] - t0[2]))


def _magic_time(k, arg):
    """%time stmt: runs stmt (an expression's value is returned) and prints its
    CPU and wall times."""
    try:
        code, is_expr = compile(arg, FILENAME, "eval"), True
    except SyntaxError:
        code, is_expr = compile(arg, FILENAME, "exec"), False
    t0 = _times()
    try:
        value = eval(code, k.ns) if is_expr else exec(code, k.ns)
    finally:
        _print_times(t0, _times())
    return value


def _cell_time(k, line, cell):
    t0 = _times()
    try:
        value = _run_cell_in(k, cell)
    finally:
        _print_times(t0, _times())
    return value


def _timeit(k, line, setup, stmt):
    """%timeit [-n N] [-r R] stmt: IPython's report of the best estimate."""
    args = shlex.split(line) if line else []
    number, repeat, rest = 0, 7, []
    i = 0
    while i < len(args):
        if args[i] in ("-n", "-r") and i + 1 < len(args):
            try:
                v = int(args[i + 1])
            except ValueError:
                raise UsageError("%s takes a number, not %r" % (args[i], args[i + 1])) from None
            if args[i] == "-n":
                number = v
            else:
                repeat = v
            i += 2
        elif args[i] == "-q" or args[i] == "-o":
            i += 1
        else:
            rest = args[i:]
            break
    if stmt is None:
        # The statement is the line's rest, as written (shlex would lose its quotes).
        stmt = line
        for opt in ("-n", "-r"):
            stmt = re.sub(r"(^|\s)%s\s+\d+" % opt, " ", stmt)
        stmt = re.sub(r"(^|\s)-[qo](?=\s)", " ", stmt).strip()
        if not rest:
            raise UsageError("%timeit needs a statement")
    timer = timeit.Timer(stmt, setup or "pass", globals=k.ns)
    if number <= 0:
        number, _ = timer.autorange()
    runs = [t / number for t in timer.repeat(repeat=max(repeat, 1), number=number)]
    mean = sum(runs) / len(runs)
    std = (sum((r - mean) ** 2 for r in runs) / len(runs)) ** 0.5
    print("%s ± %s per loop (mean ± std. dev. of %d run%s, %d loop%s each)" % (
        _format_time(mean), _format_time(std), len(runs), "" if len(runs) == 1 else "s",
        number, "" if number == 1 else "s"))


def _magic_pip(k, arg):
    """%pip: pip, when the image has it. The sandbox has no package index either
    way (its network is the operator's allowlist at most), so without pip the
    message says what is installed instead."""
    import importlib.util
    if importlib.util.find_spec("pip") is not None:
        words = arg.split()
        if words[:1] == ["install"] and "HTTPS_PROXY" not in os.environ:
            # Without a network pip would retry the index for a while before failing.
            sys.stderr.write("codeexec: this sandbox has no network, so pip installs from local files only\n")
            arg = "install --no-index " + " ".join(words[1:])
        return k.system("%s -m pip %s" % (shlex.quote(sys.executable), arg))
    import importlib.metadata
    names = sorted({(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()} - {""})
    sys.stderr.write(
        "codeexec: pip is not installed in this sandbox's image, and the sandbox has no "
        "package index to install from. Use the packages the image has (%s), or ask the "
        "operator for an image with the ones you need.\n" % ", ".join(names))
    k.ns["_exit_code"] = 1


def _magic_matplotlib(k, arg):
    if arg not in ("", "inline"):
        sys.stderr.write("codeexec: figures are always shown inline; %%matplotlib %s is ignored\n" % arg)


def _magic_config(k, arg):
    m = re.match(r"^InlineBackend\.figure_formats?\s*=\s*(.+)$", arg)
    if m is None:
        raise UsageError("%%config %s: codeexec's kernel has no such setting" % arg)
    sys.stderr.write("codeexec: figures are PNG; %%config %s is ignored\n" % arg)


def _magic_run(k, arg):
    """%run script.py args: runs the script as __main__ and keeps its variables."""
    import runpy
    args = shlex.split(arg)
    if not args:
        raise UsageError("%run needs a file")
    saved = sys.argv
    sys.argv = args
    try:
        k.ns.update(runpy.run_path(args[0], run_name="__main__"))
    finally:
        sys.argv = saved


def _magic_system(k, arg):
    return k.getoutput(arg)


def _pinfo(k, arg, detail=False):
    import inspect
    try:
        obj = eval(arg, k.ns)
    except Exception:
        print("Object `%s` not found." % arg)
        return
    lines = ["Type:           %s" % type(obj).__name__, "String form:    %s" % _cut(_text(obj), 2000)[0]]
    try:
        lines.append("Signature:      %s%s" % (arg, inspect.signature(obj)))
    except (TypeError, ValueError):
        pass
    if detail:
        try:
            lines.append("Source:\n%s" % inspect.getsource(obj))
        except (TypeError, OSError):
            pass
    lines.append("Docstring:\n%s" % (inspect.getdoc(obj) or "<no docstring>"))
    print("\n".join(lines))


def _cell_bash(k, line, cell):
    _flush()
    try:
        code = subprocess.call(["/bin/bash", "-c", cell], stdin=subprocess.DEVNULL)
    finally:
        _flush()
    k.ns["_exit_code"] = code
    if code:
        raise subprocess.CalledProcessError(code, "bash")


def _cell_writefile(k, line, cell):
    args = shlex.split(line)
    append = bool(args) and args[0] in ("-a", "--append")
    if append:
        args = args[1:]
    if len(args) != 1:
        raise UsageError("usage: %%writefile [-a] FILE")
    name = os.path.expanduser(args[0])
    exists = os.path.exists(name)
    print("%s %s" % ("Appending to" if append else "Overwriting" if exists else "Writing", args[0]))
    with open(name, "a" if append else "w", encoding="utf-8") as f:
        f.write(cell)


def _cell_display(mime):
    def f(k, line, cell):
        k.add({mime: cell, "text/plain": "<IPython.core.display.%s object>" % mime.split("/")[1].upper()}, False)
    return f


def _run_cell_in(k, cell):
    """Runs a cell magic's body as Python (with the kernel's syntax), returning the
    value of its last expression."""
    tree = compile(transform_cell(cell), FILENAME, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, FILENAME, "exec", dont_inherit=True), k.ns)
    if last is not None:
        return eval(compile(last, FILENAME, "eval", dont_inherit=True), k.ns)
    return None


_LINE_MAGICS = {
    "cd": _magic_cd, "pwd": _magic_pwd, "env": _magic_env, "set_env": _magic_set_env,
    "time": _magic_time, "timeit": lambda k, a: _timeit(k, a, None, None),
    "pip": _magic_pip, "matplotlib": _magic_matplotlib, "config": _magic_config,
    "run": _magic_run, "sx": _magic_system, "system": _magic_system,
    "pinfo": lambda k, a: _pinfo(k, a), "pinfo2": lambda k, a: _pinfo(k, a, True),
}


def _cell_timeit(k, line, cell):
    return _timeit(k, line, None, cell)


_CELL_MAGICS = {
    "bash": _cell_bash, "sh": _cell_bash, "writefile": _cell_writefile, "time": _cell_time,
    "timeit": _cell_timeit, "html": _cell_display("text/html"), "markdown": _cell_display("text/markdown"),
    "latex": _cell_display("text/latex"), "svg": _cell_display("image/svg+xml"),
    "javascript": _cell_display("application/javascript"), "js": _cell_display("application/javascript"),
}


# -- the cell's syntax --------------------------------------------------------------

_LINE = re.compile(r"^(\s*)((?:[\w.]+\s*,\s*)*[\w.]+\s*=\s*)?(!!|!|%)(\S.*)?$")
_HELP = re.compile(r"^(\s*)([A-Za-z_][\w.]*)(\?\??)\s*$")


def _in_continuation(prefix):
    """Whether the end of prefix is inside a statement (open brackets, a string,
    a backslash): a ! or % there is Python's, not IPython's."""
    if not prefix:
        return False
    try:
        for _ in tokenize.generate_tokens(io.StringIO(prefix).readline):
            pass
    except tokenize.TokenError:
        return True
    except (SyntaxError, ValueError):
        return False
    return False


def transform_cell(source):
    """Rewrites IPython's syntax as Python calls on get_ipython(), one line for one
    line so that tracebacks point at the program's own lines. A cell magic takes
    the whole cell."""
    lines = source.splitlines(True)
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines):
        # IPython's leading_indent: a cell indented as a whole (code in a string of
        # a program, as E2B's examples write it) loses the first line's indent.
        indent = lines[first][:len(lines[first]) - len(lines[first].lstrip(" \t"))]
        if indent:
            lines = [l[len(indent):] if l.startswith(indent) else l for l in lines]
    if first < len(lines) and lines[first].startswith("%%"):
        head = lines[first][2:].rstrip("\n")
        name, _, arg = head.partition(" ")
        body = "".join(lines[first + 1:])
        return "\n" * first + "get_ipython().run_cell_magic(%r, %r, %r)\n" % (name.strip(), arg, body)
    out = []
    for line in lines:
        stripped = line.rstrip("\r\n")
        end = line[len(stripped):]
        m = _LINE.match(stripped)
        h = None if m else _HELP.match(stripped)
        if (m or h) and not _in_continuation("".join(out)):
            if h:
                magic = "pinfo2" if h.group(3) == "??" else "pinfo"
                out.append("%sget_ipython().run_line_magic(%r, %r)%s" % (h.group(1), magic, h.group(2), end))
                continue
            indent, target, sigil, rest = m.group(1), m.group(2) or "", m.group(3), m.group(4) or ""
            if sigil == "%":
                name, _, arg = rest.partition(" ")
                call = "get_ipython().run_line_magic(%r, %r)" % (name, arg)
            elif sigil == "!!" or target:
                call = "get_ipython().getoutput(%r)" % rest
            else:
                call = "get_ipython().system(%r)" % rest
            out.append(indent + target + call + end)
            continue
        out.append(line)
    return "".join(out)


def suppressed(source):
    """Whether the cell ends with a semicolon, which hides its result in IPython."""
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER,
                                tokenize.DEDENT, tokenize.INDENT):
                last = tok
    except (tokenize.TokenError, SyntaxError, ValueError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


# -- IPython.display, for programs that import it -----------------------------------

class _DisplayObject:
    _mime = "text/plain"

    def __init__(self, data=None, url=None, filename=None, metadata=None, **kwargs):
        if data is not None and isinstance(data, str) and filename is None and url is None \
                and os.path.sep in data and len(data) < 4096 and os.path.isfile(data):
            filename, data = data, None
        if filename is not None:
            mode = "rb" if self._mime in _BINARY else "r"
            with open(filename, mode) as f:
                data = f.read()
        self.data, self.url, self.filename, self.metadata = data, url, filename, metadata

    def __repr__(self):
        return "<IPython.core.display.%s object>" % type(self).__name__

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {self._mime: self.data}


def _display_class(name, mime):
    return type(name, (_DisplayObject,), {"_mime": mime})


class Math(_DisplayObject):
    _mime = "text/latex"

    def _repr_mimebundle_(self, include=None, exclude=None):
        s = (self.data or "").strip("$")
        return {self._mime: "$\\displaystyle %s$" % s}


class JSON(_DisplayObject):
    _mime = "application/json"


class Image(_DisplayObject):
    def __init__(self, data=None, url=None, filename=None, format=None, embed=None, width=None,
                 height=None, **kwargs):
        if data is not None and isinstance(data, str) and data.startswith(("http://", "https://")):
            url, data = data, None
        if url is not None and data is None and filename is None:
            self.data, self.url, self.format = None, url, format
            return
        self._mime = "image/png"
        super().__init__(data, None, filename)
        fmt = (format or (filename or "").rsplit(".", 1)[-1]).lower()
        if fmt in ("jpg", "jpeg") or (isinstance(self.data, bytes) and self.data[:3] == b"\xff\xd8\xff"):
            self._mime = "image/jpeg"
        self.url = None

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.data is None:
            return {"text/html": '<img src="%s"/>' % self.url}
        return {self._mime: self.data}


def _display_as(mime):
    """IPython.display's display_html and the like: raw data of one type, or objects."""
    def f(*objs, raw=False, **kwargs):
        for o in objs:
            if raw and _current is not None:
                _current.add({mime: o}, False)
            else:
                display(o)
    return f


def _ipython_modules():
    """codeexec's IPython and IPython.display."""
    pkg = types.ModuleType("IPython", "codeexec's stand-in for IPython: IPython.display only.")
    mod = types.ModuleType("IPython.display", "codeexec's stand-in for IPython.display.")
    pkg.__path__ = []
    # None, as outside IPython: libraries that find an IPython module (matplotlib,
    # pandas, tqdm) ask it for the shell and would hook into one that is not there.
    # The program's own get_ipython (a builtin) is the kernel. version_info is the
    # IPython whose display API the stand-in follows; matplotlib reads it.
    pkg.display, pkg.get_ipython, pkg.version_info = mod, lambda: None, (8, 24, 0, "")
    members = {
        "display": display, "clear_output": lambda wait=False: None,
        "HTML": _display_class("HTML", "text/html"), "Markdown": _display_class("Markdown", "text/markdown"),
        "Latex": _display_class("Latex", "text/latex"), "SVG": _display_class("SVG", "image/svg+xml"),
        "Javascript": _display_class("Javascript", "application/javascript"),
        "Pretty": _display_class("Pretty", "text/plain"), "Math": Math, "JSON": JSON, "Image": Image,
    }
    for name, v in members.items():
        setattr(mod, name, v)
    for mime, fn in (("text/html", "display_html"), ("text/markdown", "display_markdown"),
                     ("text/latex", "display_latex"), ("image/png", "display_png"),
                     ("image/svg+xml", "display_svg"), ("application/json", "display_json")):
        setattr(mod, fn, _display_as(mime))
    return {"IPython": pkg, "IPython.display": mod}


class _IPythonFinder:
    """Imports codeexec's IPython.display when the image has no IPython (models
    write `from IPython.display import display` out of habit). Last on sys.meta_path:
    a real IPython wins, and until a program imports it no library sees an IPython."""

    modules = None

    def find_spec(self, name, path=None, target=None):
        if name not in ("IPython", "IPython.display"):
            return None
        import importlib.machinery
        return importlib.machinery.ModuleSpec(name, self, is_package=(name == "IPython"))

    def create_module(self, spec):
        if _IPythonFinder.modules is None:
            _IPythonFinder.modules = _ipython_modules()
        return _IPythonFinder.modules[spec.name]

    def exec_module(self, module):
        pass


def _install_ipython_display():
    if not any(isinstance(f, _IPythonFinder) for f in sys.meta_path):
        sys.meta_path.append(_IPythonFinder())


def kernel_options():
    """The kernel options of this run (popped from the environment, where the
    server put them), or None for a plain run."""
    raw = os.environ.pop(KERNEL_VAR, None)
    if raw is None:
        return None
    try:
        options = json.loads(raw)
    except ValueError:
        return None
    return options if isinstance(options, dict) else None
