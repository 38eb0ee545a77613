package e2b

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/jsonerr"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// dataPlane serves a request for the sandbox its E2b-Sandbox-Id header names. The
// sandbox id, 128 random bits that only its owner learns, addresses it; envd's calls
// and /execute must also carry its access token. The code interpreter's /contexts
// calls carry none in the SDKs, so the id alone admits them, as in E2B.
func (s *Server) dataPlane(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("E2b-Sandbox-Id")
	s.mu.Lock()
	b := s.boxes[id]
	s.mu.Unlock()
	// An unknown sandbox is a 502, as from E2B's proxy: the SDKs read it as a
	// sandbox that timed out or was killed (isRunning() is false on a 502 only).
	if b == nil {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("sandbox %q not found (it may have timed out or been killed)", id))
		return
	}
	sess, err := s.cfg.Sessions.Get(b.owner.Name, id)
	if err != nil {
		s.forget(id)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("sandbox %q not found (it may have timed out or been killed)", id))
		return
	}
	port := r.Header.Get("E2b-Sandbox-Port")
	tok := r.Header.Get("X-Access-Token")
	tokenOK := subtle.ConstantTimeCompare([]byte(tok), []byte(b.token)) == 1
	if tok != "" && !tokenOK {
		writeError(w, http.StatusUnauthorized, "the access token is not valid for this sandbox")
		return
	}
	switch port {
	case portInterpreter:
		switch {
		case r.URL.Path == "/execute" && r.Method == http.MethodPost:
			if !tokenOK {
				writeError(w, http.StatusUnauthorized, "X-Access-Token is required")
				return
			}
			s.handleExecute(w, r, b, sess)
		case r.URL.Path == "/contexts" && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, b.listContexts())
		case r.URL.Path == "/contexts" && r.Method == http.MethodPost:
			s.createContext(w, r, b, sess)
		case strings.HasPrefix(r.URL.Path, "/contexts/") && r.Method == http.MethodDelete:
			s.deleteContext(w, b, strings.TrimPrefix(r.URL.Path, "/contexts/"))
		case strings.HasPrefix(r.URL.Path, "/contexts/") && strings.HasSuffix(r.URL.Path, "/restart") && r.Method == http.MethodPost:
			s.restartContext(w, r, b, sess, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/contexts/"), "/restart"))
		case r.URL.Path == "/health":
			w.WriteHeader(http.StatusOK)
		default:
			writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s is not part of the code interpreter's API", r.Method, r.URL.Path))
		}
	case portEnvd:
		if r.URL.Path == "/health" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !tokenOK && r.URL.Query().Has("signature") {
			if err := checkExpiry(r, time.Now()); err != nil {
				writeError(w, http.StatusUnauthorized, err.Error())
				return
			}
			tokenOK = signedBy(r, b.token)
		}
		if !tokenOK {
			writeError(w, http.StatusUnauthorized, "X-Access-Token or a valid signature is required")
			return
		}
		s.envd(w, r, b, sess)
	default:
		writeError(w, http.StatusBadGateway, fmt.Sprintf("port %q of sandbox %q is not served: codeexec serves envd (49983) and the code interpreter (49999)", port, id))
	}
}

// codeContext is a code interpreter context as /contexts describes it.
type codeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

// defaultContext is the sandbox's session's own Python context.
var defaultContext = codeContext{ID: "default-python", Language: "python", Cwd: e2bHome}

// defaultJSContext is the sandbox's JavaScript context (box.jsContext), listed from
// the start as E2B's is, started at its first run.
var defaultJSContext = codeContext{ID: "default-javascript", Language: job.LangJavaScript, Cwd: e2bHome}

// pyContext is a context that POST /contexts made: another interpreter of the
// session, with its own variables.
type pyContext struct {
	info  codeContext
	c     *sandbox.Context
	mu    sync.Mutex // one run at a time, as the execution count needs
	count int
}

func (b *box) listContexts() []codeContext {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	out := []codeContext{defaultContext, defaultJSContext}
	for _, c := range b.contexts {
		out = append(out, c.info)
	}
	slices.SortFunc(out[2:], func(x, y codeContext) int { return strings.Compare(x.ID, y.ID) })
	return out
}

func (b *box) context(id string) *pyContext {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	return b.contexts[id]
}

// startContext starts an interpreter in sess with cwd as its working directory. A
// JavaScript context gets env, the sandbox's environment, for good as it starts:
// its Node, started at its first run, inherits that and the directory.
func startContext(ctx context.Context, sess *session.Session, info codeContext, env map[string]string) (*pyContext, error) {
	c, err := sess.NewContext(ctx)
	if err != nil {
		return nil, err
	}
	pc := &pyContext{info: info, c: c}
	// A bash context starts where a session's bash does (/work) unless told.
	if dir := sandboxPath(info.Cwd); dir != e2bHome || info.Language == job.LangBash || info.Language == job.LangJavaScript {
		chdir := &job.Request{Code: fmt.Sprintf("__import__('os').chdir(%q)", dir)}
		if info.Language == job.LangJavaScript {
			chdir.Kernel = &job.Kernel{BaseEnv: env}
		}
		if info.Language == job.LangBash {
			// A bash context keeps the directory its last run left.
			chdir = &job.Request{Code: "cd -- " + shellQuote(dir), Language: job.LangBash}
		}
		res, err := c.Run(ctx, chdir)
		if err == nil && res.Error != nil {
			err = fmt.Errorf("%s: %s", res.Error.Name, res.Error.Message)
		} else if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%s", strings.TrimSpace(res.Stderr))
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("cwd %q: %w", info.Cwd, err)
		}
	}
	return pc, nil
}

func (s *Server) createContext(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	var req struct {
		Language string `json:"language"`
		Cwd      string `json:"cwd"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid body: "+jsonerr.Describe(err, nil))
		return
	}
	lang, err := contextLanguage(req.Language)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Cwd == "" {
		req.Cwd = e2bHome
	}
	pc, err := startContext(r.Context(), sess, codeContext{ID: newToken()[:16], Language: lang, Cwd: req.Cwd}, b.env())
	if err != nil {
		writeError(w, http.StatusBadRequest, "create context: "+err.Error())
		return
	}
	b.ctxMu.Lock()
	if b.contexts == nil {
		b.contexts = map[string]*pyContext{}
	}
	b.contexts[pc.info.ID] = pc
	b.ctxMu.Unlock()
	writeJSON(w, http.StatusOK, pc.info)
}

func (s *Server) deleteContext(w http.ResponseWriter, b *box, id string) {
	b.ctxMu.Lock()
	pc := b.contexts[id]
	delete(b.contexts, id)
	b.ctxMu.Unlock()
	if pc == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("context %q not found", id))
		return
	}
	pc.c.Close()
	w.WriteHeader(http.StatusOK)
}

func (s *Server) restartContext(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session, id string) {
	old := b.context(id)
	if old == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("context %q not found", id))
		return
	}
	old.c.Close()
	pc, err := startContext(r.Context(), sess, old.info, b.env())
	b.ctxMu.Lock()
	if err != nil {
		delete(b.contexts, id)
	} else {
		b.contexts[id] = pc
	}
	b.ctxMu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "restart context: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

// executeBody is the body of POST /execute.
type executeBody struct {
	Code      string            `json:"code"`
	ContextID string            `json:"context_id,omitempty"`
	Language  string            `json:"language,omitempty"`
	EnvVars   map[string]string `json:"env_vars,omitempty"`
}

// ndjson writes one JSON object a line, flushing each, from several goroutines.
type ndjson struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	err error
	// quit stops the keepalive goroutine, which closes exited; both nil when it was
	// not started. Only the handler's goroutine touches them.
	quit, exited chan struct{}
}

func (n *ndjson) send(v any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		n.err = err
		return
	}
	if _, n.err = n.w.Write(append(b, '\n')); n.err == nil {
		if f, ok := n.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// keepaliveEvery is how often a quiet stream gets a keepalive line. The SDKs stop
// reading when their timeout passes but keep the connection open; only a write
// shows that they have gone (the connection is then reset).
const keepaliveEvery = time.Second

// startKeepalive sends a line of a type the SDKs ignore every keepaliveEvery until
// stopKeepalive, and calls gone once a write fails: the client has left.
func (n *ndjson) startKeepalive(gone func()) {
	n.quit, n.exited = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(n.exited)
		t := time.NewTicker(keepaliveEvery)
		defer t.Stop()
		for {
			select {
			case <-n.quit:
				return
			case <-t.C:
				n.send(map[string]any{"type": "keepalive"})
				n.mu.Lock()
				err := n.err
				n.mu.Unlock()
				if err != nil {
					gone()
					return
				}
			}
		}
	}()
}

// stopKeepalive ends what startKeepalive started, if it did, and waits for it:
// nothing writes to the reply once its handler has returned.
func (n *ndjson) stopKeepalive() {
	if n.quit != nil {
		close(n.quit)
		<-n.exited
	}
}

// lineStream sends what the program prints as E2B's stdout or stderr messages, as
// a notebook's stream shows it: whole lines (print writes a line's text and its
// newline apart), and a line's start once flushAfter passes without its end (a
// progress bar, a prompt). Rejected: buffering the program's stdout by lines,
// which would lose a partial line to a crash or a kill.
type lineStream struct {
	out  *ndjson
	kind string

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
}

// flushAfter is how long the start of a line waits for its end.
const flushAfter = 100 * time.Millisecond

func (l *lineStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 {
		l.out.send(map[string]any{"type": l.kind, "text": string(l.buf[:i+1])})
		l.buf = append([]byte(nil), l.buf[i+1:]...)
	}
	if len(l.buf) > 0 && l.timer == nil {
		l.timer = time.AfterFunc(flushAfter, l.flush)
	}
	return len(p), nil
}

// flush sends what is held; after the run's last write it leaves nothing to send.
func (l *lineStream) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.buf) > 0 {
		l.out.send(map[string]any{"type": l.kind, "text": string(l.buf)})
		l.buf = nil
	}
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request, b *box, sess *session.Session) {
	var req executeBody
	// The whole body, to its EOF: only then does the server watch the connection
	// and cancel r.Context() when the client goes, which interrupts the run.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid body: "+jsonerr.Describe(err, nil))
		return
	}
	lang, err := contextLanguage(req.Language)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var pc *pyContext
	switch {
	case req.ContextID == defaultJSContext.ID || req.ContextID == "" && lang == job.LangJavaScript:
		if pc, err = b.jsContext(r.Context(), sess); err != nil {
			writeError(w, http.StatusInternalServerError, "start the JavaScript context: "+err.Error())
			return
		}
		lang = job.LangJavaScript
	case req.ContextID != "" && req.ContextID != defaultContext.ID:
		if pc = b.context(req.ContextID); pc == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("context %q not found", req.ContextID))
			return
		}
		lang = pc.info.Language
	case lang == job.LangBash:
		if pc, err = b.bashContext(r.Context(), sess); err != nil {
			writeError(w, http.StatusInternalServerError, "start the bash context: "+err.Error())
			return
		}
	}
	if lang == job.LangBash {
		for k := range req.EnvVars {
			if !shellName(k) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("env var name %q is not a shell variable name", k))
				return
			}
		}
	}
	out := &ndjson{w: w}
	stdout, stderr := &lineStream{out: out, kind: "stdout"}, &lineStream{out: out, kind: "stderr"}
	jr := &job.Request{Code: req.Code, Stdout: stdout, Stderr: stderr, Network: b.network}
	// The client's leaving (the SDK's timeout: see keepalive) interrupts the
	// execution, as Jupyter's would, and keeps the sandbox and its state.
	run := context.WithoutCancel(r.Context())
	gone, leave := context.WithCancel(r.Context())
	defer leave()
	interrupt, mu, count := sess.Interrupt, &b.exec, &b.count
	if pc != nil {
		interrupt, mu, count = pc.c.Interrupt, &pc.mu, &pc.count
	}
	stop := context.AfterFunc(gone, func() { _ = interrupt() })
	defer stop()
	mu.Lock()
	defer mu.Unlock()
	// The sandbox's envVars are set for good in the context by its first run, as
	// E2B's code interpreter does; a run's env_vars for that run only.
	var base map[string]string
	if *count == 0 {
		base = b.env()
	}
	// Display data reaches the client as the program shows it, as a notebook's;
	// the Result repeats it, and only what was not streamed is sent at the end.
	streamed := &streamedOutputs{out: out}
	switch lang {
	case job.LangBash:
		jr.Language, jr.Code = job.LangBash, bashCode(req.Code, base, b.env(), req.EnvVars)
	case job.LangJavaScript:
		// The sandbox's environment came with the context's start.
		jr.Language = job.LangJavaScript
	default:
		jr.Kernel = &job.Kernel{Env: req.EnvVars, BaseEnv: base, OnOutput: streamed.send}
	}
	started := false
	hooks := session.Hooks{Started: func() {
		started = true
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		out.startKeepalive(leave)
		streamed.start()
	}}
	var res *job.Result
	switch {
	case lang == job.LangJavaScript && len(req.EnvVars) > 0:
		res, err = s.runJSWithEnv(run, b, pc, jr, req.EnvVars, hooks)
	case pc != nil:
		res, err = s.cfg.Sessions.ExecIn(run, b.owner, b.id, pc.c, jr, hooks)
	default:
		res, err = s.cfg.Sessions.Exec(run, b.owner, b.id, jr, hooks)
	}
	stdout.flush()
	stderr.flush()
	out.stopKeepalive()
	if started && s.gone(b) {
		// Killed (or timed out) during the run: as E2B's, the stream breaks rather
		// than ends, and the SDK, finding the sandbox gone, says it was killed
		// while the request was in progress.
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			writeError(w, http.StatusNotFound, "sandbox not found")
			return
		}
		if errors.Is(err, session.ErrQueueFull) || errors.Is(err, session.ErrTenantBusy) {
			writeError(w, http.StatusTooManyRequests, strings.TrimPrefix(err.Error(), "session: "))
			return
		}
		// The headers may be out: the failure is the execution's error.
		out.send(map[string]any{"type": "error", "name": "SandboxError", "value": err.Error(), "traceback": ""})
		out.send(map[string]any{"type": "end_of_execution"})
		return
	}
	*count++
	rest := *res
	rest.Outputs = streamed.unsent(res.Outputs)
	if len(rest.Outputs) == 0 && len(res.Outputs) > 0 {
		rest.Outputs = nil
		rest.Images, rest.Result = nil, nil // all shown already, as display data
	}
	for _, m := range results(&rest) {
		out.send(m)
	}
	if e := executionError(res); e != nil {
		out.send(e)
	}
	out.send(map[string]any{"type": "number_of_executions", "execution_count": *count})
	out.send(map[string]any{"type": "end_of_execution"})
}

// contextLanguage is the language of a context or run as codeexec names it.
// JavaScript, TypeScript, R and Java have no interpreter in codeexec's images.
func contextLanguage(lang string) (string, error) {
	switch lang {
	case "", "python":
		return job.LangPython, nil
	case "bash":
		return job.LangBash, nil
	case "javascript", "js":
		return job.LangJavaScript, nil
	case "typescript", "ts":
		return "", fmt.Errorf("language %q is not available: codeexec runs JavaScript (language \"js\"), not TypeScript; run the code without its types", lang)
	}
	return "", fmt.Errorf("language %q is not available: codeexec's code interpreter runs python, javascript and bash", lang)
}

// jsContext returns the sandbox's JavaScript context, starting it at the first call.
func (b *box) jsContext(ctx context.Context, sess *session.Session) (*pyContext, error) {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	if b.js != nil {
		return b.js, nil
	}
	pc, err := startContext(ctx, sess, defaultJSContext, b.env())
	if err != nil {
		return nil, err
	}
	b.js = pc
	return pc, nil
}

// runJSWithEnv runs jr in the JavaScript context pc with env set in Node's
// process.env for that run only: a run before sets them, keeping their values, and
// a run after puts those back, as E2B's per-run env_vars. (The run's own code is
// left as it was written: its last expression is its result.)
func (s *Server) runJSWithEnv(ctx context.Context, b *box, pc *pyContext, jr *job.Request, env map[string]string, hooks session.Hooks) (*job.Result, error) {
	vals, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("env_vars: %w", err)
	}
	set := &job.Request{Language: job.LangJavaScript, Code: "void (() => { const set = " + string(vals) +
		"; globalThis.__codeexecEnv = {}; for (const k of Object.keys(set)) { globalThis.__codeexecEnv[k] = process.env[k]; process.env[k] = set[k] } })()"}
	if res, err := s.cfg.Sessions.ExecIn(ctx, b.owner, b.id, pc.c, set, session.Hooks{}); err != nil {
		return nil, err
	} else if res.Error != nil {
		return nil, fmt.Errorf("set env_vars: %s: %s", res.Error.Name, res.Error.Message)
	}
	res, err := s.cfg.Sessions.ExecIn(ctx, b.owner, b.id, pc.c, jr, hooks)
	restore := &job.Request{Language: job.LangJavaScript, Code: "void (() => { const old = globalThis.__codeexecEnv || {}; delete globalThis.__codeexecEnv; " +
		"for (const k of Object.keys(old)) { if (old[k] === undefined) delete process.env[k]; else process.env[k] = old[k] } })()"}
	if _, rerr := s.cfg.Sessions.ExecIn(ctx, b.owner, b.id, pc.c, restore, session.Hooks{}); rerr != nil && err == nil {
		s.cfg.Log.Warn("e2b: the env_vars of a JavaScript run could not be put back", "sandbox", b.id, "err", rerr)
	}
	return res, err
}

// bashContext returns the sandbox's bash context, starting it at the first call.
func (b *box) bashContext(ctx context.Context, sess *session.Session) (*pyContext, error) {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	if b.bash != nil {
		return b.bash, nil
	}
	pc, err := startContext(ctx, sess, codeContext{ID: "default-bash", Language: job.LangBash, Cwd: e2bHome}, nil)
	if err != nil {
		return nil, err
	}
	b.bash = pc
	return pc, nil
}

// bashCode is code with E2B's environment for a bash run: base exported for good,
// run exported for this run, then each of run's variables back to the sandbox's
// value or unset. A run that exits early keeps run's (the context keeps what its
// runs export).
func bashCode(code string, base, sandbox, run map[string]string) string {
	var pre, post strings.Builder
	for _, env := range []map[string]string{base, run} {
		for _, k := range slices.Sorted(maps.Keys(env)) {
			if shellName(k) {
				fmt.Fprintf(&pre, "export %s=%s; ", k, shellQuote(env[k]))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(run)) {
		if v, ok := sandbox[k]; ok {
			fmt.Fprintf(&post, "; export %s=%s", k, shellQuote(v))
		} else if shellName(k) {
			fmt.Fprintf(&post, "; unset %s", k)
		}
	}
	if post.Len() == 0 {
		return pre.String() + code
	}
	// The status of the program, not of the restoring.
	return pre.String() + code + "\n__codeexec_status=$?" + post.String() + "; (exit $__codeexec_status)\n"
}

// shellName reports whether k can be a shell variable's name.
func shellName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// gone reports whether b's session has ended.
func (s *Server) gone(b *box) bool {
	_, err := s.cfg.Sessions.Get(b.owner.Name, b.id)
	return err != nil
}

// mimeKeys are E2B's result keys for the MIME types of a display data bundle
// (E2B's template/server/api/models/result.py); a type not listed goes to "extra".
var mimeKeys = map[string]string{
	"text/plain":             "text",
	"text/html":              "html",
	"text/markdown":          "markdown",
	"image/svg+xml":          "svg",
	"image/png":              "png",
	"image/jpeg":             "jpeg",
	"application/pdf":        "pdf",
	"text/latex":             "latex",
	"application/json":       "json",
	"application/javascript": "javascript",
	"e2b/data":               "data",
	"e2b/chart":              "chart",
}

// results are the E2B result objects of res. A kernel run's display data, in the
// order the program showed it, is E2B's as it stands. Other runs have its figures
// (display data), then the value of the last expression, the main result.
func results(res *job.Result) []map[string]any {
	var out []map[string]any
	if len(res.Outputs) > 0 {
		for _, o := range res.Outputs {
			out = append(out, resultOf(o))
		}
		return out
	}
	for _, im := range res.Images {
		key := "png"
		switch im.MimeType {
		case "image/svg+xml":
			out = append(out, map[string]any{"type": "result", "svg": string(im.Data), "is_main_result": false})
			continue
		case "image/jpeg":
			key = "jpeg"
		}
		out = append(out, map[string]any{"type": "result", key: base64.StdEncoding.EncodeToString(im.Data),
			"text": "<Figure>", "is_main_result": false})
	}
	if res.Result != nil {
		// A JavaScript run's value, as util.inspect shows it; a string's text
		// without its quotes, as E2B's.
		out = append(out, map[string]any{"type": "result", "text": unquote(*res.Result), "is_main_result": true})
	}
	return out
}

// unquote is text without the quotes around it, when it is a quoted string.
func unquote(text string) string {
	if len(text) >= 2 && (text[0] == '\'' && text[len(text)-1] == '\'' || text[0] == '"' && text[len(text)-1] == '"') {
		return text[1 : len(text)-1]
	}
	return text
}

// streamedOutputs sends a kernel run's display data to the client as the program
// shows it (job.Kernel.OnOutput), once the reply has started, and remembers what it
// sent.
type streamedOutputs struct {
	out *ndjson

	mu      sync.Mutex
	started bool
	held    []job.Output // shown before the reply started
	sent    []job.Output
}

func (s *streamedOutputs) send(o job.Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.held = append(s.held, o)
		return
	}
	s.out.send(resultOf(o))
	s.sent = append(s.sent, o)
}

// start sends what was held: the reply has started.
func (s *streamedOutputs) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	for _, o := range s.held {
		s.out.send(resultOf(o))
		s.sent = append(s.sent, o)
	}
	s.held = nil
}

// unsent is what of all, the Result's display data, the client has not had: all
// after the ones streamed, when those are its start (the program may have written
// the report pipe itself, and streamed anything).
func (s *streamedOutputs) unsent(all []job.Output) []job.Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sent) > len(all) {
		return all
	}
	for i, o := range s.sent {
		if !sameOutput(o, all[i]) {
			return all
		}
	}
	return all[len(s.sent):]
}

func sameOutput(a, b job.Output) bool {
	if a.Main != b.Main || len(a.Data) != len(b.Data) {
		return false
	}
	for k, v := range a.Data {
		if w, ok := b.Data[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// resultOf is E2B's result object of one display data bundle. As E2B's server, it
// shows a string's text without its quotes.
func resultOf(o job.Output) map[string]any {
	m := map[string]any{"type": "result", "is_main_result": o.Main}
	extra := map[string]json.RawMessage{}
	for mime, v := range o.Data {
		key, ok := mimeKeys[mime]
		if !ok {
			extra[mime] = v
			continue
		}
		if key == "text" {
			var text string
			if json.Unmarshal(v, &text) == nil {
				m[key] = unquote(text)
				continue
			}
		}
		m[key] = v
	}
	if len(extra) > 0 {
		m["extra"] = extra
	}
	return m
}

// executionError is E2B's error object for a run that did not end ok.
func executionError(res *job.Result) map[string]any {
	switch {
	case res.Error != nil:
		return map[string]any{"type": "error", "name": res.Error.Name, "value": res.Error.Message, "traceback": res.Error.Traceback}
	case res.Status == job.StatusOK:
		return nil
	case res.Status == job.StatusKilled:
		return map[string]any{"type": "error", "name": "KeyboardInterrupt", "value": "the execution was interrupted", "traceback": ""}
	default:
		return map[string]any{"type": "error", "name": "ExecutionError", "value": "the execution ended: " + string(res.Status), "traceback": ""}
	}
}
