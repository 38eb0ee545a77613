package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serveConfig is the server's configuration: defaults, then the config file, then
// CODEEXEC_* variables, then flags, each overriding the one before.
type serveConfig struct {
	Addr          string   `json:"addr"`
	Store         string   `json:"store"`
	APIKeysFile   string   `json:"api_keys_file"`
	InsecureNoKey bool     `json:"insecure_no_auth"`
	Cold          bool     `json:"cold"`
	Prefork       int      `json:"prefork"`
	MaxConcurrent int      `json:"max_concurrent"`
	MaxQueued     int      `json:"max_queued"`
	MaxSessions   int      `json:"max_sessions"`
	SessionTTL    duration `json:"session_ttl"`
	MaxSessionTTL duration `json:"max_session_ttl"`
	SessionMaxAge duration `json:"session_max_age"`
	MaxTimeout    duration `json:"max_timeout"`
	MaxMemory     string   `json:"max_memory"`
	// LLMConfig is the upstream providers file; without it the upstream is read from
	// OPENAI_BASE_URL and OPENAI_API_KEY.
	LLMConfig string `json:"llm_config"`
	// MaxSteps bounds the model calls of one chat completion.
	MaxSteps int `json:"max_steps"`
	// Safety is the judge of model-written code: off, static or llm.
	Safety string `json:"safety"`
	// JudgeModel is the model the llm judge asks, routed like a request's.
	JudgeModel string `json:"judge_model"`
	// NetAllow are the host patterns executions may ask to reach ("network":
	// "allow=…"); empty: no execution gets network.
	NetAllow []string `json:"net_allow"`
	// ChatNet is the network of the gateway's code_execution tool: "none" or
	// "allow=HOST,…".
	ChatNet string `json:"chat_net"`
	// Image is the image (a name, or an image ID) of requests that name none.
	Image string `json:"image"`
	// Images are the images requests may name ("image"); empty: every image in the
	// store when the server starts.
	Images  []string `json:"images"`
	apiKeys []string
	chatNet *egress.Policy // ChatNet, parsed
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Addr:          "127.0.0.1:8080",
		Prefork:       4,
		MaxConcurrent: 16,
		MaxQueued:     64,
		MaxSessions:   1000,
		SessionTTL:    duration(10 * time.Minute),
		MaxSessionTTL: duration(time.Hour),
		SessionMaxAge: duration(4 * time.Hour),
		MaxTimeout:    duration(5 * time.Minute),
		MaxMemory:     "4GiB",
		MaxSteps:      10,
		Safety:        "off",
		JudgeModel:    "gpt-4o-mini",
		ChatNet:       "none",
		Image:         image.DefaultName,
	}
}

// duration reads "30s"-style strings in the config file.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func newServeCmd() *cobra.Command {
	cfg := defaultServeConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the execution API over HTTP",
		Long: `Serve the HTTP API: /v1/execute, sessions and their files, /healthz, /readyz and
/metrics. Configuration comes from defaults, then --config FILE (JSON), then CODEEXEC_*
variables (CODEEXEC_ADDR, CODEEXEC_STORE, CODEEXEC_API_KEYS as a comma-separated
list, CODEEXEC_API_KEYS_FILE, CODEEXEC_NET_ALLOW as a comma-separated list), then flags.

Executions have no network unless a request asks for "network": "allow=HOST,…" and
every host it names is covered by --net-allow; their traffic then leaves only through
codeexec's egress proxy, which refuses other hosts and private or local addresses.

Without API keys the server listens on loopback addresses only, unless
--insecure-no-auth says otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.load(configFile, cmd.Flags()); err != nil {
				return usageError{err}
			}
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "JSON config file")
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	f.StringVar(&cfg.Store, "store", "", "image and state directory (default $CODEEXEC_STORE or "+defaultStore+")")
	f.StringVar(&cfg.APIKeysFile, "api-keys-file", "", "file of API keys, one per line")
	f.BoolVar(&cfg.InsecureNoKey, "insecure-no-auth", false, "allow listening beyond loopback without API keys")
	f.BoolVar(&cfg.Cold, "cold", false, "start a fresh interpreter per execution instead of forking a warm one (no sessions)")
	f.IntVar(&cfg.Prefork, "prefork", cfg.Prefork, "warm interpreters kept ready")
	f.IntVar(&cfg.MaxConcurrent, "max-concurrent", cfg.MaxConcurrent, "executions running at once")
	f.IntVar(&cfg.MaxQueued, "max-queued", cfg.MaxQueued, "executions waiting for a turn before 429")
	f.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "sessions alive at once")
	f.StringVar(&cfg.Safety, "safety", cfg.Safety, "judge model-written code before it runs: off, static or llm (static, then a model)")
	f.StringVar(&cfg.JudgeModel, "judge-model", cfg.JudgeModel, "the model the llm judge asks")
	f.StringVar(&cfg.LLMConfig, "llm-config", "", "JSON file of upstream model providers (default: OPENAI_BASE_URL and OPENAI_API_KEY)")
	f.StringVar(&cfg.ChatNet, "chat-net", cfg.ChatNet, "network of the gateway's code_execution tool: none, or allow=HOST[,HOST…]")
	f.StringSliceVar(&cfg.NetAllow, "net-allow", nil, "hosts executions may reach through the egress proxy, e.g. example.com,*.pypi.org (default: none)")
	f.StringVar(&cfg.Image, "image", cfg.Image, "image of requests that name none (a name, or an ID from `codeexec image list`)")
	f.StringSliceVar(&cfg.Images, "images", nil, "images requests may name, e.g. python,ml (default: every image in the store at start)")
	return cmd
}

// load applies the config file, then the environment, then the flags that were set.
func (c *serveConfig) load(file string, flags *pflag.FlagSet) error {
	fromFlags := *c
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return fmt.Errorf("config %q: %w", file, err)
		}
	}
	if v := os.Getenv("CODEEXEC_ADDR"); v != "" {
		c.Addr = v
	}
	if v := os.Getenv("CODEEXEC_API_KEYS_FILE"); v != "" {
		c.APIKeysFile = v
	}
	if v := os.Getenv("CODEEXEC_NET_ALLOW"); v != "" {
		c.NetAllow = strings.Split(v, ",")
	}
	flags.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "addr":
			c.Addr = fromFlags.Addr
		case "store":
			c.Store = fromFlags.Store
		case "api-keys-file":
			c.APIKeysFile = fromFlags.APIKeysFile
		case "insecure-no-auth":
			c.InsecureNoKey = fromFlags.InsecureNoKey
		case "cold":
			c.Cold = fromFlags.Cold
		case "prefork":
			c.Prefork = fromFlags.Prefork
		case "max-concurrent":
			c.MaxConcurrent = fromFlags.MaxConcurrent
		case "max-queued":
			c.MaxQueued = fromFlags.MaxQueued
		case "max-sessions":
			c.MaxSessions = fromFlags.MaxSessions
		case "llm-config":
			c.LLMConfig = fromFlags.LLMConfig
		case "safety":
			c.Safety = fromFlags.Safety
		case "judge-model":
			c.JudgeModel = fromFlags.JudgeModel
		case "net-allow":
			c.NetAllow = fromFlags.NetAllow
		case "chat-net":
			c.ChatNet = fromFlags.ChatNet
		case "image":
			c.Image = fromFlags.Image
		case "images":
			c.Images = fromFlags.Images
		}
	})
	c.Store = storeDir(c.Store)
	keys, err := readAPIKeys(c.APIKeysFile, os.Getenv("CODEEXEC_API_KEYS"))
	if err != nil {
		return err
	}
	c.apiKeys = keys
	for i, h := range c.NetAllow {
		c.NetAllow[i] = strings.TrimSpace(h)
		if err := egress.ValidatePattern(c.NetAllow[i]); err != nil {
			return fmt.Errorf("net-allow: %w", err)
		}
	}
	if c.chatNet, err = egress.ParseSpec(c.ChatNet); err != nil {
		return fmt.Errorf("chat-net: %w", err)
	}
	if c.MaxConcurrent < 1 || c.MaxQueued < 0 || c.MaxSessions < 0 || c.Prefork < 0 {
		return errors.New("max-concurrent must be positive; max-queued, max-sessions and prefork not negative")
	}
	if len(keys) == 0 && !c.InsecureNoKey && !loopbackOnly(c.Addr) {
		return fmt.Errorf("refusing to listen on %q without API keys: use --api-keys-file (or CODEEXEC_API_KEYS), a loopback address, or --insecure-no-auth", c.Addr)
	}
	return nil
}

// readAPIKeys collects keys from a file (one per line, # comments) and a list.
func readAPIKeys(file, list string) ([]string, error) {
	var keys []string
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("api keys: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k := strings.TrimSpace(line); k != "" && !strings.HasPrefix(k, "#") {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("api keys: %q holds no key", file)
		}
	}
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// newUpstreams routes models to the providers of the config file, or to the one
// upstream the OpenAI SDKs would use.
func newUpstreams(configFile string) (*llm.Router, error) {
	if configFile == "" {
		p := llm.DefaultProvider()
		return llm.NewRouter(p.Name, p)
	}
	cfg, err := llm.LoadConfig(configFile)
	if err != nil {
		return nil, err
	}
	return cfg.Router()
}

// loopbackOnly reports whether addr can be reached only from this machine.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serve(ctx context.Context, c serveConfig) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	images, err := openImages(c, log)
	if err != nil {
		return err
	}
	defer images.Close()
	runner, err := images.Runner(images.Default())
	if err != nil {
		return err
	}
	img, _ := images.Image(images.Default())
	if !c.Cold {
		start := time.Now()
		if err := runner.Warm(); err != nil {
			log.Error("warm interpreters unavailable; executions run cold and sessions are off", "err", err)
		} else {
			log.Info("warm interpreter ready", "ms", time.Since(start).Milliseconds())
		}
	}
	sessions := session.NewManager(session.Config{
		Max:         c.MaxSessions,
		IdleTTL:     time.Duration(c.SessionTTL),
		MaxIdleTTL:  time.Duration(c.MaxSessionTTL),
		MaxLifetime: time.Duration(c.SessionMaxAge),
	}, runner)
	defer sessions.Close()

	acfg := api.DefaultConfig()
	acfg.APIKeys = c.apiKeys
	acfg.NetworkAllow = c.NetAllow
	acfg.MaxConcurrent, acfg.MaxQueued = c.MaxConcurrent, c.MaxQueued
	acfg.MaxLimits.Timeout = time.Duration(c.MaxTimeout)
	if acfg.MaxLimits.MemoryBytes, err = parseSize(c.MaxMemory); err != nil {
		return fmt.Errorf("max_memory: %w", err)
	}
	ready := func() error {
		if c.Cold {
			return nil
		}
		return runner.Warm()
	}
	srv := api.New(acfg, runner, sessions, ready, log)
	srv.SetImages(apiImages{images})
	upstreams, err := newUpstreams(c.LLMConfig)
	if err != nil {
		return err
	}
	var judgeClient *llm.Client
	if c.Safety == "llm" {
		if judgeClient, err = upstreams.Route(c.JudgeModel); err != nil {
			return fmt.Errorf("judge model: %w", err)
		}
	}
	judge, err := safety.New(c.Safety, runner, judgeClient, c.JudgeModel)
	if err != nil {
		return err
	}
	srv.SetGateway(&api.Gateway{Upstreams: upstreams, Agent: &agent.Agent{
		NewSandbox: agent.Sessions(runner, acfg.DefaultLimits, c.chatNet),
		Judge:      judge,
		MaxSteps:   c.MaxSteps,
		Network:    c.chatNet,
	}})

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Requests run under reqCtx: cancelling it stops every execution at shutdown.
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := &http.Server{Handler: srv.Handler(), BaseContext: func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second}
	if len(c.apiKeys) == 0 {
		log.Warn("no API keys configured: anyone who can reach the address can run code", "addr", ln.Addr().String())
	}
	log.Info("serving", "addr", ln.Addr().String(), "store", c.Store, "image", img.ID(), "images", strings.Join(images.Names(), ","),
		"cgroup", "v"+strconv.Itoa(int(runner.CgroupVersion())), "warm", !c.Cold, "keys", len(c.apiKeys), "safety", c.Safety)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing running executions (up to 30s)")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		log.Warn("executions still running at the deadline are being stopped", "err", err)
		cancelRequests()
		_ = hs.Close()
	}
	sessions.Close()
	if err := images.Close(); err != nil {
		return fmt.Errorf("cleaning up sandboxes: %w", err)
	}
	log.Info("stopped")
	return nil
}
