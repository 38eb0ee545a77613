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

	// language is the code tool's (job.LangPython or ""; LangJavaScript; LangBash):
	// a session this sandbox starts runs it, and one the request names must.
	language string
}

func (s *Server) gatewaySandbox(owner *tenant.Tenant) *gatewaySandbox {
	return &gatewaySandbox{s: s, owner: owner, limits: s.cfg.Policy.Default, network: s.gateway.Agent.Network}
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
	return nil
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
	return res, err
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
