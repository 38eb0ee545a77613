package e2b

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// watcherSource watches a directory with inotify from inside the sandbox, as the
// sandbox user (the seccomp filter allows inotify; the kernel reports a write made
// from the host side into the work dir as any other). It prints one JSON object a
// line: {"ready": true} once its watches are set, then {"name", "type"} an event,
// or {"error"} and exits. Names are relative to the watched directory. A file
// renamed onto a name is a CREATE and a WRITE of it. Rejected:
// polling the work dir from the host, which sees neither /tmp nor the moment of a
// change.
const watcherSource = `
import ctypes, json, os, struct, sys
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_IGNORED, IN_ISDIR = 0x8000, 0x40000000
MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
root, recursive = sys.argv[1], sys.argv[2] == "1"
if not os.path.exists(root):
    out({"error": "not_found"}); sys.exit(0)
if not os.path.isdir(root):
    out({"error": "not_dir"}); sys.exit(0)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
if fd < 0:
    out({"error": "inotify: " + os.strerror(ctypes.get_errno())}); sys.exit(0)
watches = {}
def add(d):
    w = libc.inotify_add_watch(fd, os.fsencode(d), MASK)
    if w >= 0:
        watches[w] = d
    if recursive:
        for top, dirs, _ in os.walk(d):
            for n in dirs:
                w = libc.inotify_add_watch(fd, os.fsencode(os.path.join(top, n)), MASK)
                if w >= 0:
                    watches[w] = os.path.join(top, n)
add(root)
out({"ready": True})
KINDS = ((IN_CREATE | IN_MOVED_TO, "EVENT_TYPE_CREATE"), (IN_MODIFY, "EVENT_TYPE_WRITE"),
         (IN_DELETE | IN_DELETE_SELF, "EVENT_TYPE_REMOVE"), (IN_MOVED_FROM | IN_MOVE_SELF, "EVENT_TYPE_RENAME"),
         (IN_ATTRIB, "EVENT_TYPE_CHMOD"))
while True:
    data = os.read(fd, 1 << 16)
    i = 0
    while i + 16 <= len(data):
        w, mask, _, size = struct.unpack_from("iIII", data, i)
        name = data[i + 16:i + 16 + size].split(b"\0", 1)[0].decode("utf-8", "replace")
        i += 16 + size
        d = watches.get(w)
        if d is None:
            continue
        if mask & IN_IGNORED:
            watches.pop(w, None)
            continue
        p = os.path.join(d, name) if name else d
        if recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            add(p)
        if (mask & (IN_DELETE_SELF | IN_MOVE_SELF)) and d != root:
            continue
        for bit, kind in KINDS:
            if mask & bit:
                out({"name": os.path.relpath(p, root), "type": kind})
                break
        if mask & IN_MOVED_TO and not mask & IN_ISDIR:
            # A file renamed over the name (the files API writes so, atomically): its
            # content there is new, as a write in place would have made it.
            out({"name": os.path.relpath(p, root), "type": "EVENT_TYPE_WRITE"})
        if d == root and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            sys.exit(0)
`

// watchEvent is a line of the watcher's.
type watchEvent struct {
	Ready bool   `json:"ready"`
	Error string `json:"error"`
	Name  string `json:"name"`
	Type  string `json:"type"`
}

// watcher is a running watcher program; events are read from it by events.
type watcher struct {
	p      *sandbox.Process
	lines  *bufio.Scanner
	closer io.Closer
}

// startWatcher starts watching dir (a sandbox path) and returns once its watches
// are set, or with its error: errNotFound, or a directory that is not one. The
// caller must call stop.
func startWatcher(r *http.Request, sess *session.Session, dir string, recursive bool) (*watcher, error) {
	pr, pw := io.Pipe()
	rec := "0"
	if recursive {
		rec = "1"
	}
	p, err := sess.Start(r.Context(), &sandbox.Command{Args: []string{"python3", "-I", "-c", watcherSource, dir, rec}, Stdout: pw})
	if err != nil {
		pw.Close()
		return nil, err
	}
	go func() { _, _ = p.Wait(); pw.Close() }()
	w := &watcher{p: p, lines: bufio.NewScanner(pr), closer: pr}
	w.lines.Buffer(make([]byte, 64<<10), 64<<10)
	ev, ok := w.next()
	switch {
	case ok && ev.Ready:
		return w, nil
	case ok && ev.Error == "not_found":
		err = errNotFound
	case ok && ev.Error == "not_dir":
		err = fmt.Errorf("path %q is not a directory", dir)
	case ok:
		err = fmt.Errorf("watch: %s", ev.Error)
	default:
		err = fmt.Errorf("watch %q: the watcher ended", dir)
	}
	w.stop()
	return nil, err
}

// next returns the watcher's next line; false once it has ended.
func (w *watcher) next() (watchEvent, bool) {
	for w.lines.Scan() {
		var ev watchEvent
		if json.Unmarshal(w.lines.Bytes(), &ev) == nil {
			return ev, true
		}
	}
	return watchEvent{}, false
}

func (w *watcher) stop() {
	_ = w.p.Signal(syscall.SIGKILL)
	w.closer.Close()
}

// watchKeepalive is how often a quiet WatchDir stream gets a keepalive.
const watchKeepalive = 30 * time.Second

func (s *Server) watchDir(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	}
	if !readStreamRequest(w, r, &req) {
		return
	}
	out := &connectStream{w: w}
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
	wt, err := startWatcher(r, sess, sandboxPath(req.Path), req.Recursive)
	if err != nil {
		code := "invalid_argument"
		if err == errNotFound {
			code, err = "not_found", fmt.Errorf("path %q does not exist", req.Path)
		}
		out.end(code, err)
		return
	}
	defer wt.stop()
	// WatchDirResponse's oneof is its own field, not a nested event's.
	out.send(0, map[string]any{"start": map[string]any{}})
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(watchKeepalive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-r.Context().Done():
				wt.stop() // ends the loop below
				return
			case <-t.C:
				out.send(0, map[string]any{"keepalive": map[string]any{}})
			}
		}
	}()
	for {
		ev, ok := wt.next()
		if !ok {
			break
		}
		if strings.HasPrefix(path.Base(ev.Name), sandbox.UploadPrefix) {
			continue // the files API's own temporary file, renamed onto its name next
		}
		out.send(0, map[string]any{"filesystem": map[string]any{"name": path.Clean(ev.Name), "type": ev.Type}})
	}
	if r.Context().Err() == nil {
		out.end("", nil)
	}
}

// maxWatcherEvents bounds the events a polled watcher holds between two calls of
// GetWatcherEvents: past it, new events are dropped (a directory that changes that
// fast is better listed again).
const maxWatcherEvents = 10_000

// polledWatcher is a watcher of CreateWatcher (the Python SDK's watch_dir), whose
// events wait for GetWatcherEvents.
type polledWatcher struct {
	w       *watcher
	mu      sync.Mutex
	events  []map[string]any
	dropped bool
}

func (s *Server) createWatcher(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	var req struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	wt, err := startWatcher(r, sess, sandboxPath(req.Path), req.Recursive)
	if err != nil {
		fsError(w, req.Path, err)
		return
	}
	pw := &polledWatcher{w: wt}
	go func() {
		for {
			ev, ok := wt.next()
			if !ok {
				return
			}
			if strings.HasPrefix(path.Base(ev.Name), sandbox.UploadPrefix) {
				continue
			}
			pw.mu.Lock()
			if len(pw.events) < maxWatcherEvents {
				pw.events = append(pw.events, map[string]any{"name": path.Clean(ev.Name), "type": ev.Type})
			} else {
				pw.dropped = true
			}
			pw.mu.Unlock()
		}
	}()
	id := newToken()[:16]
	b.ctxMu.Lock()
	if b.watchers == nil {
		b.watchers = map[string]*polledWatcher{}
	}
	b.watchers[id] = pw
	b.ctxMu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"watcherId": id})
}

func (b *box) watcher(id string) *polledWatcher {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	return b.watchers[id]
}

func (s *Server) getWatcherEvents(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		WatcherID string `json:"watcherId"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	pw := b.watcher(req.WatcherID)
	if pw == nil {
		connectError(w, "not_found", fmt.Sprintf("watcher %q not found", req.WatcherID))
		return
	}
	pw.mu.Lock()
	events, dropped := pw.events, pw.dropped
	pw.events, pw.dropped = nil, false
	pw.mu.Unlock()
	if dropped {
		connectError(w, "resource_exhausted", fmt.Sprintf("more than %d events since the last call: some were dropped; list the directory again", maxWatcherEvents))
		return
	}
	if events == nil {
		events = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

func (s *Server) removeWatcher(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		WatcherID string `json:"watcherId"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	b.ctxMu.Lock()
	pw := b.watchers[req.WatcherID]
	delete(b.watchers, req.WatcherID)
	b.ctxMu.Unlock()
	if pw == nil {
		connectError(w, "not_found", fmt.Sprintf("watcher %q not found", req.WatcherID))
		return
	}
	pw.w.stop()
	writeJSON(w, http.StatusOK, map[string]any{})
}
