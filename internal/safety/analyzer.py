# codeexec static safety analyzer: runs inside the sandbox, parses (never runs) the
# program in CODE_FILE with `ast`, and prints one JSON verdict to stdout:
#   {"safe": bool, "reason": str, "findings": [{"line": int, "what": str}]}
# static.go decodes that line strictly. A program that does not parse is "safe":
# the harness compiles it with the same interpreter and it fails with a traceback.
#
# The check is best effort (a program can always hide a call from a static
# reader); the sandbox is the security boundary. What is flagged is data, below.
# Deliberate choices:
# - Paths are judged when their start is known (a literal, an f-string's first
#   part, Path("/x") / y, os.path.join, expanduser); a path held in a variable is
#   left to the LLM judge, since flagging every os.remove(f) would refuse ordinary
#   clean-up code.
# - Listing the work dir (os.listdir(".")) is allowed: in the sandbox it is the
#   sandbox's own directory, not the user's. Whether the user may ask for it is
#   policy, for the LLM judge. Listing "/", /home, "~" or any other directory
#   outside the work dir and /tmp is probing.
# - A program too deep for the parser (RecursionError, MemoryError) is not caught:
#   the run fails, and the caller treats that as "not safe".
# - Endless loops and allocation are not flagged (only fork in a loop): the
#   sandbox's timeout and memory limit end them.
import ast
import fnmatch
import json
import posixpath
import sys

CODE_FILE = "code.txt"
# OPTIONS_FILE, when present, says what the program may do: {"network": true} when
# it runs with limited network (HTTP(S) through codeexec's egress proxy, which
# decides the hosts). Then HTTP clients and URL readers are not findings; sockets
# and other protocols still are.
OPTIONS_FILE = "options.json"
MAX_FINDINGS = 50
MAX_DEPTH = 40  # bound on recursion over one expression (resolve, path_of)
MAX_LITERAL_NESTING = 2  # eval("eval('...')") is analyzed this deep

# NAME_RULES: dotted names that are flagged wherever they are imported or used
# (called or not, so `f = os.system` counts). A name matches a rule equal to it, a
# rule that is its module prefix ("subprocess" matches "subprocess.run"), or a glob.
NAME_RULES = [
    ("process spawning", [
        "subprocess", "pty", "pexpect", "sh", "plumbum", "os.system", "os.popen",
        "os.exec*", "os.spawn*", "os.posix_spawn*", "os.fork", "os.forkpty",
        "os.startfile", "asyncio.create_subprocess_*", "multiprocessing.popen_*",
    ]),
    ("network access", [
        "socket", "ssl", "socketserver", "http.client", "http.server",
        "urllib.request", "urllib3", "requests", "httpx", "aiohttp", "ftplib",
        "smtplib", "poplib", "imaplib", "nntplib", "telnetlib", "xmlrpc.client",
        "xmlrpc.server", "websocket", "websockets", "paramiko", "pycurl", "wget",
        "webbrowser", "dns.resolver", "scapy", "asyncio.open_connection",
        "asyncio.open_unix_connection", "asyncio.start_server",
        "asyncio.start_unix_server",
    ]),
    ("native code", ["ctypes", "_ctypes", "cffi"]),
    ("privilege change", [
        "os.setuid", "os.setgid", "os.seteuid", "os.setegid", "os.setreuid",
        "os.setregid", "os.setresuid", "os.setresgid", "os.chroot", "os.mknod",
        "os.unshare", "os.setns",
    ]),
]

# With network, these HTTP(S) clients are allowed (names match as in NAME_RULES).
HTTP_CLIENTS = ["requests", "urllib.request", "urllib3", "http.client", "httpx", "aiohttp"]
HTTP_SCHEMES = ("http://", "https://")
NETWORK = False  # set by main from OPTIONS_FILE

# Calls that run or import code given as data: flagged unless the argument is a
# literal (a literal program is analyzed like the rest; a literal module name is
# an import).
DYNAMIC_CODE = {"builtins.eval", "builtins.exec", "builtins.compile"}
DYNAMIC_IMPORT = {"builtins.__import__", "importlib.import_module", "importlib.__import__"}
# getattr(module, non-literal) on these modules hides which attribute is used.
GETATTR_GUARDED = {"os", "subprocess", "builtins", "sys", "socket", "ctypes", "importlib", "shutil"}

# Import machinery that a program must not replace or tamper with.
IMPORT_STATE = {"sys.modules", "sys.meta_path", "sys.path_hooks"}
MUTATORS = {"update", "pop", "popitem", "setdefault", "clear", "insert", "append",
            "extend", "remove", "__setitem__", "__delitem__"}

# os.environ may be read one variable at a time, never as a whole (a dump).
ENVIRON = {"os.environ", "os.environb"}
ENVIRON_OK_METHODS = {"get", "setdefault", "pop", "update", "__getitem__",
                      "__setitem__", "__contains__"}

# Paths. Relative paths are resolved against the work dir, like the sandbox does;
# "~" is the user's home (the intent of the code, whatever HOME is in the sandbox).
WORK_DIR = "/work"
WRITABLE_ROOTS = ["/work", "/tmp", "/dev/shm", "/dev/null", "/dev/stdout", "/dev/stderr"]
SENSITIVE = [
    "/etc/shadow", "/etc/gshadow", "/etc/passwd", "/etc/sudoers", "/etc/sudoers.d",
    "/etc/ssh", "/proc", "/sys", "/dev/mem", "/dev/kmem", "/dev/port", "/root",
    "/home", "/var/run/secrets", "/run/secrets", "/var/run/docker.sock",
    "/run/docker.sock", "~/.ssh", "~/.aws", "~/.gnupg", "~/.netrc", "~/.kube",
    "~/.docker", "~/.config", "~/.bash_history", "~/.git-credentials",
]
SENSITIVE_NAMES = {".ssh", ".aws", ".gnupg", "id_rsa", "id_ed25519", "id_ecdsa"}

# Path-taking calls, by resolved name: which argument is the path.
DELETE_CALLS = {"os.remove": 0, "os.unlink": 0, "os.rmdir": 0, "os.removedirs": 0,
                "shutil.rmtree": 0}
LIST_CALLS = {"os.listdir": 0, "os.scandir": 0, "os.walk": 0, "os.fwalk": 0,
              "glob.glob": 0, "glob.iglob": 0}
WRITE_CALLS = {"os.mkdir": 0, "os.makedirs": 0, "os.chmod": 0, "os.chown": 0,
               "os.lchown": 0, "os.truncate": 0, "os.utime": 0, "os.rename": 1,
               "os.replace": 1, "os.symlink": 1, "os.link": 1, "shutil.copy": 1,
               "shutil.copy2": 1, "shutil.copyfile": 1, "shutil.copytree": 1,
               "shutil.move": 1}
OPEN_CALLS = {"builtins.open", "io.open", "codecs.open", "gzip.open", "bz2.open", "lzma.open"}
WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}
# Methods, on any object, whose receiver is a path (pathlib) ...
PATH_DELETE_METHODS = {"unlink", "rmdir"}
PATH_LIST_METHODS = {"iterdir", "glob", "rglob"}
PATH_WRITE_METHODS = {"write_text", "write_bytes", "touch", "mkdir", "chmod", "symlink_to"}
# ... or whose first argument (or one of these keywords) is a file written.
SAVE_METHODS = {"to_csv", "to_json", "to_excel", "to_parquet", "to_pickle", "to_html",
                "to_feather", "to_hdf", "to_sql", "to_latex", "to_markdown", "to_xml",
                "to_stata", "savefig", "save", "savetxt", "savez", "savez_compressed",
                "tofile", "to_file"}
SAVE_KEYWORDS = {"path_or_buf", "path", "fname", "file", "filename", "excel_writer"}
# Calls whose value is a path: Path("/x", "y"), os.path.join(...), ...
PATH_CONSTRUCTORS = {"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath",
                     "pathlib.PurePosixPath", "os.path.join", "posixpath.join"}
PATH_PASSTHROUGH = {"os.path.expanduser", "os.path.abspath", "os.path.realpath",
                    "os.path.normpath", "os.fspath", "builtins.str"}
PATH_PASSTHROUGH_METHODS = {"expanduser", "resolve", "absolute", "joinpath"}
PATH_VALUES = {"pathlib.Path.home": "~", "pathlib.Path.cwd": WORK_DIR, "os.getcwd": WORK_DIR}
# Readers that fetch URLs themselves (pandas.read_*, numpy.loadtxt, PIL, ...).
URL_READERS = {"urlopen", "urlretrieve", "loadtxt", "genfromtxt", "load", "open", "imread"}
URL_KEYWORDS = SAVE_KEYWORDS | {"filepath_or_buffer", "io", "url", "fname", "fp"}
URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")

LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Module)


def matches(name, rule):
    if any(c in rule for c in "*?["):
        return fnmatch.fnmatchcase(name, rule)
    return name == rule or name.startswith(rule + ".")


def name_category(name):
    if NETWORK and any(matches(name, rule) for rule in HTTP_CLIENTS):
        return None
    for category, rules in NAME_RULES:
        for rule in rules:
            if matches(name, rule):
                return category
    return None


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def normalize(path):
    """Returns path made absolute against the work dir, or kept under "~"."""
    if path.startswith("~"):
        return posixpath.normpath(path)
    if not path.startswith("/"):
        path = posixpath.join(WORK_DIR, path)
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/")  # normpath keeps a leading "//"


def is_sensitive(path):
    p = normalize(path)
    if under(p, SENSITIVE):
        return True
    # Another system's home (/Users/x/.ssh): by name, outside the sandbox's own dirs.
    return not under(p, WRITABLE_ROOTS) and any(part in SENSITIVE_NAMES for part in p.split("/"))


def outside_work(path):
    return not under(normalize(path), WRITABLE_ROOTS)


def literal_str(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        v = node.value
        return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


def short(node):
    try:
        text = ast.unparse(node)
    except Exception:
        text = type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


class Analyzer:
    def __init__(self, tree, nesting=0):
        self.tree = tree
        self.nesting = nesting
        self.aliases = {}  # local name -> dotted name it was imported as
        self.star = []  # modules imported with "from m import *"
        self.parents = {}
        self.findings = []
        self.seen = set()
        self.reported = set()  # constants already named by a more specific finding
        self.line_override = None

    def add(self, node, what):
        line = self.line_override or getattr(node, "lineno", 0)
        if (line, what) in self.seen:
            return
        self.seen.add((line, what))
        self.findings.append({"line": line, "what": what})

    # --- names -------------------------------------------------------------

    def collect(self):
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name == "*":
                        self.star.append(node.module)
                    else:
                        self.aliases[a.asname or a.name] = node.module + "." + a.name

    def resolve(self, node, depth=0):
        """Returns the dotted name an expression refers to, or None."""
        if depth > MAX_DEPTH:
            return None
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id == "__builtins__":
                return "builtins"
            for m in self.star:
                if name_category(m + "." + node.id):
                    return m + "." + node.id
            return "builtins." + node.id
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value, depth + 1)
            return base + "." + node.attr if base else None
        if isinstance(node, ast.Call):
            fn = self.resolve(node.func, depth + 1)
            arg = literal_str(node.args[0]) if node.args else None
            if fn in DYNAMIC_IMPORT and arg:
                return arg
            if fn == "builtins.getattr" and len(node.args) >= 2:
                base = self.resolve(node.args[0], depth + 1)
                attr = literal_str(node.args[1])
                if base and attr:
                    return base + "." + attr
        return None

    # --- paths -------------------------------------------------------------

    def path_of(self, node, depth=0):
        """Returns (prefix, exact) of a path expression, or None when unknown."""
        if node is None or depth > MAX_DEPTH:
            return None
        s = literal_str(node)
        if s is not None:
            return s, True
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            s = literal_str(first) if first is not None else ""
            return (s, len(node.values) <= 1) if s is not None else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
            left = self.path_of(node.left, depth + 1)
            right = self.path_of(node.right, depth + 1)
            sep = "/" if isinstance(node.op, ast.Div) else ""
            if isinstance(node.op, ast.Div) and right and right[0].startswith("/"):
                return right
            if left and left[1] and right:
                return left[0] + sep + right[0], right[1]
            if left:
                return left[0], False
            return None
        if isinstance(node, ast.Call):
            name = self.resolve(node.func, depth + 1)
            if name in PATH_VALUES:
                return PATH_VALUES[name], True
            if name in PATH_CONSTRUCTORS:
                return self.join(node.args, depth)
            if name in PATH_PASSTHROUGH and node.args:
                return self.path_of(node.args[0], depth + 1)
            if isinstance(node.func, ast.Attribute) and node.func.attr in PATH_PASSTHROUGH_METHODS:
                base = self.path_of(node.func.value, depth + 1)
                if node.func.attr == "joinpath" and base and base[1]:
                    return self.join([ast.Constant(base[0])] + node.args, depth)
                return base
        return None

    def join(self, args, depth):
        out = None
        for a in args:
            p = self.path_of(a, depth + 1)
            if p is None:
                return (out[0], False) if out else None
            if out is None or p[0].startswith("/") or p[0].startswith("~"):
                out = p
            elif not out[1]:
                return out
            else:
                out = (posixpath.join(out[0], p[0]), p[1])
        return out if out else (".", True)

    def arg(self, call, index, keywords=()):
        if len(call.args) > index:
            return call.args[index]
        for k in call.keywords:
            if k.arg in keywords:
                return k.value
        return None

    def check_path(self, node, kind, call):
        """Flags a path written, deleted or listed (kind) outside the work dir."""
        p = self.path_of(node)
        if p is None or not outside_work(p[0]):
            return
        self.add(call, "%s outside the work dir: %s" % (kind, short(call)))
        for n in ast.walk(node):
            self.reported.add(n)

    # --- checks ------------------------------------------------------------

    def run(self):
        self.collect()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.check_import(node, a.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    full = node.module if a.name == "*" else node.module + "." + a.name
                    self.check_import(node, full)
            elif isinstance(node, (ast.Name, ast.Attribute, ast.Call)):
                self.check_reference(node)
            if isinstance(node, ast.Call):
                self.check_call(node)
        for node in ast.walk(self.tree):
            if node in self.reported:
                continue
            s = literal_str(node) if isinstance(node, ast.Constant) else None
            if isinstance(node, ast.JoinedStr) and node.values:
                s = literal_str(node.values[0])
            if s and s[:1] in "/~." and not any(c.isspace() for c in s) and is_sensitive(s):
                self.add(node, "sensitive path: %r" % s)
                for n in ast.walk(node):
                    self.reported.add(n)
        return self.findings

    def check_import(self, node, module):
        category = name_category(module)
        if category:
            self.add(node, "%s: import %s" % (category, module))

    def check_reference(self, node):
        parent = self.parents.get(node)
        # Judge a dotted chain once, at its outermost attribute.
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return
        if isinstance(node, ast.Call) and self.resolve(node.func) not in DYNAMIC_IMPORT | {"builtins.getattr"}:
            return
        name = self.resolve(node)
        if not name or name.startswith("builtins.") and isinstance(node, ast.Name):
            return
        category = name_category(name)
        if category:
            if name in ("os.fork", "os.forkpty") and self.in_loop(node):
                self.add(node, "fork bomb: %s inside a loop" % name)
            else:
                self.add(node, "%s: %s" % (category, name))
        self.check_import_state(node, name, parent)
        self.check_environ(node, name, parent)

    def check_import_state(self, node, name, parent):
        for state in IMPORT_STATE:
            if name == state:
                stored = isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)) or (
                    isinstance(parent, ast.Subscript) and parent.value is node
                    and isinstance(parent.ctx, (ast.Store, ast.Del)))
                if stored:
                    self.add(node, "import system tampering: %s" % state)
            elif name.startswith(state + ".") and name[len(state) + 1:] in MUTATORS:
                self.add(node, "import system tampering: %s" % name)

    def check_environ(self, node, name, parent):
        for env in ENVIRON:
            if name == env:
                ok = (isinstance(parent, ast.Subscript) and parent.value is node) or (
                    isinstance(parent, ast.Compare) and node in parent.comparators
                    and all(isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops))
                if not ok:
                    self.add(node, "environment dump: %s" % short(node))
            elif name.startswith(env + ".") and name[len(env) + 1:] not in ENVIRON_OK_METHODS:
                self.add(node, "environment dump: %s" % name)

    def in_loop(self, node):
        n = self.parents.get(node)
        while n is not None and not isinstance(n, SCOPES):
            if isinstance(n, LOOPS):
                return True
            n = self.parents.get(n)
        return False

    def check_call(self, call):
        name = self.resolve(call.func)
        first = call.args[0] if call.args else None
        self.check_url(call, name)
        if name in DYNAMIC_CODE:
            src = literal_str(first) if first is not None else None
            if src is None:
                self.add(call, "dynamic code: %s of a non-literal string" % name[len("builtins."):])
            else:
                self.check_literal_code(call, src)
        elif name in DYNAMIC_IMPORT and (first is None or literal_str(first) is None):
            self.add(call, "dynamic import: %s of a non-literal name" % name.replace("builtins.", ""))
        elif name == "builtins.getattr" and len(call.args) >= 2 and literal_str(call.args[1]) is None:
            base = self.resolve(call.args[0])
            if base in GETATTR_GUARDED:
                self.add(call, "dynamic code: getattr on %s with a non-literal name" % base)
        elif name in OPEN_CALLS or name == "os.open":
            self.check_open(call, name)
        elif name in DELETE_CALLS:
            self.check_path(self.arg(call, DELETE_CALLS[name], ("path",)), "file deletion", call)
        elif name in WRITE_CALLS:
            self.check_path(self.arg(call, WRITE_CALLS[name], ("dst", "path")), "file write", call)
        elif name in LIST_CALLS:
            self.check_path(self.arg(call, LIST_CALLS[name], ("path", "top", "pathname")), "directory listing", call)
        elif isinstance(call.func, ast.Attribute):
            self.check_method(call, call.func.attr, call.func.value)
        # After the write, delete and list checks, which name the path more precisely.
        self.check_sensitive(call)

    def check_method(self, call, method, receiver):
        if method in PATH_DELETE_METHODS:
            self.check_path(receiver, "file deletion", call)
        elif method in PATH_LIST_METHODS:
            self.check_path(receiver, "directory listing", call)
        elif method in PATH_WRITE_METHODS:
            self.check_path(receiver, "file write", call)
        elif method == "open" and self.path_of(receiver) is not None:
            self.check_mode(call, receiver, self.arg(call, 0, ("mode",)))
        elif method in SAVE_METHODS:
            target = self.arg(call, 0, SAVE_KEYWORDS)
            if target is not None:
                self.check_path(target, "file write", call)

    def check_open(self, call, name):
        target = self.arg(call, 0, ("file", "filename", "path"))
        if name == "os.open":
            flags = self.arg(call, 1, ("flags",))
            writes = flags is None or any(
                isinstance(n, (ast.Attribute, ast.Name)) and getattr(n, "attr", getattr(n, "id", "")) in WRITE_FLAGS
                for n in ast.walk(flags))
            if writes:
                self.check_path(target, "file write", call)
            return
        self.check_mode(call, target, self.arg(call, 1, ("mode",)))

    def check_mode(self, call, target, mode):
        if mode is None:
            return
        m = literal_str(mode)
        # A mode the analyzer cannot read may write: fail closed.
        if m is None or any(c in m for c in "wax+"):
            self.check_path(target, "file write", call)

    def check_sensitive(self, call):
        """Flags a sensitive path built by an expression and passed to, or used as
        the receiver of, a call: open(Path("/") / "etc" / "shadow")."""
        nodes = call.args + [k.value for k in call.keywords]
        if isinstance(call.func, ast.Attribute):
            nodes.append(call.func.value)
        for n in nodes:
            if n in self.reported:
                continue
            p = self.path_of(n)
            if p and p[0][:1] in "/~." and is_sensitive(p[0]):
                self.add(call, "sensitive path: %s" % short(n))
                for m in ast.walk(n):
                    self.reported.add(m)

    def check_url(self, call, name):
        """Flags a URL given to a reader that fetches it (pandas.read_csv(url))."""
        last = name.rsplit(".", 1)[-1] if name else getattr(call.func, "attr", None)
        if not last or not (last.startswith("read_") or last in URL_READERS):
            return
        for a in call.args[:1] + [k.value for k in call.keywords if k.arg in URL_KEYWORDS]:
            p = self.path_of(a)
            if p and p[0].lower().startswith(URL_SCHEMES):
                if NETWORK and p[0].lower().startswith(HTTP_SCHEMES):
                    continue
                self.add(call, "network access: %s" % short(call))

    def check_literal_code(self, call, src):
        if self.nesting >= MAX_LITERAL_NESTING:
            self.add(call, "dynamic code: nested %s" % short(call.func))
            return
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError):
            return
        inner = Analyzer(tree, self.nesting + 1)
        inner.aliases, inner.star = dict(self.aliases), list(self.star)
        inner.line_override = self.line_override or call.lineno
        for f in inner.run():
            self.add(call, f["what"])


def reason_of(findings):
    shown = ["%s (line %d)" % (f["what"], f["line"]) for f in findings[:3]]
    if len(findings) > 3:
        shown.append("and %d more" % (len(findings) - 3))
    return "; ".join(shown)


def verdict(source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        # The harness compiles the program with this same interpreter: it fails there
        # too, before running anything.
        return {"safe": True, "reason": "syntax error; left to the interpreter", "findings": []}
    findings = Analyzer(tree).run()
    findings.sort(key=lambda f: f["line"])
    if not findings:
        return {"safe": True, "reason": "no findings", "findings": []}
    return {"safe": False, "reason": reason_of(findings), "findings": findings[:MAX_FINDINGS]}


def read_options():
    try:
        with open(OPTIONS_FILE, "rb") as f:
            options = json.loads(f.read())
    except FileNotFoundError:
        return {}
    if not isinstance(options, dict) or set(options) - {"network"} or not isinstance(options.get("network", False), bool):
        raise ValueError("bad options: %r" % (options,))
    return options


def main():
    global NETWORK
    NETWORK = read_options().get("network", False)
    path = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "<code>" else CODE_FILE
    with open(path, "rb") as f:
        # The harness decodes programs the same way.
        source = f.read().decode("utf-8", errors="replace")
    sys.stdout.write(json.dumps(verdict(source)) + "\n")


main()
