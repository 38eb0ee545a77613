package e2b

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// E2B's working directory, /home/user, is the session's work dir, /work: envd's
// paths under /home/user name files of /work, and a command's default directory is
// /work. The sandbox's root file system is the image's, read-only; /work and /tmp
// are its writable tmpfs mounts.
const (
	e2bHome = "/home/user"
	workDir = "/work"
)

// sandboxPath maps an E2B path to the sandbox's: /home/user is /work, a relative
// path is relative to it.
func sandboxPath(p string) string {
	switch {
	case p == "" || p == "~":
		return workDir
	case strings.HasPrefix(p, "~/"):
		return path.Join(workDir, p[2:])
	case !strings.HasPrefix(p, "/"):
		return path.Join(workDir, p)
	}
	// Cleaned first: /home/user/../../etc is /etc, not a path under /work.
	p = path.Clean(p)
	if p == e2bHome || strings.HasPrefix(p, e2bHome+"/") {
		return workDir + strings.TrimPrefix(p, e2bHome)
	}
	return p
}

// workPath is p as a path inside the work dir, for the session's file calls; only
// files there (and so under /home/user) are reachable through envd's file API.
func workPath(p string) (string, error) {
	sp := sandboxPath(p)
	if sp == workDir {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(sp, workDir+"/")
	if !ok {
		return "", fmt.Errorf("%q is outside /home/user (the sandbox's /work): codeexec's file API reaches files there only", p)
	}
	return rel, nil
}

// e2bPath is the E2B name of a path in the work dir.
func e2bPath(rel string) string { return path.Join(e2bHome, rel) }

// commands are a box's running and finished commands, by pid.
type commands struct {
	mu   sync.Mutex
	byID map[uint32]*command
}

type command struct {
	pid   uint32
	cfg   processConfig
	tag   string
	p     *sandbox.Process
	stdin *io.PipeWriter // nil: the command got an empty stdin
}

func (b *box) cmds() *commands {
	b.cmdOnce.Do(func() { b.commands = &commands{byID: map[uint32]*command{}} })
	return b.commands
}

// envd serves the sandbox's envd API (port 49983): process.Process and
// filesystem.Filesystem over the Connect protocol with JSON, and /files.
func (s *Server) envd(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	switch r.URL.Path {
	case "/files":
		switch r.Method {
		case http.MethodGet:
			s.download(w, r, sess)
		case http.MethodPost:
			s.upload(w, r, sess)
		default:
			writeError(w, http.StatusMethodNotAllowed, "/files takes GET and POST")
		}
	case "/process.Process/Start":
		s.processStart(w, r, b, sess)
	case "/process.Process/List":
		s.processList(w, r, b)
	case "/process.Process/SendSignal":
		s.processSignal(w, r, b)
	case "/process.Process/SendInput":
		s.processInput(w, r, b)
	case "/process.Process/CloseStdin":
		s.processCloseStdin(w, r, b)
	case "/filesystem.Filesystem/ListDir":
		s.listDir(w, r, sess)
	case "/filesystem.Filesystem/Stat":
		s.stat(w, r, sess)
	case "/filesystem.Filesystem/Remove":
		s.remove(w, r, sess)
	case "/filesystem.Filesystem/MakeDir":
		s.makeDir(w, r, sess)
	case "/filesystem.Filesystem/Move":
		s.move(w, r, sess)
	default:
		connectError(w, "unimplemented", fmt.Sprintf("%s is not supported by codeexec", r.URL.Path))
	}
}

// connectCodes maps Connect's error codes to HTTP statuses for unary replies.
var connectCodes = map[string]int{"invalid_argument": 400, "already_exists": 409, "not_found": 404, "unimplemented": 501,
	"unavailable": 503, "internal": 500, "failed_precondition": 400, "unknown": 500}

// connectError answers a unary Connect call with an error.
func connectError(w http.ResponseWriter, code, msg string) {
	writeJSON(w, connectCodes[code], map[string]string{"code": code, "message": msg})
}

// readUnary decodes a unary Connect request's JSON body into v.
func readUnary(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		connectError(w, "invalid_argument", "invalid request: "+err.Error())
		return false
	}
	return true
}

// processConfig is process.ProcessConfig.
type processConfig struct {
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args"`
	Envs map[string]string `json:"envs,omitempty"`
	Cwd  *string           `json:"cwd,omitempty"`
}

type startRequest struct {
	Process processConfig   `json:"process"`
	PTY     json.RawMessage `json:"pty,omitempty"`
	Tag     *string         `json:"tag,omitempty"`
	Stdin   *bool           `json:"stdin,omitempty"`
}

// streamWriter of Connect: enveloped messages, one Write each, flushed.
type connectStream struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (c *connectStream) send(flags byte, v any) {
	data, _ := json.Marshal(v)
	var head [5]byte
	head[0] = flags
	binary.BigEndian.PutUint32(head[1:], uint32(len(data)))
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.w.Write(append(head[:], data...))
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *connectStream) event(ev any) { c.send(0, map[string]any{"event": ev}) }

// end ends the stream, with err's message as a Connect error when it is not nil.
func (c *connectStream) end(code string, err error) {
	if err == nil {
		c.send(2, map[string]any{})
		return
	}
	c.send(2, map[string]any{"error": map[string]string{"code": code, "message": err.Error()}})
}

// outWriter sends a command's output as data events.
type outWriter struct {
	c   *connectStream
	key string
}

func (o outWriter) Write(p []byte) (int, error) {
	o.c.event(map[string]any{"data": map[string][]byte{o.key: p}})
	return len(p), nil
}

func (s *Server) processStart(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	// A streaming call's request is one enveloped message.
	var head [5]byte
	body := http.MaxBytesReader(w, r.Body, 1<<20)
	if _, err := io.ReadFull(body, head[:]); err != nil {
		connectError(w, "invalid_argument", "invalid request envelope: "+err.Error())
		return
	}
	msg := make([]byte, binary.BigEndian.Uint32(head[1:]))
	var req startRequest
	_, err := io.ReadFull(body, msg)
	if err == nil {
		err = json.Unmarshal(msg, &req)
	}
	if err != nil {
		connectError(w, "invalid_argument", "invalid request: "+err.Error())
		return
	}
	if len(req.PTY) > 0 && string(req.PTY) != "null" {
		connectError(w, "unimplemented", "codeexec does not give commands a terminal (pty)")
		return
	}
	env := []string{}
	for _, m := range []map[string]string{b.envs, req.Process.Envs} {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	dir := workDir
	if req.Process.Cwd != nil {
		dir = sandboxPath(*req.Process.Cwd)
	}
	c := &command{cfg: req.Process}
	if req.Tag != nil {
		c.tag = *req.Tag
	}
	out := &connectStream{w: w}
	cmd := &sandbox.Command{Args: append([]string{req.Process.Cmd}, req.Process.Args...), Env: env, Dir: dir,
		Stdout: outWriter{out, "stdout"}, Stderr: outWriter{out, "stderr"}}
	if req.Stdin != nil && *req.Stdin {
		pr, pw := io.Pipe()
		cmd.Stdin, c.stdin = pr, pw
	}
	w.Header().Set("Content-Type", "application/connect+json")
	// The headers go first: output may come as soon as the command starts.
	w.WriteHeader(http.StatusOK)
	p, err := sess.Start(r.Context(), cmd)
	if err != nil {
		out.end("invalid_argument", err)
		return
	}
	c.p, c.pid = p, uint32(p.ID())
	t := b.cmds()
	t.mu.Lock()
	t.byID[c.pid] = c
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.byID, c.pid)
		t.mu.Unlock()
		if c.stdin != nil {
			c.stdin.Close()
		}
	}()
	out.event(map[string]any{"start": map[string]uint32{"pid": c.pid}})
	st, werr := p.Wait()
	if werr != nil {
		out.end("internal", werr)
		return
	}
	end := map[string]any{"exitCode": st.Code, "exited": st.Signal == 0, "status": st.String()}
	if st.Signal != 0 {
		end["exitCode"] = -1
	}
	out.event(map[string]any{"end": end})
	out.end("", nil)
}

// processSelector is process.ProcessSelector.
type processSelector struct {
	PID *uint32 `json:"pid,omitempty"`
	Tag *string `json:"tag,omitempty"`
}

func (b *box) command(sel processSelector) (*command, error) {
	t := b.cmds()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.byID {
		if (sel.PID != nil && c.pid == *sel.PID) || (sel.Tag != nil && c.tag == *sel.Tag) {
			return c, nil
		}
	}
	return nil, errors.New("process not found")
}

func (s *Server) processList(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct{}
	if !readUnary(w, r, &req) {
		return
	}
	t := b.cmds()
	t.mu.Lock()
	list := []map[string]any{}
	for _, c := range t.byID {
		info := map[string]any{"config": c.cfg, "pid": c.pid}
		if c.tag != "" {
			info["tag"] = c.tag
		}
		list = append(list, info)
	}
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"processes": list})
}

func (s *Server) processSignal(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		Process processSelector `json:"process"`
		Signal  json.RawMessage `json:"signal"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	sig := syscall.SIGKILL
	switch strings.Trim(string(req.Signal), `"`) {
	case "SIGNAL_SIGTERM", "15":
		sig = syscall.SIGTERM
	case "SIGNAL_SIGKILL", "9":
	default:
		connectError(w, "invalid_argument", fmt.Sprintf("signal %s: SIGNAL_SIGTERM and SIGNAL_SIGKILL are supported", req.Signal))
		return
	}
	c, err := b.command(req.Process)
	if err != nil {
		connectError(w, "not_found", err.Error())
		return
	}
	if err := c.p.Signal(sig); err != nil && !errors.Is(err, sandbox.ErrProcessDone) {
		connectError(w, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) processInput(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		Process processSelector `json:"process"`
		Input   struct {
			Stdin []byte `json:"stdin"`
			PTY   []byte `json:"pty"`
		} `json:"input"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	c, err := b.command(req.Process)
	if err != nil {
		connectError(w, "not_found", err.Error())
		return
	}
	if c.stdin == nil {
		connectError(w, "failed_precondition", "the process was started without stdin")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := c.stdin.Write(req.Input.Stdin); done <- err }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = errors.New("the process does not read its stdin")
	}
	if err != nil {
		connectError(w, "failed_precondition", "send input: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) processCloseStdin(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		Process processSelector `json:"process"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	c, err := b.command(req.Process)
	if err != nil {
		connectError(w, "not_found", err.Error())
		return
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// maxDownload bounds a file read through /files.
const maxDownload = 256 << 20

func (s *Server) download(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	p := r.URL.Query().Get("path")
	rel, err := workPath(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	data, err := sess.ReadFile(rel, maxDownload)
	if err != nil {
		writeFileError(w, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func writeFileError(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusNotFound, fmt.Sprintf("path %q does not exist", p))
	case errors.Is(err, sandbox.ErrSessionEnded):
		writeError(w, http.StatusBadGateway, "the sandbox has ended")
	case errors.Is(err, job.ErrStorageLimit):
		writeError(w, http.StatusInsufficientStorage, err.Error())
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q: %v", p, err))
	}
}

// writtenFile is envd's reply for each uploaded file.
type writtenFile struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Path string `json:"path"`
}

// maxUpload bounds a /files upload.
const maxUpload = 256 << 20

func (s *Server) upload(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	p := r.URL.Query().Get("path")
	body := http.MaxBytesReader(w, r.Body, maxUpload)
	var files []writtenFile
	put := func(name string, data []byte) bool {
		rel, err := workPath(name)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return false
		}
		if err := sess.WriteFile(rel, data); err != nil {
			writeFileError(w, name, err)
			return false
		}
		files = append(files, writtenFile{Name: path.Base(rel), Type: "file", Path: e2bPath(rel)})
		return true
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, "multipart body: "+err.Error())
				return
			}
			name := p
			if name == "" {
				name = part.FileName()
			}
			data, err := io.ReadAll(part)
			if err != nil {
				writeError(w, http.StatusBadRequest, "multipart body: "+err.Error())
				return
			}
			if !put(name, data) {
				return
			}
		}
	} else {
		if p == "" {
			writeError(w, http.StatusBadRequest, "path is required")
			return
		}
		data, err := io.ReadAll(body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
		if !put(p, data) {
			return
		}
	}
	writeJSON(w, http.StatusOK, files)
}

// entryInfo is filesystem.EntryInfo.
type entryInfo struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size,string"`
}

// entries lists what the work dir holds at rel, to depth levels, from the
// session's file list (files only: directories are named by the files in them).
func entries(sess *session.Session, rel string, depth int) ([]entryInfo, bool, error) {
	files, _, err := sess.Files()
	if err != nil {
		return nil, false, err
	}
	prefix := ""
	if rel != "." {
		prefix = rel + "/"
	}
	seen := map[string]bool{}
	var out []entryInfo
	found := rel == "."
	for _, f := range files {
		if f.Path == rel {
			return []entryInfo{{Name: path.Base(rel), Type: "FILE_TYPE_FILE", Path: e2bPath(rel), Size: f.Size}}, true, nil
		}
		sub, ok := strings.CutPrefix(f.Path, prefix)
		if !ok {
			continue
		}
		found = true
		parts := strings.Split(sub, "/")
		for i := 0; i < len(parts) && i < depth; i++ {
			p := prefix + strings.Join(parts[:i+1], "/")
			if seen[p] {
				continue
			}
			seen[p] = true
			e := entryInfo{Name: parts[i], Type: "FILE_TYPE_DIRECTORY", Path: e2bPath(p)}
			if i == len(parts)-1 {
				e.Type, e.Size = "FILE_TYPE_FILE", f.Size
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b entryInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, found, nil
}

func (s *Server) listDir(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path  string `json:"path"`
		Depth int    `json:"depth"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	if req.Depth < 1 {
		req.Depth = 1
	}
	rel, err := workPath(req.Path)
	if err != nil {
		// Outside the work dir: the image's read-only tree, or /tmp, listed by the
		// sandbox's own find.
		s.listTree(w, r, sess, req.Path, req.Depth)
		return
	}
	list, found, err := entries(sess, rel, req.Depth)
	if err != nil {
		connectError(w, "internal", err.Error())
		return
	}
	if !found {
		connectError(w, "not_found", fmt.Sprintf("path %q does not exist", req.Path))
		return
	}
	if list == nil {
		list = []entryInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": list})
}

func (s *Server) stat(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	rel, err := workPath(req.Path)
	if err != nil {
		connectError(w, "invalid_argument", err.Error())
		return
	}
	if rel == "." {
		writeJSON(w, http.StatusOK, map[string]any{"entry": entryInfo{Name: "user", Type: "FILE_TYPE_DIRECTORY", Path: e2bHome}})
		return
	}
	list, found, err := entries(sess, rel, 1)
	switch {
	case err != nil:
		connectError(w, "internal", err.Error())
	case !found:
		connectError(w, "not_found", fmt.Sprintf("path %q does not exist", req.Path))
	case len(list) == 1 && list[0].Path == e2bPath(rel):
		writeJSON(w, http.StatusOK, map[string]any{"entry": list[0]})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"entry": entryInfo{Name: path.Base(rel), Type: "FILE_TYPE_DIRECTORY", Path: e2bPath(rel)}})
	}
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	rel, err := workPath(req.Path)
	if err != nil {
		connectError(w, "invalid_argument", err.Error())
		return
	}
	if err := sess.RemoveFile(rel); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			connectError(w, "not_found", fmt.Sprintf("path %q does not exist", req.Path))
			return
		}
		connectError(w, "invalid_argument", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// runTool runs argv in the sandbox as a command (mkdir, mv: the session's file
// calls do not make directories or rename) and returns its stderr when it fails.
func runTool(ctx context.Context, sess *session.Session, argv ...string) error {
	var stderr bytes.Buffer
	p, err := sess.Start(ctx, &sandbox.Command{Args: argv, Stderr: &limitedBuffer{b: &stderr, max: 4 << 10}})
	if err != nil {
		return err
	}
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if st.Code != 0 {
		return fmt.Errorf("%s: %s", argv[0], strings.TrimSpace(stderr.String()))
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (s *Server) makeDir(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	rel, err := workPath(req.Path)
	if err != nil {
		connectError(w, "invalid_argument", err.Error())
		return
	}
	// E2B answers already_exists for a directory that is there; the SDK maps it
	// to false.
	if runTool(r.Context(), sess, "test", "!", "-e", path.Join(workDir, rel)) != nil {
		connectError(w, "already_exists", fmt.Sprintf("%q already exists", req.Path))
		return
	}
	if err := runTool(r.Context(), sess, "mkdir", "-p", "--", path.Join(workDir, rel)); err != nil {
		connectError(w, "invalid_argument", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entry": entryInfo{Name: path.Base(e2bPath(rel)), Type: "FILE_TYPE_DIRECTORY", Path: e2bPath(rel)}})
}

func (s *Server) move(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	src, err := workPath(req.Source)
	if err == nil {
		var dst string
		if dst, err = workPath(req.Destination); err == nil {
			err = runTool(r.Context(), sess, "mv", "-T", "--", path.Join(workDir, src), path.Join(workDir, dst))
			if err == nil {
				writeJSON(w, http.StatusOK, map[string]any{"entry": entryInfo{Name: path.Base(dst), Type: "FILE_TYPE_FILE", Path: e2bPath(dst)}})
				return
			}
		}
	}
	connectError(w, "invalid_argument", err.Error())
}

// maxListing bounds the output of a find that lists a directory.
const maxListing = 4 << 20

// listTree lists dir (a sandbox path outside the work dir) to depth levels with
// find, run in the sandbox as a command: the session's file calls reach the work
// dir only. Paths under /work are named as E2B names them, under /home/user.
func (s *Server) listTree(w http.ResponseWriter, r *http.Request, sess *session.Session, dir string, depth int) {
	var out, stderr bytes.Buffer
	p, err := sess.Start(r.Context(), &sandbox.Command{
		Args:   []string{"find", sandboxPath(dir), "-mindepth", "1", "-maxdepth", fmt.Sprint(depth), "-printf", `%y\t%s\t%p\n`},
		Stdout: &limitedBuffer{b: &out, max: maxListing}, Stderr: &limitedBuffer{b: &stderr, max: 4 << 10}})
	if err != nil {
		connectError(w, "internal", "list: "+err.Error())
		return
	}
	st, err := p.Wait()
	if err != nil {
		connectError(w, "internal", "list: "+err.Error())
		return
	}
	if st.Code != 0 && out.Len() == 0 {
		connectError(w, "not_found", fmt.Sprintf("list %q: %s", dir, strings.TrimSpace(stderr.String())))
		return
	}
	list := []entryInfo{}
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		kind, rest, _ := strings.Cut(line, "\t")
		size, name, ok := strings.Cut(rest, "\t")
		if !ok {
			continue
		}
		e := entryInfo{Name: path.Base(name), Path: name, Type: "FILE_TYPE_FILE"}
		fmt.Sscan(size, &e.Size)
		switch kind {
		case "d":
			e.Type = "FILE_TYPE_DIRECTORY"
		case "l":
			e.Type = "FILE_TYPE_SYMLINK"
		}
		if rel, ok := strings.CutPrefix(name, workDir+"/"); ok {
			e.Path = e2bPath(rel)
		}
		list = append(list, e)
	}
	slices.SortFunc(list, func(a, b entryInfo) int { return strings.Compare(a.Path, b.Path) })
	writeJSON(w, http.StatusOK, map[string]any{"entries": list})
}
