package sandbox

import (
	"regexp"
	"strings"
)

// stdlibOnly reports whether code, a Python program, imports nothing outside the
// standard library by its import statements, so that the light zygote (which
// preloaded nothing) can run it (Config.LightZygote). It reads the statements, not
// the program's behaviour: a program that gets a package through __import__,
// importlib or exec is routed to the light zygote and still runs there, importing the
// package itself, only slower; text that looks like an import of a package (in a
// string, say) routes a program to the full zygote, where it runs as well. A
// relative import ("from . import x") fails on either zygote alike.
func stdlibOnly(code string) bool {
	for line := range strings.Lines(code) {
		if !strings.Contains(line, "import") {
			continue // most lines: no need to look further
		}
		for stmt := range strings.SplitSeq(line, ";") {
			for _, name := range importedModules(strings.TrimSpace(stmt)) {
				if _, ok := stdlibModules[name]; !ok {
					return false
				}
			}
		}
	}
	return true
}

var (
	importRE     = regexp.MustCompile(`^import\s+(.+)$`)
	fromImportRE = regexp.MustCompile(`^from\s+([\w.]+)\s+import\b`)
)

// importedModules returns the top-level modules one statement imports: "os" for
// "import os.path as p", "a" and "b" for "import a, b.c", "x" for "from x.y import z";
// none for a relative import or a statement that is not an import.
func importedModules(stmt string) []string {
	if m := fromImportRE.FindStringSubmatch(stmt); m != nil {
		if strings.HasPrefix(m[1], ".") {
			return nil
		}
		return []string{topModule(m[1])}
	}
	m := importRE.FindStringSubmatch(stmt)
	if m == nil {
		return nil
	}
	var out []string
	for part := range strings.SplitSeq(m[1], ",") {
		fields := strings.Fields(strings.TrimRight(part, "\\"))
		if len(fields) > 0 && !strings.HasPrefix(fields[0], "#") {
			out = append(out, topModule(fields[0]))
		}
	}
	return out
}

func topModule(dotted string) string {
	top, _, _ := strings.Cut(dotted, ".")
	return top
}

// stdlibModules are the standard library's top-level modules (sys.stdlib_module_names)
// of the Pythons of the images this project builds (3.11 and 3.13): a module one of
// them lacks fails to import on either zygote alike.
var stdlibModules = map[string]struct{}{
	"__future__": {}, "_abc": {}, "_aix_support": {}, "_android_support": {}, "_apple_support": {}, "_ast": {},
	"_asyncio": {}, "_bisect": {}, "_blake2": {}, "_bootsubprocess": {}, "_bz2": {}, "_codecs": {},
	"_codecs_cn": {}, "_codecs_hk": {}, "_codecs_iso2022": {}, "_codecs_jp": {}, "_codecs_kr": {},
	"_codecs_tw": {}, "_collections": {}, "_collections_abc": {}, "_colorize": {}, "_compat_pickle": {},
	"_compression": {}, "_contextvars": {}, "_crypt": {}, "_csv": {}, "_ctypes": {}, "_curses": {},
	"_curses_panel": {}, "_datetime": {}, "_dbm": {}, "_decimal": {}, "_elementtree": {},
	"_frozen_importlib": {}, "_frozen_importlib_external": {}, "_functools": {}, "_gdbm": {}, "_hashlib": {},
	"_heapq": {}, "_imp": {}, "_interpchannels": {}, "_interpqueues": {}, "_interpreters": {}, "_io": {},
	"_ios_support": {}, "_json": {}, "_locale": {}, "_lsprof": {}, "_lzma": {}, "_markupbase": {}, "_md5": {},
	"_msi": {}, "_multibytecodec": {}, "_multiprocessing": {}, "_opcode": {}, "_opcode_metadata": {},
	"_operator": {}, "_osx_support": {}, "_overlapped": {}, "_pickle": {}, "_posixshmem": {},
	"_posixsubprocess": {}, "_py_abc": {}, "_pydatetime": {}, "_pydecimal": {}, "_pyio": {}, "_pylong": {},
	"_pyrepl": {}, "_queue": {}, "_random": {}, "_scproxy": {}, "_sha1": {}, "_sha2": {}, "_sha256": {},
	"_sha3": {}, "_sha512": {}, "_signal": {}, "_sitebuiltins": {}, "_socket": {}, "_sqlite3": {}, "_sre": {},
	"_ssl": {}, "_stat": {}, "_statistics": {}, "_string": {}, "_strptime": {}, "_struct": {},
	"_suggestions": {}, "_symtable": {}, "_sysconfig": {}, "_thread": {}, "_threading_local": {},
	"_tkinter": {}, "_tokenize": {}, "_tracemalloc": {}, "_typing": {}, "_uuid": {}, "_warnings": {},
	"_weakref": {}, "_weakrefset": {}, "_winapi": {}, "_wmi": {}, "_zoneinfo": {}, "abc": {}, "aifc": {},
	"antigravity": {}, "argparse": {}, "array": {}, "ast": {}, "asynchat": {}, "asyncio": {}, "asyncore": {},
	"atexit": {}, "audioop": {}, "base64": {}, "bdb": {}, "binascii": {}, "bisect": {}, "builtins": {},
	"bz2": {}, "cProfile": {}, "calendar": {}, "cgi": {}, "cgitb": {}, "chunk": {}, "cmath": {}, "cmd": {},
	"code": {}, "codecs": {}, "codeop": {}, "collections": {}, "colorsys": {}, "compileall": {},
	"concurrent": {}, "configparser": {}, "contextlib": {}, "contextvars": {}, "copy": {}, "copyreg": {},
	"crypt": {}, "csv": {}, "ctypes": {}, "curses": {}, "dataclasses": {}, "datetime": {}, "dbm": {},
	"decimal": {}, "difflib": {}, "dis": {}, "distutils": {}, "doctest": {}, "email": {}, "encodings": {},
	"ensurepip": {}, "enum": {}, "errno": {}, "faulthandler": {}, "fcntl": {}, "filecmp": {}, "fileinput": {},
	"fnmatch": {}, "fractions": {}, "ftplib": {}, "functools": {}, "gc": {}, "genericpath": {}, "getopt": {},
	"getpass": {}, "gettext": {}, "glob": {}, "graphlib": {}, "grp": {}, "gzip": {}, "hashlib": {}, "heapq": {},
	"hmac": {}, "html": {}, "http": {}, "idlelib": {}, "imaplib": {}, "imghdr": {}, "imp": {}, "importlib": {},
	"inspect": {}, "io": {}, "ipaddress": {}, "itertools": {}, "json": {}, "keyword": {}, "lib2to3": {},
	"linecache": {}, "locale": {}, "logging": {}, "lzma": {}, "mailbox": {}, "mailcap": {}, "marshal": {},
	"math": {}, "mimetypes": {}, "mmap": {}, "modulefinder": {}, "msilib": {}, "msvcrt": {},
	"multiprocessing": {}, "netrc": {}, "nis": {}, "nntplib": {}, "nt": {}, "ntpath": {}, "nturl2path": {},
	"numbers": {}, "opcode": {}, "operator": {}, "optparse": {}, "os": {}, "ossaudiodev": {}, "pathlib": {},
	"pdb": {}, "pickle": {}, "pickletools": {}, "pipes": {}, "pkgutil": {}, "platform": {}, "plistlib": {},
	"poplib": {}, "posix": {}, "posixpath": {}, "pprint": {}, "profile": {}, "pstats": {}, "pty": {}, "pwd": {},
	"py_compile": {}, "pyclbr": {}, "pydoc": {}, "pydoc_data": {}, "pyexpat": {}, "queue": {}, "quopri": {},
	"random": {}, "re": {}, "readline": {}, "reprlib": {}, "resource": {}, "rlcompleter": {}, "runpy": {},
	"sched": {}, "secrets": {}, "select": {}, "selectors": {}, "shelve": {}, "shlex": {}, "shutil": {},
	"signal": {}, "site": {}, "smtpd": {}, "smtplib": {}, "sndhdr": {}, "socket": {}, "socketserver": {},
	"spwd": {}, "sqlite3": {}, "sre_compile": {}, "sre_constants": {}, "sre_parse": {}, "ssl": {}, "stat": {},
	"statistics": {}, "string": {}, "stringprep": {}, "struct": {}, "subprocess": {}, "sunau": {},
	"symtable": {}, "sys": {}, "sysconfig": {}, "syslog": {}, "tabnanny": {}, "tarfile": {}, "telnetlib": {},
	"tempfile": {}, "termios": {}, "textwrap": {}, "this": {}, "threading": {}, "time": {}, "timeit": {},
	"tkinter": {}, "token": {}, "tokenize": {}, "tomllib": {}, "trace": {}, "traceback": {}, "tracemalloc": {},
	"tty": {}, "turtle": {}, "turtledemo": {}, "types": {}, "typing": {}, "unicodedata": {}, "unittest": {},
	"urllib": {}, "uu": {}, "uuid": {}, "venv": {}, "warnings": {}, "wave": {}, "weakref": {}, "webbrowser": {},
	"winreg": {}, "winsound": {}, "wsgiref": {}, "xdrlib": {}, "xml": {}, "xmlrpc": {}, "zipapp": {},
	"zipfile": {}, "zipimport": {}, "zlib": {}, "zoneinfo": {},
}
