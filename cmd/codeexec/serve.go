package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/jsonerr"
	"github.com/codeexec/codeexec/internal/sandbox"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/e2b"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/imageset"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// serveConfig is the server's configuration: defaults, then the config file, then
// CODEEXEC_* variables, then flags, each overriding the one before.
type serveConfig struct {
	Addr string `json:"addr"`
	// E2BAddr, when set, is the address of the E2B-compatible API (internal/e2b).
	E2BAddr       string   `json:"e2b_addr"`
	Store         string   `json:"store"`
	APIKeysFile   string   `json:"api_keys_file"`
	InsecureNoKey bool     `json:"insecure_no_auth"`
	Cold          bool     `json:"cold"`
	Prefork       int      `json:"prefork"`
	NodePool      int      `json:"node_pool"`
	MaxConcurrent int      `json:"max_concurrent"`
	MaxQueued     int      `json:"max_queued"`
	MaxSessions   int      `json:"max_sessions"`
	SessionTTL    duration `json:"session_ttl"`
	MaxSessionTTL duration `json:"max_session_ttl"`
	SessionMaxAge duration `json:"session_max_age"`
	// ResponseTTL is how long /v1/responses keeps a response for previous_response_id.
	ResponseTTL duration `json:"response_ttl"`
	// MaxFileStorage bounds the bytes of one tenant's /v1/files (kept in memory);
	// "0": no bound.
	MaxFileStorage string `json:"max_file_storage"`
	// ResponseImages is how /v1/responses gives the images of code outputs: "url"
	// (of the container's files here) or "data" (data: URLs, inline).
	ResponseImages string `json:"response_images"`
	// UpstreamResponses is when a Responses request without the code tool goes to
	// the upstream's own Responses endpoint: auto, on or off (api.Gateway).
	UpstreamResponses string   `json:"upstream_responses"`
	MaxTimeout        duration `json:"max_timeout"`
	MaxMemory         string   `json:"max_memory"`
	// MaxTotalMemory, MaxTotalPids and MaxTotalCPUs bound all sandboxes together
	// (their parent cgroup): executions, sessions and the warm interpreters. Unset
	// (empty or 0): derived from the machine, see cgroup.MachineTotals.
	MaxTotalMemory string  `json:"max_total_memory"`
	MaxTotalPids   int64   `json:"max_total_pids"`
	MaxTotalCPUs   float64 `json:"max_total_cpus"`
	// MaxTotalStorage bounds the tmpfs sizes (work dir, /tmp, /dev/shm) of all live
	// sandboxes together; "" is the host's memory (MemTotal), "0" no bound.
	MaxTotalStorage string `json:"max_total_storage"`
	// LLMConfig is the upstream providers file; without it the upstream is read from
	// OPENAI_BASE_URL and OPENAI_API_KEY.
	LLMConfig string `json:"llm_config"`
	// MaxSteps bounds the model calls of one chat completion.
	MaxSteps int `json:"max_steps"`
	// Safety is the judge of model-written code: off, static or llm.
	Safety string `json:"safety"`
	// SafetyScope is what the judge checks: "chat" (the gateway's code tool) or
	// "all" (also /v1/execute and session executions).
	SafetyScope string `json:"safety_scope"`
	// JudgeModel is the model the llm judge asks, routed like a request's.
	JudgeModel string `json:"judge_model"`
	// NetAllow are the host patterns executions may ask to reach ("network":
	// "allow=…"); empty: no execution gets network.
	NetAllow []string `json:"net_allow"`
	// ChatNet is the network of the gateway's code_execution tool: "none" or
	// "allow=HOST,…".
	ChatNet string `json:"chat_net"`
	// MCPNet is the network of code run through MCP (/mcp and codeexec mcp): "none"
	// or "allow=HOST,…".
	MCPNet string `json:"mcp_net"`
	// Image is the image (a name, or an image ID) of requests that name none.
	Image string `json:"image"`
	// Images are the images requests may name ("image"); empty: every image in the
	// store when the server starts.
	Images []string `json:"images"`
	// What one client can hold of the server (api.ConnLimits); 0 turns a limit off.
	HeaderTimeout     duration `json:"header_timeout"`
	BodyTimeout       duration `json:"body_timeout"`
	BodyMinRate       string   `json:"body_min_rate"` // bytes per second
	SendTimeout       duration `json:"send_timeout"`
	IdleTimeout       duration `json:"idle_timeout"`
	MaxHeaderBytes    string   `json:"max_header_bytes"`
	MaxConns          int      `json:"max_conns"`
	MaxConnsPerClient int      `json:"max_conns_per_client"`
	apiKeys           []tenant.Key
	chatNet           *egress.Policy // ChatNet, parsed
	mcpNet            *egress.Policy // MCPNet, parsed
	totals            cgroup.Limits  // the MaxTotal* settings, resolved
	conn              api.ConnLimits // the connection limits, parsed
}

func defaultServeConfig() serveConfig {
	conn := api.DefaultConnLimits()
	return serveConfig{
		Addr:              "127.0.0.1:8080",
		Prefork:           4,
		NodePool:          2,
		MaxConcurrent:     16,
		MaxQueued:         64,
		MaxSessions:       1000,
		SessionTTL:        duration(10 * time.Minute),
		MaxSessionTTL:     duration(time.Hour),
		SessionMaxAge:     duration(4 * time.Hour),
		ResponseTTL:       duration(time.Hour),
		MaxFileStorage:    "256MiB",
		ResponseImages:    "url",
		UpstreamResponses: "auto",
		MaxTimeout:        duration(5 * time.Minute),
		MaxMemory:         "4GiB",
		MaxSteps:          10,
		Safety:            "off",
		SafetyScope:       "chat",
		JudgeModel:        "gpt-4o-mini",
		ChatNet:           "none",
		MCPNet:            "none",

		HeaderTimeout:     duration(conn.HeaderTimeout),
		BodyTimeout:       duration(conn.BodyTimeout),
		BodyMinRate:       strconv.FormatInt(conn.BodyMinRate>>10, 10) + "KiB",
		SendTimeout:       duration(conn.SendTimeout),
		IdleTimeout:       duration(conn.IdleTimeout),
		MaxHeaderBytes:    strconv.Itoa(conn.MaxHeaderBytes>>10) + "KiB",
		MaxConns:          conn.MaxConns,
		MaxConnsPerClient: conn.MaxConnsPerClient,
		Image:             image.DefaultName,
	}
}

// duration reads "30s"-style strings in the config file.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"30s\"", s)
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
		Long: `Serve the HTTP API: /v1/execute, sessions and their files, MCP at /mcp (streamable
HTTP, the tools of codeexec mcp), /healthz, /readyz and /metrics. Configuration comes
from defaults, then --config FILE (JSON), then CODEEXEC_* variables, then flags. Every
key of the file has its variable (max_conns: CODEEXEC_MAX_CONNS; lists comma-separated)
and most a flag (--max-conns); besides, CODEEXEC_API_KEYS is a comma-separated list of
keys. An unknown key or CODEEXEC_ variable is an error that names the valid ones.

A keys file holds a key a line, optionally with options: "KEY tenant=NAME
max_sessions=N max_concurrent=N". Sessions belong to the tenant of the key that made
them; a key without a tenant is a tenant of its own.

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
	cmd.Flags().StringVar(&configFile, "config", "", "JSON config file")
	bindServeFlags(cmd.Flags(), &cfg)
	return cmd
}

// bindServeFlags defines serve's flags, each with its default from cfg, into cfg.
func bindServeFlags(f *pflag.FlagSet, cfg *serveConfig) {
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	f.StringVar(&cfg.E2BAddr, "e2b-addr", cfg.E2BAddr, "listen address of the E2B-compatible API, for the e2b SDKs' E2B_API_URL and E2B_SANDBOX_URL (empty: off)")
	f.StringVar(&cfg.Store, "store", "", "image and state directory (default $CODEEXEC_STORE or "+defaultStore+")")
	f.StringVar(&cfg.APIKeysFile, "api-keys-file", "", "file of API keys, one per line, each optionally with tenant=NAME max_sessions=N max_concurrent=N")
	f.BoolVar(&cfg.InsecureNoKey, "insecure-no-auth", false, "allow listening beyond loopback without API keys")
	f.BoolVar(&cfg.Cold, "cold", false, "start a fresh interpreter per execution instead of forking a warm one (no sessions)")
	f.IntVar(&cfg.Prefork, "prefork", cfg.Prefork, "warm interpreters kept ready")
	f.IntVar(&cfg.NodePool, "node-pool", cfg.NodePool, "sandboxes with a started Node kept ready for JavaScript (0: start Node per execution)")
	f.IntVar(&cfg.MaxConcurrent, "max-concurrent", cfg.MaxConcurrent, "executions running at once")
	f.IntVar(&cfg.MaxQueued, "max-queued", cfg.MaxQueued, "executions waiting for a turn before 429")
	f.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "sessions alive at once")
	f.StringVar(&cfg.MaxTotalStorage, "max-total-storage", "", "the most the file systems of all live sandboxes (work dir, /tmp, /dev/shm) may hold together, e.g. 64GiB; 0: no bound (default: the host's memory)")
	f.StringVar(&cfg.Safety, "safety", cfg.Safety, "judge model-written code before it runs: off, static or llm (static, then a model)")
	f.StringVar(&cfg.SafetyScope, "safety-scope", cfg.SafetyScope, "what --safety judges: chat (the gateway's code tool) or all (also /v1/execute and sessions)")
	f.StringVar(&cfg.JudgeModel, "judge-model", cfg.JudgeModel, "the model the llm judge asks")
	f.StringVar(&cfg.LLMConfig, "llm-config", "", "JSON file of upstream model providers (default: OPENAI_BASE_URL and OPENAI_API_KEY)")
	f.StringVar(&cfg.ChatNet, "chat-net", cfg.ChatNet, "network of the gateway's code_execution tool: none, or allow=HOST[,HOST…]")
	f.StringVar(&cfg.MCPNet, "mcp-net", cfg.MCPNet, "network of code run through MCP: none, or allow=HOST[,HOST…]")
	f.StringSliceVar(&cfg.NetAllow, "net-allow", nil, "hosts executions may reach through the egress proxy, e.g. example.com,*.pypi.org (default: none)")
	f.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "client connections open at once (0: no limit)")
	f.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", cfg.MaxConnsPerClient, "client connections open at once from one address, an IPv6 /64 (0: no limit; behind a reverse proxy every client is the proxy)")
	f.StringVar(&cfg.MaxTotalMemory, "max-total-memory", "", "memory of all sandboxes together, e.g. 16GiB (default: 3/4 of RAM less 512MiB)")
	f.Int64Var(&cfg.MaxTotalPids, "max-total-pids", 0, "processes and threads of all sandboxes together (default: 8192, at most half the kernel's pid_max and threads-max)")
	f.Float64Var(&cfg.MaxTotalCPUs, "max-total-cpus", 0, "CPU cores all sandboxes together may use (default: all but a tenth, at least 0.5 and at most 2 kept)")
	f.StringVar(&cfg.Image, "image", cfg.Image, "image of requests that name none (a name, or an ID from `codeexec image list`)")
	f.StringSliceVar(&cfg.Images, "images", nil, "images requests may name, e.g. python,ml (default: every image in the store at start)")
}

// load applies the config file, then the environment, then the flags that were set.
func (c *serveConfig) load(file string, flags *pflag.FlagSet) error {
	fromFlags := *c
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := decodeConfig(data, c); err != nil {
			return fmt.Errorf("config %q: %w", file, err)
		}
	}
	if err := applyEnv(c, os.Environ()); err != nil {
		return err
	}
	// A flag that was set wins: its value went into fromFlags before the file and the
	// environment overwrote c. Each flag is named for its key, "-" for "_".
	from, to := configFields(&fromFlags), configFields(c)
	flags.Visit(func(f *pflag.Flag) {
		if key := strings.ReplaceAll(f.Name, "-", "_"); to[key].IsValid() {
			to[key].Set(from[key])
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
	if c.mcpNet, err = egress.ParseSpec(c.MCPNet); err != nil {
		return fmt.Errorf("mcp-net: %w", err)
	}
	machine, err := cgroup.MachineTotals()
	if err != nil {
		return fmt.Errorf("size the limits of all sandboxes: %w", err)
	}
	if c.totals, err = c.resolveTotals(machine); err != nil {
		return err
	}
	if c.SafetyScope != "chat" && c.SafetyScope != "all" {
		return fmt.Errorf("safety-scope %q is not chat or all", c.SafetyScope)
	}
	if c.SafetyScope == "all" && c.Safety == "off" {
		return errors.New(`safety-scope "all" needs a judge: set --safety static or llm`)
	}
	if c.MaxTotalStorage != "" {
		if _, err := parseSize(c.MaxTotalStorage); err != nil {
			return fmt.Errorf("max-total-storage: %w", err)
		}
	}
	if !slices.Contains([]string{"auto", "on", "off"}, c.UpstreamResponses) {
		return fmt.Errorf("upstream_responses %q is not auto, on or off", c.UpstreamResponses)
	}
	if c.ResponseImages != "url" && c.ResponseImages != "data" {
		return fmt.Errorf("response_images %q is not url or data", c.ResponseImages)
	}
	if _, err := parseSize(c.MaxFileStorage); err != nil {
		return fmt.Errorf("max-file-storage: %w", err)
	}
	if c.MaxConcurrent < 1 || c.MaxQueued < 0 || c.MaxSessions < 0 || c.Prefork < 0 || c.NodePool < 0 {
		return errors.New("max-concurrent must be positive; max-queued, max-sessions, prefork and node-pool not negative")
	}
	if c.conn, err = c.connLimits(); err != nil {
		return err
	}
	if len(keys) == 0 && !c.InsecureNoKey && !loopbackOnly(c.Addr) {
		return fmt.Errorf("refusing to listen on %q without API keys: use --api-keys-file (or CODEEXEC_API_KEYS), a loopback address, or --insecure-no-auth", c.Addr)
	}
	if len(keys) == 0 && !c.InsecureNoKey && c.E2BAddr != "" && !loopbackOnly(c.E2BAddr) {
		return fmt.Errorf("refusing to serve the E2B API on %q without API keys: use --api-keys-file (or CODEEXEC_API_KEYS), a loopback address, or --insecure-no-auth", c.E2BAddr)
	}
	return nil
}

// resolveTotals turns the MaxTotal* settings into the limits of all sandboxes
// together, taking machine's for those not set.
func (c *serveConfig) resolveTotals(machine cgroup.Limits) (cgroup.Limits, error) {
	t := machine
	if c.MaxTotalMemory != "" {
		n, err := parseSize(c.MaxTotalMemory)
		if err != nil || n < 64<<20 {
			return t, fmt.Errorf("max-total-memory %q: want a size of at least 64MiB, such as 16GiB", c.MaxTotalMemory)
		}
		t.MemoryBytes = n
	}
	switch {
	case c.MaxTotalPids < 0 || c.MaxTotalPids > 0 && c.MaxTotalPids < 64:
		return t, fmt.Errorf("max-total-pids %d: want at least 64 (or 0 for the default, %d)", c.MaxTotalPids, machine.Pids)
	case c.MaxTotalPids > 0:
		t.Pids = c.MaxTotalPids
	}
	switch {
	case c.MaxTotalCPUs < 0 || c.MaxTotalCPUs > 0 && c.MaxTotalCPUs < 0.1:
		return t, fmt.Errorf("max-total-cpus %v: want at least 0.1 (or 0 for the default, %v)", c.MaxTotalCPUs, machine.CPUs)
	case c.MaxTotalCPUs > 0:
		t.CPUs = c.MaxTotalCPUs
	}
	return t, nil
}

// withinTotals lowers each limit of l above the totals to them: no execution can be
// given more than all of them together.
func withinTotals(l job.Limits, t cgroup.Limits) job.Limits {
	l.MemoryBytes = min(l.MemoryBytes, t.MemoryBytes)
	l.Pids = min(l.Pids, t.Pids)
	l.CPUs = min(l.CPUs, t.CPUs)
	return l
}

// connLimits checks and converts the connection limits of the config.
func (c *serveConfig) connLimits() (api.ConnLimits, error) {
	l := api.ConnLimits{
		HeaderTimeout:     time.Duration(c.HeaderTimeout),
		BodyTimeout:       time.Duration(c.BodyTimeout),
		SendTimeout:       time.Duration(c.SendTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
		MaxConns:          c.MaxConns,
		MaxConnsPerClient: c.MaxConnsPerClient,
	}
	var err error
	if l.BodyMinRate, err = parseSize(c.BodyMinRate); err != nil {
		return l, fmt.Errorf("body_min_rate: %w", err)
	}
	headerBytes, err := parseSize(c.MaxHeaderBytes)
	if err != nil || headerBytes > 1<<30 {
		return l, fmt.Errorf("max_header_bytes: %q is not a size up to 1GiB", c.MaxHeaderBytes)
	}
	l.MaxHeaderBytes = int(headerBytes)
	return l, l.Validate()
}

// decodeConfig reads a JSON config file into c key by key, so that a mistake names
// its key, and an unknown key the valid ones.
func decodeConfig(data []byte, c *serveConfig) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return errors.New(jsonerr.Describe(err, &raw))
	}
	fields := configFields(c)
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		f, ok := fields[key]
		if !ok {
			return fmt.Errorf("unknown key %q; the keys are %s", key, strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
		}
		if err := json.Unmarshal(raw[key], f.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %s", key, jsonerr.Describe(err, f.Interface()))
		}
	}
	return nil
}

// otherVariables are the CODEEXEC_* variables that are not config keys: read by
// serve (the keys, the replica's name), by other commands (chat) or by the tests.
var otherVariables = []string{"CODEEXEC_API_KEYS", "CODEEXEC_REPLICA", "CODEEXEC_API_KEY", "CODEEXEC_MODEL",
	"CODEEXEC_REQUIRE_INTEGRATION", "CODEEXEC_TEST_IMAGE_BUILD"}

// applyEnv sets every config key named by a CODEEXEC_<KEY> variable of environ
// (max_conns: CODEEXEC_MAX_CONNS; a list is comma-separated). An unknown CODEEXEC_ variable is an error that names the
// known ones: a misspelt setting must not pass unnoticed.
func applyEnv(c *serveConfig, environ []string) error {
	fields := configFields(c)
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		key, ok := strings.CutPrefix(name, "CODEEXEC_")
		if !ok || v == "" || slices.Contains(otherVariables, name) {
			continue // an empty variable counts as unset, as in a shell's ${V:-default}
		}
		key = strings.ToLower(key)
		f, ok := fields[key]
		if !ok {
			known := slices.Clone(otherVariables)
			for k := range fields {
				known = append(known, "CODEEXEC_"+strings.ToUpper(k))
			}
			slices.Sort(known)
			return fmt.Errorf("unknown variable %s; the variables are %s", name, strings.Join(known, ", "))
		}
		if err := json.Unmarshal(envJSON(f, v), f.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %s", name, jsonerr.Describe(err, f.Interface()))
		}
	}
	return nil
}

// envJSON writes a variable's text as the JSON its field decodes: numbers and
// booleans as they are, a list from comma-separated items, anything else a string.
func envJSON(f reflect.Value, v string) []byte {
	var b []byte
	switch f.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		if _, isDuration := f.Interface().(duration); !isDuration {
			return []byte(v)
		}
		b, _ = json.Marshal(v)
	case reflect.Slice:
		items := []string{}
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		b, _ = json.Marshal(items)
	default:
		b, _ = json.Marshal(v)
	}
	return b
}

// configFields maps the JSON keys of c's fields to those fields.
func configFields(c *serveConfig) map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	fields := map[string]reflect.Value{}
	for _, f := range reflect.VisibleFields(v.Type()) {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); f.IsExported() && name != "" && name != "-" {
			fields[name] = v.FieldByIndex(f.Index)
		}
	}
	return fields
}

// readAPIKeys collects keys from a keys file (see tenant.ParseKeysFile) and a
// comma-separated list, and gives each its tenant.
func readAPIKeys(file, list string) ([]tenant.Key, error) {
	var specs []tenant.KeySpec
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("api keys: %w", err)
		}
		if specs, err = tenant.ParseKeysFile(file, data); err != nil {
			return nil, fmt.Errorf("api keys: %w", err)
		}
	}
	var plain []string
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			plain = append(plain, k)
		}
	}
	listed, err := tenant.PlainKeys("CODEEXEC_API_KEYS", plain)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	keys, err := tenant.Resolve(append(specs, listed...))
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
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

// tenantCount is the number of distinct tenants of keys.
func tenantCount(keys []tenant.Key) int {
	seen := map[*tenant.Tenant]bool{}
	for _, k := range keys {
		seen[k.Tenant] = true
	}
	return len(seen)
}

// warnFileLimit warns when maxConns connections would take most of the descriptors
// the process may open: the sandboxes need theirs too.
func warnFileLimit(log *slog.Logger, maxConns int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if maxConns == 0 {
		log.Warn("max_conns is 0: client connections are not limited", "open_file_limit", lim.Cur)
	} else if uint64(maxConns) > lim.Cur/2 {
		log.Warn("max_conns leaves too few file descriptors for the sandboxes; lower it or raise the open file limit",
			"max_conns", maxConns, "open_file_limit", lim.Cur)
	}
}

// builtServer is the server withServer makes, with what its faces report.
type builtServer struct {
	srv      *api.Server
	sessions *session.Manager
	policy   job.Policy
	log      *slog.Logger
	images   *imageset.Set
	runner   *sandbox.Runner
	img      *image.Image
	storage  int64
}

// withServer makes the server of c — images, sessions, policy, judge — and calls use
// with it; then it stops what still runs and closes everything.
func withServer(ctx context.Context, c serveConfig, use func(*builtServer) error) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if r := os.Getenv("CODEEXEC_REPLICA"); r != "" {
		// The chart names each replica (its pod's name), so that the lines of many
		// replicas, gathered in one place, tell whose they are.
		log = log.With("replica", r)
	}
	storage, err := storageBudget(c.MaxTotalStorage)
	if err != nil {
		return err
	}
	images, err := openImages(c, log, storage)
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
		// Every execution is admitted by the session manager, in a session or not.
		MaxConcurrent: c.MaxConcurrent,
		MaxQueued:     c.MaxQueued,
	}, runner)
	defer sessions.Close()

	acfg := api.DefaultConfig()
	acfg.Keys = c.apiKeys
	acfg.Conn = c.conn
	acfg.Policy.NetworkAllow = c.NetAllow
	acfg.MCPNetwork = c.mcpNet
	acfg.Policy.Max.Timeout = time.Duration(c.MaxTimeout)
	if acfg.Policy.Max.MemoryBytes, err = parseSize(c.MaxMemory); err != nil {
		return fmt.Errorf("max_memory: %w", err)
	}
	if acfg.Policy.Max.MemoryBytes > c.totals.MemoryBytes {
		log.Warn("max_memory is above what all sandboxes together may use; executions get at most the total",
			"max_memory_mib", acfg.Policy.Max.MemoryBytes>>20, "max_total_memory_mib", c.totals.MemoryBytes>>20)
	}
	acfg.Policy.Max = withinTotals(acfg.Policy.Max, c.totals)
	if acfg.MaxFileStorage, err = parseSize(c.MaxFileStorage); err != nil {
		return fmt.Errorf("max_file_storage: %w", err)
	}
	acfg.Policy.Default = withinTotals(acfg.Policy.Default, c.totals)
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
	srv.SetGateway(&api.Gateway{Upstreams: upstreams, ResponseTTL: time.Duration(c.ResponseTTL), DataURLImages: c.ResponseImages == "data",
		UpstreamResponses: c.UpstreamResponses, Agent: &agent.Agent{
			Judge:    judge,
			MaxSteps: c.MaxSteps,
			Network:  c.chatNet,
		}})
	if c.SafetyScope == "all" {
		srv.SetJudge(judge)
	}
	// Calls of MCP sessions whose client has gone run apart from any request: stop
	// them before the sessions close, which waits for their executions.
	defer srv.MCP().Stop()
	if err := use(&builtServer{srv: srv, sessions: sessions, policy: acfg.Policy, log: log, images: images, runner: runner, img: img, storage: storage}); err != nil {
		return err
	}
	srv.MCP().Stop()
	sessions.Close()
	if err := images.Close(); err != nil {
		return fmt.Errorf("cleaning up sandboxes: %w", err)
	}
	log.Info("stopped")
	return nil
}

// serve serves the HTTP API, MCP at /mcp among it, until ctx ends or a signal comes.
func serve(ctx context.Context, c serveConfig) error {
	return withServer(ctx, c, func(b *builtServer) error { return listen(ctx, c, b) })
}

func listen(ctx context.Context, c serveConfig, b *builtServer) error {
	srv, log, img, images, runner, storage := b.srv, b.log, b.img, b.images, b.runner, b.storage
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Requests run under reqCtx: cancelling it stops every execution at shutdown.
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := srv.HTTPServer(reqCtx)
	if len(c.apiKeys) == 0 {
		log.Warn("no API keys configured: anyone who can reach the address can run code", "addr", ln.Addr().String())
	}
	warnFileLimit(log, c.conn.MaxConns)
	log.Info("serving", "addr", ln.Addr().String(), "store", c.Store, "image", img.ID(), "images", strings.Join(images.Names(), ","),
		"cgroup", "v"+strconv.Itoa(int(runner.CgroupVersion())), "warm", !c.Cold, "keys", len(c.apiKeys),
		"tenants", tenantCount(c.apiKeys), "safety", c.Safety, "max_conns", c.conn.MaxConns, "max_conns_per_client", c.conn.MaxConnsPerClient,
		"total_memory_mib", c.totals.MemoryBytes>>20, "total_pids", c.totals.Pids, "total_cpus", c.totals.CPUs, "safety_scope", c.SafetyScope,
		"storage_budget_mib", storage>>20)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(srv.LimitListener(ln)) }()
	if c.E2BAddr != "" {
		eln, err := net.Listen("tcp", c.E2BAddr)
		if err != nil {
			return fmt.Errorf("listen (e2b): %w", err)
		}
		es := &http.Server{
			Handler:           e2b.New(e2b.Config{Sessions: b.sessions, Keys: c.apiKeys, Policy: b.policy, Log: log}).Handler(),
			BaseContext:       func(net.Listener) context.Context { return reqCtx },
			ReadHeaderTimeout: c.conn.HeaderTimeout,
			IdleTimeout:       c.conn.IdleTimeout,
			MaxHeaderBytes:    c.conn.MaxHeaderBytes,
		}
		defer es.Close()
		log.Info("serving the E2B API", "addr", eln.Addr().String())
		go func() { errc <- es.Serve(srv.LimitListener(eln)) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = es.Shutdown(sctx)
		}()
	}
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
	return nil
}
