package llm

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig("testdata/providers.example.json")
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	var names []string
	for _, p := range cfg.Providers {
		names = append(names, p.Name)
	}
	if want := []string{"openai", "xai", "ollama", "vllm", "llamacpp"}; !reflect.DeepEqual(names, want) {
		t.Errorf("providers %q, want %q", names, want)
	}
	xai := cfg.Providers[1]
	want := Provider{Name: "xai", BaseURL: "https://api.x.ai/v1", APIKeyEnv: "XAI_API_KEY",
		Models: []string{"grok-4", "grok-code-fast-1"}, Timeout: 5 * time.Minute, MaxRetries: 3}
	if !reflect.DeepEqual(xai, want) {
		t.Errorf("xai provider\ngot:  %+v\nwant: %+v", xai, want)
	}
	if cfg.Default != "openai" {
		t.Errorf("Default %q, want %q", cfg.Default, "openai")
	}
	r, err := cfg.Router()
	if err != nil {
		t.Fatal(err)
	}
	for model, provider := range map[string]string{"grok-4": "xai", "llama3.1:8b": "ollama", "llamacpp/any": "llamacpp", "gpt-5": "openai"} {
		if c, err := r.Route(model); err != nil || c.Provider().Name != provider {
			t.Errorf("Route(%q) = %v, %v; want provider %q", model, c, err, provider)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown top-level field", `{"providers":[],"defaults":"x"}`, `unknown field "defaults"`},
		{"unknown provider field", `{"providers":[{"name":"a","base_url":"http://a","apikey_env":"K"}]}`, `unknown field "apikey_env"`},
		{"key in the file", `{"providers":[{"name":"a","base_url":"http://a","api_key":"sk-123"}]}`, `provider "a": api_key is not allowed in the config file`},
		{"bad timeout", `{"providers":[{"name":"a","base_url":"http://a","timeout":"60"}]}`, `providers[0]: provider "a": timeout "60": time: missing unit`},
		{"zero timeout", `{"providers":[{"name":"a","base_url":"http://a","timeout":"0s"}]}`, `timeout "0s" is not positive`},
		{"trailing data", `{"providers":[]} {}`, `data after the JSON object`},
		{"wrong type", `{"providers":[{"name":"a","base_url":"http://a","max_retries":"3"}]}`, `cannot unmarshal string`},
		{"duplicate name", `{"providers":[{"name":"a","base_url":"http://a"},{"name":"a","base_url":"http://b"}]}`, `provider "a" is configured twice`},
		{"unknown default", `{"providers":[{"name":"a","base_url":"http://a"}],"default":"b"}`, `default provider "b" is not configured`},
		{"bad base_url", `{"providers":[{"name":"a","base_url":"ftp://a"}]}`, `base_url "ftp://a" is not an http or https URL`},
		{"not JSON", `providers: []`, `invalid character`},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseConfig(%s) error = %v, want one containing %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestLoadConfigQuotesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(path, []byte(`{"bogus":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), `provider config "`+path+`": json: unknown field "bogus"`) {
		t.Errorf("LoadConfig error = %v, want one quoting the path", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Errorf("LoadConfig of a missing file succeeded")
	}
}

func TestConfigDefaultProvider(t *testing.T) {
	t.Setenv("OPENAI_BASE_URL", "http://localhost:9999/v1")
	t.Setenv("OPENAI_API_KEY", "sk-env")

	r, err := (&Config{}).Router()
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Route("anything")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Provider(); p.Name != "openai" || p.BaseURL != "http://localhost:9999/v1" || c.key != "sk-env" {
		t.Errorf("zero Config routes to %+v with key %q, want the OPENAI_* environment", p, c.key)
	}

	// A configured provider named "openai" replaces the environment's.
	cfg, err := ParseConfig([]byte(`{"providers":[{"name":"openai","base_url":"https://proxy.example/v1"},{"name":"x","base_url":"http://x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err = cfg.Router()
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := r.Route("anything"); c.Provider().BaseURL != "https://proxy.example/v1" {
		t.Errorf("default provider %q, want the configured openai", c.Provider().BaseURL)
	}
	if n := len(r.Providers()); n != 2 {
		t.Errorf("%d providers, want 2", n)
	}

	t.Setenv("OPENAI_BASE_URL", "")
	if got := DefaultProvider().BaseURL; got != DefaultBaseURL {
		t.Errorf("DefaultProvider().BaseURL = %q without OPENAI_BASE_URL, want %q", got, DefaultBaseURL)
	}
}
