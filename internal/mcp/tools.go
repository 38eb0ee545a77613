package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The tools' names and parameters are the contract: clients and tests rely on them.
const (
	toolExecute       = "execute_python"
	toolExecuteJS     = "execute_javascript"
	toolRunCommand    = "run_command"
	toolCreateSession = "create_session"
	toolCloseSession  = "close_session"
	toolListSessions  = "list_sessions"
	toolUpload        = "upload_file"
	toolDownload      = "download_file"
	toolListFiles     = "list_files"
)

type executeInput struct {
	Code      string      `json:"code"`
	SessionID string      `json:"session_id,omitempty"`
	TimeoutS  float64     `json:"timeout_s,omitempty"`
	Files     []InputFile `json:"files,omitempty"`
}

// executeOutput is execute_python's structured content: the whole Result, and in a
// session what became of it, as the HTTP API answers a session execute.
type executeOutput struct {
	*job.Result
	Session *SessionState `json:"session,omitempty"`
}

type createInput struct {
	Language string `json:"language,omitempty"`
}

type sessionInput struct {
	SessionID string `json:"session_id"`
}

type createOutput struct {
	SessionID string    `json:"session_id" jsonschema:"the session's id: pass it as session_id to the other tools"`
	ExpiresAt time.Time `json:"expires_at" jsonschema:"when the session ends unless it is used again; each use pushes this back"`
}

type closeOutput struct {
	SessionID string `json:"session_id"`
	Closed    bool   `json:"closed"`
}

type listSessionsOutput struct {
	Sessions []session.Info `json:"sessions"`
}

type uploadInput struct {
	SessionID     string `json:"session_id"`
	Path          string `json:"path"`
	ContentBase64 string `json:"content_base64"`
}

type fileOutput struct {
	Path     string `json:"path" jsonschema:"the file's path in the work dir /work"`
	Size     int64  `json:"size" jsonschema:"its size in bytes"`
	URI      string `json:"uri" jsonschema:"the file as an MCP resource"`
	MIMEType string `json:"mime_type,omitempty"`
}

type pathInput struct {
	SessionID string `json:"session_id"`
	Path      string `json:"path"`
}

type listFilesOutput struct {
	SessionID string       `json:"session_id"`
	Files     []fileOutput `json:"files"`
	Truncated bool         `json:"truncated" jsonschema:"the work dir held more files than are listed"`
}

func (s *Server) addTools() {
	p := s.policy
	closed, open := true, false
	net := &open
	if len(p.Network) > 0 {
		net = &closed // the code reaches hosts outside the sandbox
	}
	for _, l := range toolLanguages {
		sdk.AddTool(s.srv, &sdk.Tool{
			Name:         l.tool,
			Title:        l.title,
			Description:  executeDescription(p, l),
			InputSchema:  executeSchema(p, l),
			OutputSchema: resultSchema(),
			Annotations:  &sdk.ToolAnnotations{Title: l.title, DestructiveHint: &open, OpenWorldHint: net},
		}, s.executeIn(l))
	}
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:  toolCreateSession,
		Title: "Create a session",
		Description: "Start a persistent session: executions that pass its session_id share variables, imports and the files in /work, " +
			"and the files can be uploaded, listed and downloaded. A session runs one language, Python unless language says " +
			"otherwise: execute_python, execute_javascript or run_command (bash) with its session_id. It ends when closed " +
			"(close_session) or after some minutes without use; a run that hits a limit ends it too. Returns session_id.",
		InputSchema: objectSchema(map[string]*jsonschema.Schema{
			"language": {Type: "string", Enum: []any{job.LangPython, job.LangJavaScript, job.LangBash},
				Description: "the session's language: python (the default), javascript (Node.js) or bash"},
		}),
		OutputSchema: outputSchema[createOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "Create a session", DestructiveHint: &open, OpenWorldHint: &open},
	}, s.createSession)
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:         toolCloseSession,
		Title:        "Close a session",
		Description:  "End a session: its interpreter, variables and files are gone. Download what you need first.",
		InputSchema:  objectSchema(map[string]*jsonschema.Schema{"session_id": sessionIDSchema()}, "session_id"),
		OutputSchema: outputSchema[closeOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "Close a session", DestructiveHint: &closed, IdempotentHint: true, OpenWorldHint: &open},
	}, s.closeSession)
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:         toolListSessions,
		Title:        "List sessions",
		Description:  "List your live sessions, oldest first: id, creation, last use, expiry, executions, whether it is alive and the memory it uses.",
		InputSchema:  objectSchema(nil),
		OutputSchema: outputSchema[listSessionsOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "List sessions", ReadOnlyHint: true, OpenWorldHint: &open},
	}, s.listSessions)
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:  toolUpload,
		Title: "Upload a file to a session",
		Description: "Write a file into a session's work dir /work (replacing a file of that path), for its code to read, e.g. " +
			"pd.read_csv(\"data.csv\"). The content is base64; the whole file arrives or none of it.",
		InputSchema: objectSchema(map[string]*jsonschema.Schema{
			"session_id":     sessionIDSchema(),
			"path":           pathSchema(),
			"content_base64": {Type: "string", Description: "the file's bytes, base64-encoded (standard alphabet, with padding)"},
		}, "session_id", "path", "content_base64"),
		OutputSchema: outputSchema[fileOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "Upload a file", DestructiveHint: &closed, IdempotentHint: true, OpenWorldHint: &open},
	}, s.uploadFile)
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:  toolDownload,
		Title: "Download a file from a session",
		Description: "Read a file of a session's work dir /work, e.g. one the code wrote. Returns it as an embedded resource: " +
			"text for UTF-8 text, a base64 blob otherwise.",
		InputSchema:  objectSchema(map[string]*jsonschema.Schema{"session_id": sessionIDSchema(), "path": pathSchema()}, "session_id", "path"),
		OutputSchema: outputSchema[fileOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "Download a file", ReadOnlyHint: true, OpenWorldHint: &open},
	}, s.downloadFile)
	sdk.AddTool(s.srv, &sdk.Tool{
		Name:         toolListFiles,
		Title:        "List a session's files",
		Description:  "List the regular files of a session's work dir /work, with their sizes, each as a resource link.",
		InputSchema:  objectSchema(map[string]*jsonschema.Schema{"session_id": sessionIDSchema()}, "session_id"),
		OutputSchema: outputSchema[listFilesOutput](),
		Annotations:  &sdk.ToolAnnotations{Title: "List files", ReadOnlyHint: true, OpenWorldHint: &open},
	}, s.listFiles)
}

// toolLanguage is an execute tool: one language's name, title and what the model is
// told of it. The tools differ in nothing else.
type toolLanguage struct {
	lang, tool, title string
	about             string // what the sandbox does with the code
	state             string // what a session keeps between calls
	code              string // the code parameter's description
}

var toolLanguages = []toolLanguage{
	{lang: job.LangPython, tool: toolExecute, title: "Run Python",
		about: "Run Python 3.13 code in a secure, isolated sandbox and get its output. numpy, pandas, matplotlib, scipy, sympy " +
			"and requests are installed; nothing else can be installed. It works like a notebook cell: print() output comes back " +
			"as stdout, the value of the last expression (or of a variable named `result`) as result, an exception as the error " +
			"with its traceback, and every open matplotlib figure as a PNG image (no need for plt.show()). The working directory " +
			"is /work.",
		state: "variables, imports and files", code: "the Python code to run"},
	{lang: job.LangJavaScript, tool: toolExecuteJS, title: "Run JavaScript",
		about: "Run JavaScript in Node.js 20 in a secure, isolated sandbox and get its output. Node's built-in modules (fs, path, " +
			"crypto, child_process, ...) are there; no npm packages, and nothing can be installed. It works like a REPL: " +
			"console.log() output comes back as stdout, the value of the last expression as result, a thrown error as the error " +
			"with its stack; top-level await works. The working directory is /work.",
		state: "variables (let, const, var, functions, classes) and files", code: "the JavaScript (Node.js) code to run, as a script"},
	{lang: job.LangBash, tool: toolRunCommand, title: "Run a shell command",
		about: "Run a bash script in a secure, isolated Debian sandbox and get its stdout, stderr and exit status. coreutils, " +
			"python3 and node are installed; nothing can be installed. The working directory is /work.",
		state: "the working directory, exported variables and files", code: "the bash script to run"},
}

// executeDescription tells the model what the sandbox has and allows.
func executeDescription(p Policy, l toolLanguage) string {
	var b strings.Builder
	b.WriteString(l.about)
	fmt.Fprintf(&b, "\n\nWithout session_id every call starts from scratch in a fresh sandbox, and the files it writes are discarded. "+
		"With the session_id of create_session (language %q), %s persist between calls, and the files the code "+
		"writes come back as resource links (download_file reads them).\n\n", l.lang, l.state)
	fmt.Fprintf(&b, "Limits per call: %s of wall-clock time by default (timeout_s, up to %s), %s of memory, %s of stdout and of stderr each. ",
		seconds(p.DefaultTimeout), seconds(p.MaxTimeout), mib(p.MemoryBytes), mib(p.OutputBytes))
	if len(p.Network) == 0 {
		b.WriteString("There is no network access: fetch nothing from the internet.")
	} else {
		fmt.Fprintf(&b, "Network: HTTP and HTTPS to %s only, through a proxy that requests and urllib use by themselves; "+
			"other hosts and other protocols are refused.", strings.Join(p.Network, ", "))
	}
	if p.Judged {
		b.WriteString(" A safety policy checks the code before it runs: refused code is not run, and the result says why.")
	}
	return b.String()
}

func executeSchema(p Policy, l toolLanguage) *jsonschema.Schema {
	zero := 0.0
	maxS := p.MaxTimeout.Seconds()
	return objectSchema(map[string]*jsonschema.Schema{
		"code": {Type: "string", Description: l.code},
		"session_id": {Type: "string", Description: "run in this session (from create_session), keeping its variables and files; " +
			"leave it out to run once in a fresh sandbox"},
		"timeout_s": {Type: "number", ExclusiveMinimum: &zero, Maximum: &maxS,
			Description: fmt.Sprintf("wall-clock limit in seconds (default %s, at most %s); the code is stopped when it runs longer", seconds(p.DefaultTimeout), seconds(p.MaxTimeout))},
		"files": {Type: "array", Description: "files to place in /work before the code runs",
			Items: objectSchema(map[string]*jsonschema.Schema{
				"path":           pathSchema(),
				"content_base64": {Type: "string", Description: "the file's bytes, base64-encoded"},
			}, "path", "content_base64")},
	}, "code")
}

func sessionIDSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: "the session's id, from create_session (sess_…)"}
}

func pathSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: "a path relative to the work dir /work, e.g. data.csv or out/plot.png"}
}

// objectSchema is an object of the given properties, of which required must be
// present, and no others.
func objectSchema(props map[string]*jsonschema.Schema, required ...string) *jsonschema.Schema {
	if props == nil {
		props = map[string]*jsonschema.Schema{}
	}
	return &jsonschema.Schema{Type: "object", Properties: props, Required: required,
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}}}
}

// schemaTypes are the schemas of types whose JSON is not what inference would
// say: []byte is a base64 string, json.RawMessage any JSON value.
var schemaTypes = map[reflect.Type]*jsonschema.Schema{
	reflect.TypeFor[[]byte]():          {Type: "string", Description: "base64"},
	reflect.TypeFor[json.RawMessage](): {Description: "any JSON value"},
}

// outputSchema is the schema of T's JSON, inferred from its fields, written for
// portability: the lists the tools return are never null, and a nullable value is
// anyOf null and its type rather than a list of types, which some clients map onto
// single-type dialects (Gemini's function declarations) cannot take.
func outputSchema[T any]() *jsonschema.Schema {
	sch, err := jsonschema.For[T](&jsonschema.ForOptions{TypeSchemas: schemaTypes})
	if err != nil {
		panic(fmt.Sprintf("mcp: the output schema of %T: %v", *new(T), err)) // a type of this package: a bug
	}
	return portable(sch)
}

// portable rewrites the nullable types inference gives pointers and slices.
func portable(sch *jsonschema.Schema) *jsonschema.Schema {
	if sch == nil {
		return nil
	}
	for name, p := range sch.Properties {
		sch.Properties[name] = portable(p)
	}
	sch.Items = portable(sch.Items)
	if len(sch.Types) != 2 || sch.Types[0] != "null" {
		return sch
	}
	typ := sch.Types[1]
	sch.Types = nil
	sch.Type = typ
	if typ == "array" {
		return sch
	}
	desc := sch.Description
	sch.Description = ""
	return &jsonschema.Schema{Description: desc, AnyOf: []*jsonschema.Schema{{Type: "null"}, sch}}
}

// resultSchema is execute_python's output schema: a Result, and the session's state
// in a session.
func resultSchema() *jsonschema.Schema {
	sch := outputSchema[job.Result]()
	sch.Description = "the execution's Result, as the HTTP API answers /v1/execute"
	sch.Properties["session"] = outputSchema[SessionState]()
	sch.Properties["session"].Description = "in a session: whether it lives on (ended is true when this run ended its interpreter)"
	return sch
}

func seconds(d time.Duration) string {
	return strings.TrimSuffix(fmt.Sprintf("%g", d.Seconds()), ".0") + " s"
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// ownerOf is the tenant a call acts for: the one its bearer token named (HTTP with
// API keys), else the one its MCP session was opened with. A call with neither
// owns nothing.
func ownerOf(ctx context.Context, extra *sdk.RequestExtra) (*tenant.Tenant, error) {
	if extra != nil && extra.TokenInfo != nil {
		if t, ok := extra.TokenInfo.Extra[tenantKey].(*tenant.Tenant); ok && t != nil {
			return t, nil
		}
	}
	if t, ok := tenant.FromContext(ctx); ok {
		return t, nil
	}
	return nil, errors.New("mcp: a call without a tenant (served without authentication)")
}

// tenantKey is where a TokenInfo carries the tenant its key belongs to.
const tenantKey = "codeexec.tenant"

// tokenInfo is the TokenInfo of a request the API's authentication admitted: its
// user is the tenant, so that an MCP session serves only the tenant that opened it.
func tokenInfo(ctx context.Context) (*auth.TokenInfo, error) {
	t, ok := tenant.FromContext(ctx)
	if !ok {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{UserID: "tenant:" + t.Name, Extra: map[string]any{tenantKey: t}}, nil
}

// toolError is what the model is told of a failed call: the reason and its stable
// code, or only that the server failed (its log has the error).
func (s *Server) toolError(tool string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return fmt.Errorf("%s (%s)", e.Message, e.Code)
	}
	s.log.Error("mcp tool failed", "tool", tool, "err", err)
	return errors.New("the server failed (an internal error; its log has the details)")
}

// executeIn is the handler of l's execute tool.
func (s *Server) executeIn(l toolLanguage) sdk.ToolHandlerFor[executeInput, *executeOutput] {
	return func(ctx context.Context, req *sdk.CallToolRequest, in executeInput) (*sdk.CallToolResult, *executeOutput, error) {
		return s.execute(ctx, req, in, l)
	}
}

func (s *Server) execute(ctx context.Context, req *sdk.CallToolRequest, in executeInput, l toolLanguage) (*sdk.CallToolResult, *executeOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(l.tool, err)
	}
	// The schema says so too; a client that skips its check gets the same answer.
	if maxS := s.policy.MaxTimeout.Seconds(); in.TimeoutS < 0 || in.TimeoutS > maxS {
		return nil, nil, s.toolError(l.tool, &Error{Code: "invalid_timeout",
			Message: fmt.Sprintf("timeout_s %g is outside 0..%g; leave it out for the default of %s", in.TimeoutS, maxS, seconds(s.policy.DefaultTimeout))})
	}
	e := &Execution{Code: in.Code, Language: l.lang, Timeout: time.Duration(in.TimeoutS * float64(time.Second)), Files: in.Files}
	prog := startProgress(ctx, req)
	e.Stdout, e.Stderr = prog.writer(), prog.writer()
	var res *job.Result
	var state *SessionState
	if in.SessionID == "" {
		res, err = s.runOnce(ctx, owner, e)
	} else {
		var st SessionState
		st, res, err = s.runInSession(ctx, owner, in.SessionID, e)
		state = &st
	}
	prog.finish()
	if err != nil {
		return nil, nil, s.toolError(l.tool, err)
	}
	// Lists are never null, as the output schema says.
	if res.Images == nil {
		res.Images = []job.Image{}
	}
	if res.Files == nil {
		res.Files = []job.FileInfo{}
	}
	return &sdk.CallToolResult{Content: executeContent(res, state), IsError: res.Status != job.StatusOK},
		&executeOutput{Result: res, Session: state}, nil
}

// runOnce runs e in a fresh sandbox. The client's cancellation, or Stop, kills it.
func (s *Server) runOnce(ctx context.Context, owner *tenant.Tenant, e *Execution) (*job.Result, error) {
	if s.stopped() {
		return nil, errShuttingDown
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	return s.sb.Run(ctx, owner, e)
}

var errShuttingDown = &Error{Code: "shutting_down", Message: "the server is shutting down"}

// interruptGrace is how long code interrupted by a cancellation has to stop before
// it is killed, and its session with it.
const interruptGrace = 3 * time.Second

// interruptPoll is how often a cancelled execution that has not started yet is
// asked again to stop.
const interruptPoll = 50 * time.Millisecond

// runInSession runs e in session id. A cancellation by the client stops the code as
// Ctrl-C would, so that the session keeps its variables and files: the program gets
// KeyboardInterrupt. Code that does not stop within interruptGrace (it catches
// the interrupt, say) is killed, which ends the session; Stop kills at once.
func (s *Server) runInSession(ctx context.Context, owner *tenant.Tenant, id string, e *Execution) (SessionState, *job.Result, error) {
	if s.stopped() {
		return SessionState{ID: id}, nil, errShuttingDown
	}
	// An interrupt stops whatever runs in the session: this call's, once it has its
	// turn. Cancelled before, it leaves without running.
	leave, err := s.turns.take(ctx, owner.Name+"\x00"+id)
	if err != nil {
		return SessionState{ID: id}, nil, &Error{Code: "client_closed", Message: "the call was cancelled while it waited for the session's running execution"}
	}
	defer leave()
	// The run is not cancelled with the call: the interrupt comes first.
	runCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
			return
		case <-s.stop.Done():
			kill()
			return
		case <-ctx.Done():
		}
		grace := time.NewTimer(interruptGrace)
		defer grace.Stop()
		poll := time.NewTicker(interruptPoll)
		defer poll.Stop()
		// Until it runs (it may still wait for its turn) the interrupt finds nothing.
		for errors.Is(s.sb.Interrupt(owner, id), sandbox.ErrNotRunning) {
			select {
			case <-done:
				return
			case <-s.stop.Done():
				kill()
				return
			case <-grace.C:
				kill()
				return
			case <-poll.C:
			}
		}
		select {
		case <-done:
		case <-s.stop.Done():
			kill()
		case <-grace.C:
			kill()
		}
	}()
	res, st, err := s.sb.Exec(runCtx, owner, id, e)
	return st, res, err
}

func (s *Server) createSession(ctx context.Context, req *sdk.CallToolRequest, in createInput) (*sdk.CallToolResult, *createOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolCreateSession, err)
	}
	if s.stopped() {
		return nil, nil, s.toolError(toolCreateSession, errShuttingDown)
	}
	lang := toolLanguages[0]
	for _, l := range toolLanguages {
		if l.lang == job.CanonicalLanguage(in.Language) {
			lang = l
		}
	}
	if in.Language != "" && lang.lang != job.CanonicalLanguage(in.Language) {
		return nil, nil, s.toolError(toolCreateSession, &Error{Code: "unsupported_language",
			Message: fmt.Sprintf("language %q is not supported; use one of %q", in.Language, job.Languages)})
	}
	info, err := s.sb.Create(ctx, owner, lang.lang)
	if err != nil {
		return nil, nil, s.toolError(toolCreateSession, err)
	}
	s.track(req.Session, owner, info.ID)
	text := fmt.Sprintf("Created a %s session %s. Pass session_id %q to %s to keep %s between calls; "+
		"upload_file, list_files and download_file work on its files. It ends after some minutes without use (now: at %s) or with close_session.",
		lang.lang, info.ID, info.ID, lang.tool, lang.state, info.ExpiresAt.UTC().Format(time.RFC3339))
	return textResult(text), &createOutput{SessionID: info.ID, ExpiresAt: info.ExpiresAt}, nil
}

func (s *Server) closeSession(ctx context.Context, req *sdk.CallToolRequest, in sessionInput) (*sdk.CallToolResult, *closeOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolCloseSession, err)
	}
	if err := s.sb.Close(owner, in.SessionID); err != nil {
		return nil, nil, s.toolError(toolCloseSession, err)
	}
	s.untrack(req.Session, in.SessionID)
	return textResult(fmt.Sprintf("Closed session %s: its interpreter and files are gone.", in.SessionID)),
		&closeOutput{SessionID: in.SessionID, Closed: true}, nil
}

func (s *Server) listSessions(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, *listSessionsOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolListSessions, err)
	}
	out := &listSessionsOutput{Sessions: s.sb.List(owner)}
	if out.Sessions == nil {
		out.Sessions = []session.Info{}
	}
	return textResult(sessionsText(out.Sessions)), out, nil
}

func (s *Server) uploadFile(ctx context.Context, req *sdk.CallToolRequest, in uploadInput) (*sdk.CallToolResult, *fileOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolUpload, err)
	}
	data, err := base64.StdEncoding.DecodeString(in.ContentBase64)
	if err != nil {
		return nil, nil, s.toolError(toolUpload, &Error{Code: "invalid_file",
			Message: fmt.Sprintf("content_base64 of %q is not valid base64 (standard alphabet, with padding): %v", in.Path, err)})
	}
	p, err := s.sb.WriteFile(owner, in.SessionID, in.Path, data)
	if err != nil {
		return nil, nil, s.toolError(toolUpload, err)
	}
	out := &fileOutput{Path: p, Size: int64(len(data)), URI: fileURI(in.SessionID, p)}
	return textResult(fmt.Sprintf("Wrote /work/%s (%d bytes) in session %s.", p, len(data), in.SessionID)), out, nil
}

func (s *Server) downloadFile(ctx context.Context, req *sdk.CallToolRequest, in pathInput) (*sdk.CallToolResult, *fileOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolDownload, err)
	}
	data, err := s.sb.ReadFile(owner, in.SessionID, in.Path)
	if err != nil {
		return nil, nil, s.toolError(toolDownload, err)
	}
	contents := fileContents(in.SessionID, in.Path, data)
	out := &fileOutput{Path: in.Path, Size: int64(len(data)), URI: contents.URI, MIMEType: contents.MIMEType}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.EmbeddedResource{Resource: contents}}}, out, nil
}

func (s *Server) listFiles(ctx context.Context, req *sdk.CallToolRequest, in sessionInput) (*sdk.CallToolResult, *listFilesOutput, error) {
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		return nil, nil, s.toolError(toolListFiles, err)
	}
	files, truncated, err := s.sb.ListFiles(owner, in.SessionID)
	if err != nil {
		return nil, nil, s.toolError(toolListFiles, err)
	}
	out := &listFilesOutput{SessionID: in.SessionID, Files: []fileOutput{}, Truncated: truncated}
	for _, f := range files {
		out.Files = append(out.Files, fileOutput{Path: f.Path, Size: f.Size, URI: fileURI(in.SessionID, f.Path)})
	}
	return &sdk.CallToolResult{Content: filesContent(in.SessionID, files, truncated)}, out, nil
}

func textResult(text string) *sdk.CallToolResult {
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}
}
