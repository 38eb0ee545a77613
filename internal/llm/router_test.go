package llm

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

func testProviders() []Provider {
	return []Provider{
		{Name: "openai", BaseURL: "https://api.openai.com/v1", Models: []string{"gpt-4.1"}},
		{Name: "xai", BaseURL: "https://api.x.ai/v1", Models: []string{"grok-4"}},
		{Name: "vllm", BaseURL: "http://localhost:8000/v1", Models: []string{"meta-llama/Llama-3.1-8B-Instruct"}},
		{Name: "ollama", BaseURL: "http://localhost:11434/v1"},
	}
}

func TestRoute(t *testing.T) {
	r, err := NewRouter("openai", testProviders()...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model, provider, upstream string
	}{
		{"grok-4", "xai", "grok-4"},         // listed
		{"xai/grok-3", "xai", "grok-3"},     // prefix
		{"xai/grok-4", "xai", "grok-4"},     // prefix of a listed model
		{"gpt-4.1", "openai", "gpt-4.1"},    // listed by the default
		{"gpt-5", "openai", "gpt-5"},        // unknown: default
		{"openai/gpt-5", "openai", "gpt-5"}, // the default by prefix
		{"ollama/qwen2.5-coder:7b", "ollama", "qwen2.5-coder:7b"},
		{"meta-llama/Llama-3.1-8B-Instruct", "vllm", "meta-llama/Llama-3.1-8B-Instruct"}, // listed, with a slash
		{"Qwen/Qwen2.5-72B", "openai", "Qwen/Qwen2.5-72B"},                               // not a provider prefix
		{"vllm/", "openai", "vllm/"},                                                     // no model after the prefix
	}
	for _, tt := range tests {
		c, err := r.Route(tt.model)
		if err != nil {
			t.Errorf("Route(%q): %v", tt.model, err)
			continue
		}
		if got := c.Provider().Name; got != tt.provider {
			t.Errorf("Route(%q) got provider %q, want %q", tt.model, got, tt.provider)
		}
		if got := c.Provider().upstreamModel(tt.model); got != tt.upstream {
			t.Errorf("Route(%q) sends model %q upstream, want %q", tt.model, got, tt.upstream)
		}
	}
	if _, err := r.Route(""); err == nil {
		t.Errorf(`Route("") succeeded, want an error`)
	}

	noDefault, err := NewRouter("", testProviders()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noDefault.Route("gpt-5"); err == nil || !strings.Contains(err.Error(), `no provider for model "gpt-5"`) {
		t.Errorf(`Route("gpt-5") without a default: error = %v, want "no provider for model"`, err)
	}
}

func TestNewRouterErrors(t *testing.T) {
	base := testProviders()
	tests := []struct {
		name      string
		def       string
		providers []Provider
		want      string
	}{
		{"duplicate name", "", append(base, Provider{Name: "xai", BaseURL: "http://x"}), `provider "xai" is configured twice`},
		{"duplicate model", "", append(base, Provider{Name: "other", BaseURL: "http://x", Models: []string{"grok-4"}}), `model "grok-4" is listed by providers "xai" and "other"`},
		{"unknown default", "nope", base, `default provider "nope" is not configured`},
		{"no name", "", []Provider{{BaseURL: "http://x"}}, `provider with base_url "http://x" has no name`},
		{"slash in name", "", []Provider{{Name: "a/b", BaseURL: "http://x"}}, `provider name "a/b" contains "/"`},
		{"not http", "", []Provider{{Name: "a", BaseURL: "localhost:11434"}}, `base_url "localhost:11434" is not an http or https URL`},
		{"empty model", "", []Provider{{Name: "a", BaseURL: "http://x", Models: []string{""}}}, `provider "a": empty model name`},
	}
	for _, tt := range tests {
		_, err := NewRouter(tt.def, tt.providers...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewRouter error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestRouterModels(t *testing.T) {
	def := newScriptServer(t, answer{status: 200, body: `{"object":"list","data":[{"id":"gpt-4.1","object":"model"},{"id":"shared","object":"model"}]}`})
	xai := newScriptServer(t, answer{status: 200, body: `{"object":"list","data":[{"id":"grok-4","object":"model"},{"id":"grok-3","object":"model"},{"id":"shared","object":"model"}]}`})
	dead := httptest.NewServer(nil)
	dead.Close() // connection refused

	r, err := NewRouter("openai",
		Provider{Name: "xai", BaseURL: xai.URL, Models: []string{"grok-4"}},
		Provider{Name: "down", BaseURL: dead.URL, Models: []string{"local-model"}, MaxRetries: -1},
		Provider{Name: "openai", BaseURL: def.URL},
	)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r.Log = slog.New(slog.NewTextHandler(&logs, nil))
	models, err := r.Models(context.Background())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	var ids []string
	for _, m := range models {
		ids = append(ids, m.ID)
	}
	want := []string{"gpt-4.1", "shared", "grok-4", "xai/grok-3", "xai/shared", "local-model"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("model IDs\ngot:  %q\nwant: %q", ids, want)
	}
	for _, id := range ids {
		if _, err := r.Route(id); err != nil {
			t.Errorf("Route(%q) of a listed model: %v", id, err)
		}
	}
	if !strings.Contains(logs.String(), "provider=down") {
		t.Errorf("the failing provider was not logged; logs: %s", logs.String())
	}
}
