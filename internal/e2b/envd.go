package e2b

import (
	"bytes"
	"compress/gzip"
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

// E2B's working directory, /home/user, is the session's work dir: an E2B
// sandbox's session shows it there (sandbox.SessionOptions.Home) as well as at
// /work, and starts its processes there, so that the paths a program prints are the
// ones envd's calls take. The sandbox's root file system is the image's, read-only;
// the work dir and /tmp are its writable tmpfs mounts.
const (
	e2bHome = "/home/user"
	e2bUser = "user" // the sandbox user's name in an E2B sandbox (sandbox.SessionOptions.Home)
	workDir = "/work"
)

// sandboxPath is an E2B path as a clean absolute path in the sandbox: a relative
// path is relative to /home/user, as envd's.
func sandboxPath(p string) string {
	switch {
	case p == "" || p == "~":
		return e2bHome
	case strings.HasPrefix(p, "~/"):
		return path.Join(e2bHome, p[2:])
	case !strings.HasPrefix(p, "/"):
		return path.Join(e2bHome, p)
	}
	// Cleaned: /home/user/../../etc is /etc, not a path in the work dir.
	return path.Clean(p)
}

// workPath is p as a path inside the work dir (under /home/user, or /work), for the
// session's file calls; ok is false for a path elsewhere in the sandbox.
func workPath(p string) (rel string, ok bool) {
	sp := sandboxPath(p)
	for _, dir := range []string{e2bHome, workDir} {
		if sp == dir {
			return ".", true
		}
		if rel, ok := strings.CutPrefix(sp, dir+"/"); ok {
			return rel, true
		}
	}
	return "", false
}

// commands are a box's running and finished commands, by pid.
type commands struct {
	mu   sync.Mutex
	byID map[uint32]*command
}

// command is a process that Start began. It runs until it exits or the sandbox
// ends, whoever listens: a client that leaves Start's stream (the SDK's disconnect)
// leaves it running, and Connect listens again.
type command struct {
	pid   uint32
	cfg   processConfig
	tag   string
	p     *sandbox.Process
	stdin *io.PipeWriter // nil: the command got an empty stdin

	mu      sync.Mutex
	subs    []*connectStream // the streams its output goes to
	pending []any            // its output before started
	live    bool             // started: its pid is known
	end     map[string]any   // its end event, once it has exited
	done    chan struct{}    // closed once it has exited
}

// started sends Start's stream the start event, then what the command printed
// before its pid was known, and makes it a listener.
func (c *command) started(out *connectStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out.event(map[string]any{"start": map[string]uint32{"pid": c.pid}})
	for _, ev := range c.pending {
		out.event(ev)
	}
	c.pending, c.live = nil, true
	c.subs = append(c.subs, out)
}

// listen adds out to the streams the command's output goes to, with the start
// event first; it returns false once the command has ended.
func (c *command) listen(out *connectStream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.end != nil {
		return false
	}
	out.event(map[string]any{"start": map[string]uint32{"pid": c.pid}})
	c.subs = append(c.subs, out)
	return true
}

func (c *command) unlisten(out *connectStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = slices.DeleteFunc(c.subs, func(s *connectStream) bool { return s == out })
}

// broadcast sends an event to every listener.
func (c *command) broadcast(ev any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.pending = append(c.pending, ev)
		return
	}
	for _, s := range c.subs {
		s.event(ev)
	}
}

// finish records the end event and sends it to every listener.
func (c *command) finish(end map[string]any) {
	c.mu.Lock()
	c.end = end
	for _, s := range c.subs {
		s.event(map[string]any{"end": end})
	}
	c.mu.Unlock()
	close(c.done)
}

func (b *box) cmds() *commands {
	b.cmdOnce.Do(func() { b.commands = &commands{byID: map[uint32]*command{}} })
	return b.commands
}

// envd serves the sandbox's envd API (port 49983): process.Process and
// filesystem.Filesystem over the Connect protocol with JSON, and /files.
func (s *Server) envd(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	if u := envdUser(r); u != "" && u != e2bUser {
		refuseUser(w, r, u)
		return
	}
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
	case "/process.Process/Connect":
		s.processConnect(w, r, b)
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
	case "/filesystem.Filesystem/WatchDir":
		s.watchDir(w, r, sess)
	case "/filesystem.Filesystem/CreateWatcher":
		s.createWatcher(w, r, b, sess)
	case "/filesystem.Filesystem/GetWatcherEvents":
		s.getWatcherEvents(w, r, b)
	case "/filesystem.Filesystem/RemoveWatcher":
		s.removeWatcher(w, r, b)
	default:
		connectError(w, "unimplemented", fmt.Sprintf("%s is not supported by codeexec", r.URL.Path))
	}
}

// envdUser is the user a call asks to act as: the SDKs' user option, sent as the
// Basic user name of Authorization (the files API's as its username parameter); ""
// when none is given.
func envdUser(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	if r.URL.Path == "/files" {
		return r.URL.Query().Get("username")
	}
	return ""
}

// refuseUser answers a call that asks for user u, who is not the sandbox's one
// user, in the shape the call's client reads. Refused rather than served as the
// sandbox user: a program asking for root would otherwise carry on without it
// and fail later, further from the cause.
func refuseUser(w http.ResponseWriter, r *http.Request, u string) {
	msg := fmt.Sprintf("user %q: a codeexec sandbox has one user, %q, and no root or sudo (see the README's Using the E2B SDKs); omit the user option", u, e2bUser)
	switch {
	case r.URL.Path == "/files":
		writeError(w, http.StatusForbidden, msg)
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/connect+"):
		streamError(w, "permission_denied", msg)
	default:
		connectError(w, "permission_denied", msg)
	}
}

// connectCodes maps Connect's error codes to HTTP statuses for unary replies.
var connectCodes = map[string]int{"permission_denied": 403, "invalid_argument": 400, "already_exists": 409, "not_found": 404, "unimplemented": 501,
	"unavailable": 503, "resource_exhausted": 429, "internal": 500, "failed_precondition": 400, "unknown": 500}

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

// outWriter sends a command's output as data events to its listeners.
type outWriter struct {
	c   *command
	key string
}

func (o outWriter) Write(p []byte) (int, error) {
	o.c.broadcast(map[string]any{"data": map[string][]byte{o.key: p}})
	return len(p), nil
}

// readStreamRequest decodes a server-streaming call's request: one enveloped
// message.
func readStreamRequest(w http.ResponseWriter, r *http.Request, v any) bool {
	const maxRequest = 1 << 20
	var head [5]byte
	body := http.MaxBytesReader(w, r.Body, maxRequest)
	if _, err := io.ReadFull(body, head[:]); err != nil {
		streamError(w, "invalid_argument", "invalid request envelope: "+err.Error())
		return false
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > maxRequest {
		streamError(w, "invalid_argument", fmt.Sprintf("a request of %d bytes: more than %d", n, maxRequest))
		return false
	}
	msg := make([]byte, n)
	_, err := io.ReadFull(body, msg)
	if err == nil {
		err = json.Unmarshal(msg, v)
	}
	if err != nil {
		streamError(w, "invalid_argument", "invalid request: "+err.Error())
		return false
	}
	return true
}

// streamError answers a streaming Connect call with an error before any message:
// in the end of the stream, where the SDKs read a streaming call's error (an HTTP
// error status is only "unknown" to them).
func streamError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
	(&connectStream{w: w}).end(code, errors.New(msg))
}

// follow streams c's output to out, a listener of c, until c ends (then the
// stream ends as E2B's: broken when the sandbox is gone) or the client leaves (c
// runs on).
func (s *Server) follow(w http.ResponseWriter, r *http.Request, b *box, c *command, out *connectStream) {
	select {
	case <-c.done:
	case <-r.Context().Done():
		c.unlisten(out)
		return
	}
	if s.gone(b) {
		// Killed (or timed out) while the command ran: the stream breaks, as E2B's,
		// and the SDK, finding the sandbox gone, says so.
		panic(http.ErrAbortHandler)
	}
	out.end("", nil)
}

func (s *Server) processConnect(w http.ResponseWriter, r *http.Request, b *box) {
	var req struct {
		Process processSelector `json:"process"`
	}
	if !readStreamRequest(w, r, &req) {
		return
	}
	c, err := b.command(req.Process)
	if err != nil {
		streamError(w, "not_found", err.Error())
		return
	}
	out := &connectStream{w: w}
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
	if !c.listen(out) {
		out.end("not_found", fmt.Errorf("process %d has ended", c.pid))
		return
	}
	s.follow(w, r, b, c, out)
}

func (s *Server) processStart(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	var req startRequest
	if !readStreamRequest(w, r, &req) {
		return
	}
	if len(req.PTY) > 0 && string(req.PTY) != "null" {
		streamError(w, "unimplemented", "codeexec does not give commands a terminal (pty): run commands without one")
		return
	}
	env := []string{}
	for _, m := range []map[string]string{b.env(), req.Process.Envs} {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	dir := e2bHome
	if req.Process.Cwd != nil {
		dir = sandboxPath(*req.Process.Cwd)
	}
	c := &command{cfg: req.Process, done: make(chan struct{})}
	if req.Tag != nil {
		c.tag = *req.Tag
	}
	out := &connectStream{w: w}
	cmd := &sandbox.Command{Args: append([]string{req.Process.Cmd}, req.Process.Args...), Env: env, Dir: dir,
		Stdout: outWriter{c, "stdout"}, Stderr: outWriter{c, "stderr"}, Network: b.network}
	if req.Stdin != nil && *req.Stdin {
		pr, pw := io.Pipe()
		cmd.Stdin, c.stdin = pr, pw
	}
	w.Header().Set("Content-Type", "application/connect+json")
	// The headers go first: output may come as soon as the command starts.
	w.WriteHeader(http.StatusOK)
	// Not r's context: the command outlives this stream when the client leaves it.
	p, err := sess.Start(context.WithoutCancel(r.Context()), cmd)
	if err != nil {
		out.end("invalid_argument", err)
		return
	}
	t := b.cmds()
	t.mu.Lock()
	// The pid the sandbox's programs see ($!, ps, kill -0): the SDK hands it to
	// them. It is unique among the sandbox's live processes, and a pid namespace
	// hands numbers out in turn, so it is not reused while c is in the table.
	c.p, c.pid = p, uint32(p.Pid())
	t.byID[c.pid] = c
	t.mu.Unlock()
	c.started(out)
	go func() {
		st, werr := p.Wait()
		t.mu.Lock()
		if t.byID[c.pid] == c {
			delete(t.byID, c.pid)
		}
		t.mu.Unlock()
		if c.stdin != nil {
			c.stdin.Close()
		}
		end := map[string]any{"exitCode": st.Code, "exited": st.Signal == 0, "status": st.String()}
		if st.Signal != 0 {
			end["exitCode"] = -1
		}
		if werr != nil {
			end = map[string]any{"exitCode": -1, "exited": false, "status": werr.Error()}
		}
		c.finish(end)
	}()
	s.follow(w, r, b, c, out)
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
	if sig == syscall.SIGKILL {
		// Gone once the call returns, as E2B's: a `kill -0 <pid>` that follows must
		// not find it, as it would while the process waits to be reaped.
		select {
		case <-c.p.Exited():
		case <-time.After(killReapWait):
		case <-r.Context().Done():
		}
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

// killReapWait bounds how long SendSignal's SIGKILL waits for the process to be
// reaped; a frozen or starved sandbox may take longer, and the call returns anyway.
const killReapWait = 5 * time.Second

// maxDownload bounds a file read through /files.
const maxDownload = 256 << 20

func (s *Server) download(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	p := r.URL.Query().Get("path")
	var data []byte
	var err error
	if rel, ok := workPath(p); ok {
		data, err = sess.ReadFile(rel, maxDownload)
	} else {
		data, err = readInSandbox(r.Context(), sess, sandboxPath(p))
	}
	if err != nil {
		writeFileError(w, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(data)
		_ = zw.Close()
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// acceptsGzip reports whether an Accept-Encoding header takes gzip (the SDKs send
// "gzip" for read's gzip option).
func acceptsGzip(h string) bool {
	for part := range strings.SplitSeq(h, ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}

// uploadBody is an upload's body, decompressed when its Content-Encoding is gzip
// (write's gzip option), at most maxUpload bytes either way.
func uploadBody(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	body := http.MaxBytesReader(w, r.Body, maxUpload)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		return &capReader{r: zr, left: maxUpload}, nil
	default:
		return nil, fmt.Errorf("Content-Encoding %q is not supported: send gzip or none", enc)
	}
}

// capReader fails a read past left bytes: a small gzip body may inflate beyond
// what an upload may hold.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("the upload inflates to more than %d bytes", maxUpload)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func writeFileError(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, errNotFound):
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
	body, err := uploadBody(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var files []writtenFile
	put := func(name string, data []byte) bool {
		var err error
		if rel, ok := workPath(name); ok {
			err = sess.WriteFile(rel, data)
		} else {
			err = writeInSandbox(r.Context(), sess, sandboxPath(name), data)
		}
		if err != nil {
			writeFileError(w, name, err)
			return false
		}
		sp := sandboxPath(name)
		files = append(files, writtenFile{Name: path.Base(sp), Type: "file", Path: e2bName(sp)})
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
				// The whole name, with its directories: FileName() keeps the base only.
				_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
				name = dp["filename"]
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

// readInSandbox reads p (a sandbox path outside the work dir) with the sandbox's
// cat, as the sandbox user: the session's file calls reach the work dir only.
func readInSandbox(ctx context.Context, sess *session.Session, p string) ([]byte, error) {
	var out, stderr bytes.Buffer
	proc, err := sess.Start(ctx, &sandbox.Command{Args: []string{"cat", "--", p},
		Stdout: &limitedBuffer{b: &out, max: maxDownload + 1}, Stderr: &limitedBuffer{b: &stderr, max: 4 << 10}})
	if err != nil {
		return nil, err
	}
	st, err := proc.Wait()
	switch {
	case err != nil:
		return nil, err
	case st.Code != 0 && strings.Contains(stderr.String(), "No such file or directory"):
		return nil, errNotFound
	case st.Code != 0:
		return nil, fmt.Errorf("cat: %s", strings.TrimSpace(stderr.String()))
	case out.Len() > maxDownload:
		return nil, fmt.Errorf("the file is over %d bytes, more than one download takes", maxDownload)
	}
	return out.Bytes(), nil
}

// writeInSandbox writes data to p (a sandbox path outside the work dir), making its
// directories, with the sandbox's own tools, as the sandbox user.
func writeInSandbox(ctx context.Context, sess *session.Session, p string, data []byte) error {
	var stderr bytes.Buffer
	proc, err := sess.Start(ctx, &sandbox.Command{
		Args:  []string{"/bin/sh", "-c", `mkdir -p -- "$(dirname -- "$1")" && cat > "$1"`, "sh", p},
		Stdin: bytes.NewReader(data), Stderr: &limitedBuffer{b: &stderr, max: 4 << 10}})
	if err != nil {
		return err
	}
	st, err := proc.Wait()
	if err != nil {
		return err
	}
	if st.Code != 0 {
		return fmt.Errorf("write: %s", strings.TrimSpace(stderr.String()))
	}
	return nil
}
