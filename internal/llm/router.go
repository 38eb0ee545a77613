package llm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Router chooses the provider for a model name. It is safe for concurrent use.
type Router struct {
	clients []*Client // in configuration order, the default first
	byName  map[string]*Client
	byModel map[string]*Client
	def     *Client
	// Log receives the errors of providers skipped by Models; nil means slog.Default().
	Log *slog.Logger
}

// NewRouter validates the providers and routes between them; defaultName names the
// one that gets models no other rule matches, or is "" for none. Names must be
// unique, and a model may be listed by one provider only.
func NewRouter(defaultName string, providers ...Provider) (*Router, error) {
	r := &Router{byName: map[string]*Client{}, byModel: map[string]*Client{}}
	for _, p := range providers {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if _, dup := r.byName[p.Name]; dup {
			return nil, fmt.Errorf("provider %q is configured twice", p.Name)
		}
		c := New(p)
		r.byName[p.Name] = c
		for _, m := range p.Models {
			if other, dup := r.byModel[m]; dup {
				return nil, fmt.Errorf("model %q is listed by providers %q and %q", m, other.p.Name, p.Name)
			}
			r.byModel[m] = c
		}
		r.clients = append(r.clients, c)
	}
	if defaultName != "" {
		r.def = r.byName[defaultName]
		if r.def == nil {
			return nil, fmt.Errorf("default provider %q is not configured", defaultName)
		}
	}
	return r, nil
}

// Route returns the client for model: the provider that lists model in its Models;
// else, for "name/rest", the provider called name (its client sends "rest"
// upstream); else the default provider. Model names that contain "/" themselves
// (vLLM's "meta-llama/Llama-3.1-8B-Instruct") reach the default provider unchanged
// as long as no provider is called "meta-llama".
func (r *Router) Route(model string) (*Client, error) {
	if model == "" {
		return nil, errors.New("no model given")
	}
	if c := r.byModel[model]; c != nil {
		return c, nil
	}
	if name, rest, ok := strings.Cut(model, "/"); ok && rest != "" {
		if c := r.byName[name]; c != nil {
			return c, nil
		}
	}
	if r.def != nil {
		return r.def, nil
	}
	return nil, fmt.Errorf("no provider for model %q: it is in no provider's models, has no provider prefix, and there is no default provider", model)
}

// Providers returns the configured providers in order.
func (r *Router) Providers() []Provider {
	ps := make([]Provider, len(r.clients))
	for i, c := range r.clients {
		ps[i] = c.p
	}
	return ps
}

// Models asks every provider for its models, concurrently, and merges the lists in
// provider order, the default provider first. Each ID is one that Route sends back
// to the same provider: the default provider's and configured models as they are,
// the others as "name/id". A provider's configured Models are listed even when its
// /models fails; the failure is logged, not returned, so one provider that is down
// does not hide the rest. The first provider to list an ID wins.
func (r *Router) Models(ctx context.Context) ([]Model, error) {
	order := make([]*Client, 0, len(r.clients))
	if r.def != nil {
		order = append(order, r.def)
	}
	for _, c := range r.clients {
		if c != r.def {
			order = append(order, c)
		}
	}
	lists := make([][]Model, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, c := range order {
		wg.Go(func() { lists[i], errs[i] = c.Models(ctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	var out []Model
	seen := map[string]bool{}
	add := func(m Model) {
		if !seen[m.ID] {
			seen[m.ID] = true
			out = append(out, m)
		}
	}
	for i, c := range order {
		if errs[i] != nil {
			log.Warn("listing models failed; listing only the configured ones",
				"provider", c.p.Name, "err", errs[i])
		}
		for _, m := range lists[i] {
			if c != r.def && !c.p.servesModel(m.ID) {
				m.ID = c.p.Name + "/" + m.ID
			}
			add(m)
		}
		for _, id := range c.p.Models {
			add(Model{ID: id, Object: "model", OwnedBy: c.p.Name})
		}
	}
	return out, nil
}
