package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// gatewaySandbox is the agent.Sandbox of one chat completion: a session of the
// server's manager — the container the request named, or one started at first use
// — run through the manager's Exec, so that it counts against the session cap, is
// admitted (the tenant's cap, the execution queue) and shows in the metrics like any
// execution. The session outlives the request: the reply names it, the client's
// next request may name it again (its variables and files are still there), and
// /v1/sessions/{id}/files serves what the code wrote, until it expires like any
// session. The agent uses it from one goroutine.
type gatewaySandbox struct {
	s       *Server
	owner   *tenant.Tenant // the caller's tenant, who owns the sessions it starts
	limits  job.Limits
	network *egress.Policy
	sess    *session.Session
	created *session.Session // the session this request started, if any
	// place are files put in each session this request starts (a container's
	// file_ids), before any code runs there.
	place []namedFile
	// figures: each run's figures are also saved in the session (figuresDir), so
	// that a URL of the container's files serves them (their Saved says where).
	figures bool

	// language is the code tool's (job.LangPython or ""; LangJavaScript; LangBash):
	// a session this sandbox starts runs it, and one the request names must.
	language string
}

// figuresDir is where a session keeps the figures of the Responses API's runs:
// hidden, so that it does not clutter what the code lists of /work.
const figuresDir = ".figures"

func (s *Server) gatewaySandbox(owner *tenant.Tenant) *gatewaySandbox {
	return &gatewaySandbox{s: s, owner: owner, limits: s.cfg.Policy.Default, network: s.gateway.Agent.Network}
}

// resume makes the sandbox the caller's session id (a container the request
// names), whose code runs with the limits it was made with (a container's
// memory_limit, a session's memory_mb).
func (g *gatewaySandbox) resume(id string) error {
	sess, err := g.s.sessions.Get(g.owner.Name, id)
	if err != nil {
		return err
	}
	g.sess, g.limits = sess, sess.Limits()
	return nil
}

// Start starts a session unless the current one is alive. A session whose
// interpreter a limit stopped is ended first: the reply names the new one.
func (g *gatewaySandbox) Start(ctx context.Context) error {
	if g.Started() {
		return nil
	}
	if g.sess != nil {
		_ = g.s.sessions.Delete(g.owner.Name, g.sess.ID) // already gone (expired) is fine
		g.sess = nil
	}
	sess, err := g.s.sessions.Create(ctx, g.owner, g.limits, 0)
	if err != nil {
		return err
	}
	if g.language != "" && g.language != job.LangPython {
		sess.SetLanguage(g.language)
	}
	g.sess, g.created = sess, sess
	for _, f := range g.place {
		if err := sess.WriteFile(f.name, f.data); err != nil {
			// A container without its files is not the one asked for.
			_ = g.s.sessions.Delete(g.owner.Name, sess.ID)
			g.sess, g.created = nil, nil
			return fmt.Errorf("place the container's file %q: %w", f.name, err)
		}
	}
	return nil
}

// Uploaded finds a file of /v1/files the request's owner uploaded (agent.Uploads).
func (g *gatewaySandbox) Uploaded(id string) (string, []byte, error) {
	f := g.s.files.get(g.owner.Name, id, time.Now())
	if f == nil {
		return "", nil, fmt.Errorf("no file %q: upload it with POST /v1/files first (files are kept in memory: a restart forgets them)", id)
	}
	return f.obj.Filename, f.data, nil
}

func (g *gatewaySandbox) Started() bool { return g.sess != nil && g.sess.Alive() }

// ID is the session's id, also once a limit stopped its interpreter (the next
// request that names it gets a fresh one, and is told so); "" before the first use.
func (g *gatewaySandbox) ID() string {
	if g.sess == nil {
		return ""
	}
	return g.sess.ID
}

// Run runs code in the session once the manager admits it.
func (g *gatewaySandbox) Run(ctx context.Context, code string) (*job.Result, error) {
	if err := g.Start(ctx); err != nil {
		return nil, err
	}
	res, err := g.s.sessions.Exec(ctx, g.owner, g.sess.ID, &job.Request{Code: code, Language: g.language, Limits: g.limits, Network: g.network}, session.Hooks{})
	if errors.Is(err, session.ErrNotFound) {
		// Expired or deleted since Start: to the agent, an interpreter that stopped.
		return nil, fmt.Errorf("%w: session %q is gone", sandbox.ErrSessionEnded, g.sess.ID)
	}
	if err == nil && g.figures {
		g.saveFigures(res)
	}
	return res, err
}

// saveFigures writes a run's figures into the session, under names no other run's
// take (a random tag), and records each one's path in its SavedAs; a figure that
// cannot be written (the session ended with the run, its storage is full) gets its
// SaveError and stays a data: URL.
func (g *gatewaySandbox) saveFigures(res *job.Result) {
	tag := newID()[:8]
	for i := range res.Images {
		im := &res.Images[i]
		p := figuresDir + "/" + tag + "-" + im.Name
		if err := g.sess.WriteFile(p, im.Data); err != nil {
			im.SaveError = err.Error()
			continue
		}
		im.SavedAs = p
	}
}

// WriteFile puts an attached file in the session's work dir.
func (g *gatewaySandbox) WriteFile(path string, data []byte) error {
	if err := g.Start(context.Background()); err != nil {
		return err
	}
	return g.sess.WriteFile(path, data)
}

// endCreated ends the session this request started, for a request that failed
// before its reply could name it.
func (g *gatewaySandbox) endCreated() {
	if g.created != nil {
		_ = g.s.sessions.Delete(g.owner.Name, g.created.ID)
	}
}

// containerRef is the "container" field of a reply: the session the code ran in,
// to name in the next request's code tool.
type containerRef struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// describe adds the "container" field to a reply's (or chunk's) extra fields when
// the request has a session; OpenAI's SDKs keep fields they do not know.
func (g *gatewaySandbox) describe(extra map[string]json.RawMessage) map[string]json.RawMessage {
	if g.sess == nil {
		return extra
	}
	b, err := json.Marshal(containerRef{ID: g.sess.ID, ExpiresAt: g.sess.ExpiresAt().UTC()})
	if err != nil {
		return extra
	}
	if extra == nil {
		extra = map[string]json.RawMessage{}
	}
	extra["container"] = b
	return extra
}

// linkFiles gives each file a run wrote the URL that downloads it from its session.
func linkFiles(e *llm.CodeExecution) {
	if e.ContainerID == "" || len(e.Files) == 0 {
		return
	}
	files := make([]llm.CodeFile, len(e.Files))
	for i, f := range e.Files {
		segs := strings.Split(f.Path, "/")
		for j, s := range segs {
			segs[j] = url.PathEscape(s)
		}
		f.URL = "/v1/sessions/" + url.PathEscape(e.ContainerID) + "/files/" + strings.Join(segs, "/")
		files[i] = f
	}
	e.Files = files
}
