package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Config is the providers section of codeexec's configuration, read from a JSON
// file such as testdata/providers.example.json:
//
//	{
//	  "providers": [
//	    {"name": "xai", "base_url": "https://api.x.ai/v1", "api_key_env": "XAI_API_KEY",
//	     "models": ["grok-4"], "timeout": "60s", "max_retries": 3},
//	    {"name": "ollama", "base_url": "http://localhost:11434/v1"}
//	  ],
//	  "default": "xai"
//	}
//
// Keys are never in the file, only the names of the environment variables holding
// them. Base URLs of the usual upstreams: OpenAI https://api.openai.com/v1
// (OPENAI_API_KEY), xAI https://api.x.ai/v1 (XAI_API_KEY), Ollama
// http://localhost:11434/v1 (no key), vLLM http://localhost:8000/v1 (a key only if
// started with --api-key), llama.cpp's llama-server http://localhost:8080/v1 by
// default, which is also codeexec serve's default address, so start one of them on
// another port (the example uses 8081). Timeouts are Go durations; max_retries -1
// turns retries off. Without "default", the default provider is DefaultProvider() (OPENAI_BASE_URL
// and OPENAI_API_KEY), named "openai", unless the file configures one of that name.
type Config struct {
	Providers []Provider
	Default   string
}

// providerFile is one provider as the config file spells it.
type providerFile struct {
	Name       string            `json:"name"`
	BaseURL    string            `json:"base_url"`
	APIKeyEnv  string            `json:"api_key_env"`
	APIKey     string            `json:"api_key"` // rejected, so that the error can say why
	Models     []string          `json:"models"`
	Timeout    string            `json:"timeout"`
	MaxRetries int               `json:"max_retries"`
	Headers    map[string]string `json:"headers"`
}

type configFile struct {
	Providers []providerFile `json:"providers"`
	Default   string         `json:"default"`
}

// LoadConfig reads and checks the config file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading provider config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("provider config %q: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a config file's contents strictly: unknown fields, trailing
// data, bad durations and invalid providers are errors.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f configFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	cfg := &Config{Default: f.Default}
	for i, pf := range f.Providers {
		p, err := pf.provider()
		if err != nil {
			return nil, fmt.Errorf("providers[%d]: %w", i, err)
		}
		cfg.Providers = append(cfg.Providers, p)
	}
	// Build the router once to report duplicate names, duplicate models and a
	// default that names no provider now rather than at the first request.
	if _, err := cfg.Router(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (pf providerFile) provider() (Provider, error) {
	if pf.APIKey != "" {
		return Provider{}, fmt.Errorf("provider %q: api_key is not allowed in the config file; put the key in an environment variable and name it in api_key_env", pf.Name)
	}
	p := Provider{
		Name:       pf.Name,
		BaseURL:    pf.BaseURL,
		APIKeyEnv:  pf.APIKeyEnv,
		Models:     pf.Models,
		MaxRetries: pf.MaxRetries,
		Headers:    pf.Headers,
	}
	if pf.Timeout != "" {
		d, err := time.ParseDuration(pf.Timeout)
		if err != nil {
			return Provider{}, fmt.Errorf("provider %q: timeout %q: %w", pf.Name, pf.Timeout, err)
		}
		if d <= 0 {
			return Provider{}, fmt.Errorf("provider %q: timeout %q is not positive", pf.Name, pf.Timeout)
		}
		p.Timeout = d
	}
	return p, p.Validate()
}

// Router returns a router over the configured providers. The zero Config routes
// every model to DefaultProvider().
func (c *Config) Router() (*Router, error) {
	providers, def := c.Providers, c.Default
	if def == "" {
		def = DefaultProvider().Name
		if !hasProvider(providers, def) {
			providers = append([]Provider{DefaultProvider()}, providers...)
		}
	}
	return NewRouter(def, providers...)
}

func hasProvider(ps []Provider, name string) bool {
	return slices.ContainsFunc(ps, func(p Provider) bool { return p.Name == name })
}
