package llm

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Defaults of a Provider's zero fields.
const (
	// DefaultBaseURL is OpenAI's API, as the OpenAI SDKs default to.
	DefaultBaseURL = "https://api.openai.com/v1"
	// DefaultTimeout is the OpenAI SDKs' default: long enough for a reasoning model.
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxRetries is the OpenAI SDKs' default.
	DefaultMaxRetries = 2
	// MaxResponseBytes caps a non-streaming body and one streamed event.
	MaxResponseBytes = 32 << 20
)

// Provider is one OpenAI-compatible upstream. Plain data; the zero values of
// Timeout and MaxRetries mean the defaults.
type Provider struct {
	// Name identifies the provider in routes ("name/model"), logs and errors.
	// It must not contain "/".
	Name string
	// BaseURL is the API root, e.g. https://api.x.ai/v1; paths such as
	// /chat/completions are appended to it.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>". When empty, the key is read
	// from the environment variable APIKeyEnv; when that is empty too, no
	// Authorization header is sent (Ollama, llama.cpp and vLLM need none).
	APIKey    string
	APIKeyEnv string
	// Models are model names routed to this provider as they are.
	Models []string
	// Timeout bounds one attempt of a non-streaming call, and for streams the wait
	// for the response headers and every gap between two events. 0 means
	// DefaultTimeout. The caller's context bounds the whole call.
	Timeout time.Duration
	// MaxRetries is how many times a failed call is tried again: 0 means
	// DefaultMaxRetries, a negative number means never.
	MaxRetries int
	// Headers are added to every request (e.g. OpenRouter's HTTP-Referer).
	Headers map[string]string
	// HTTPClient sends the requests; nil means a client with Go's default transport.
	// Its own Timeout, if any, also applies to streams: leave it zero.
	HTTPClient *http.Client
}

// DefaultProvider is the upstream the OpenAI SDKs would use: OPENAI_BASE_URL
// (default DefaultBaseURL) with the key in OPENAI_API_KEY. Its name is "openai".
func DefaultProvider() Provider {
	base := os.Getenv("OPENAI_BASE_URL")
	if base == "" {
		base = DefaultBaseURL
	}
	return Provider{Name: "openai", BaseURL: base, APIKeyEnv: "OPENAI_API_KEY"}
}

// Validate checks the fields that can be wrong without asking the upstream.
func (p Provider) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("provider with base_url %q has no name", p.BaseURL)
	}
	if strings.Contains(p.Name, "/") {
		return fmt.Errorf("provider name %q contains \"/\", which separates provider from model", p.Name)
	}
	u, err := url.Parse(p.BaseURL)
	if err != nil {
		return fmt.Errorf("provider %q: base_url: %w", p.Name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("provider %q: base_url %q is not an http or https URL", p.Name, p.BaseURL)
	}
	if p.Timeout < 0 {
		return fmt.Errorf("provider %q: timeout %v is negative", p.Name, p.Timeout)
	}
	for _, m := range p.Models {
		if m == "" {
			return fmt.Errorf("provider %q: empty model name in models", p.Name)
		}
	}
	return nil
}

// apiKey returns the key to send, or "".
func (p Provider) apiKey() string {
	if p.APIKey != "" {
		return p.APIKey
	}
	if p.APIKeyEnv != "" {
		return os.Getenv(p.APIKeyEnv)
	}
	return ""
}

// servesModel reports whether model is listed in p.Models.
func (p Provider) servesModel(model string) bool {
	return slices.Contains(p.Models, model)
}

// upstreamModel is the name the upstream knows model by: "name/model" loses this
// provider's prefix unless the whole string is one of its Models.
func (p Provider) upstreamModel(model string) string {
	if p.Name == "" || p.servesModel(model) {
		return model
	}
	if rest, ok := strings.CutPrefix(model, p.Name+"/"); ok && rest != "" {
		return rest
	}
	return model
}
