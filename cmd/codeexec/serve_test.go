package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/spf13/pflag"
)

// loadServe loads a serve config from a config file holding config (none if empty)
// and the flags args, with no CODEEXEC_* variables.
func loadServe(t *testing.T, config string, args ...string) (serveConfig, error) {
	t.Helper()
	for _, v := range []string{"CODEEXEC_ADDR", "CODEEXEC_API_KEYS", "CODEEXEC_API_KEYS_FILE", "CODEEXEC_NET_ALLOW"} {
		t.Setenv(v, "")
	}
	cfg := defaultServeConfig()
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fl, &cfg)
	if err := fl.Parse(args); err != nil {
		t.Fatal(err)
	}
	file := ""
	if config != "" {
		file = filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := cfg.load(file, fl)
	return cfg, err
}

func TestServeConnLimits(t *testing.T) {
	cfg, err := loadServe(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.conn != api.DefaultConnLimits() {
		t.Errorf("default limits %+v, want %+v", cfg.conn, api.DefaultConnLimits())
	}
	cfg, err = loadServe(t, `{"header_timeout": "5s", "body_timeout": "2m", "body_min_rate": "1MiB", "send_timeout": "30s",
		"idle_timeout": "0s", "max_header_bytes": "16KiB", "max_conns": 100, "max_conns_per_client": 10}`)
	if err != nil {
		t.Fatal(err)
	}
	want := api.ConnLimits{HeaderTimeout: 5 * time.Second, BodyTimeout: 2 * time.Minute, BodyMinRate: 1 << 20,
		SendTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, MaxConns: 100, MaxConnsPerClient: 10}
	if cfg.conn != want {
		t.Errorf("limits from the config file %+v, want %+v", cfg.conn, want)
	}
	cfg, err = loadServe(t, `{"max_conns": 100}`, "--max-conns", "7", "--max-conns-per-client", "0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.conn.MaxConns != 7 || cfg.conn.MaxConnsPerClient != 0 {
		t.Errorf("flags over the file: max_conns %d, per client %d; want 7 and 0", cfg.conn.MaxConns, cfg.conn.MaxConnsPerClient)
	}
}

// TestServeConfigErrors: a mistake in the config file names its key, in JSON's
// terms; an unknown key names the valid ones.
func TestServeConfigErrors(t *testing.T) {
	tests := []struct {
		config string
		want   []string
	}{
		{`{"max_conn": 5}`, []string{`unknown key "max_conn"; the keys are addr,`, "max_conns, max_conns_per_client", "body_timeout", "idle_timeout"}},
		{`{"idle_timeout": 60}`, []string{`idle_timeout: expected a duration such as "30s", got 60`}},
		{`{"idle_timeout": "a minute"}`, []string{`idle_timeout: "a minute" is not a duration`}},
		{`{"max_conns": "5"}`, []string{"max_conns: expected an integer, got a string"}},
		{`{"max_conns": -1}`, []string{"max_conns must not be negative"}},
		{`{"send_timeout": "-1s"}`, []string{"send_timeout must not be negative"}},
		{`{"body_min_rate": "fast"}`, []string{"body_min_rate:", "is not a size"}},
		{`{"max_header_bytes": "2GiB"}`, []string{"max_header_bytes:", "up to 1GiB"}},
		{`{"max_conns": 5`, []string{"not valid JSON"}},
		{`[1]`, []string{"expected an object, got an array"}},
		{`{"e2b_addr": "0.0.0.0:3000"}`, []string{`refusing to serve the E2B API on "0.0.0.0:3000" without API keys`}},
	}
	for _, tt := range tests {
		_, err := loadServe(t, tt.config)
		if err == nil {
			t.Errorf("config %s: no error", tt.config)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("config %s: %q, want it to say %q", tt.config, err, w)
			}
		}
		if strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "json: ") || strings.Contains(err.Error(), "main.") {
			t.Errorf("config %s: %q shows Go's names", tt.config, err)
		}
	}
}

// TestServeKeys: keys come from the file, with tenants, and from the list, each of
// its own tenant.
func TestServeKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("# ops\nk-old\nk-a1 tenant=acme max_sessions=3\nk-a2 tenant=acme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := readAPIKeys(file, " k-env1, ,k-env2")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.Secret+"="+k.Tenant.Name)
	}
	if want := "k-old=key#1 k-a1=acme k-a2=acme k-env1=key#4 k-env2=key#5"; strings.Join(got, " ") != want {
		t.Errorf("keys %v, want %s", got, want)
	}
	if keys[1].Tenant != keys[2].Tenant || keys[2].Tenant.MaxSessions != 3 {
		t.Errorf("acme's keys: tenants %p %p, max_sessions %d; want one tenant with 3", keys[1].Tenant, keys[2].Tenant, keys[2].Tenant.MaxSessions)
	}
	if n := tenantCount(keys); n != 4 {
		t.Errorf("%d tenants, want 4", n)
	}
	if _, err := readAPIKeys(file, "k-a1"); err == nil || !strings.Contains(err.Error(), "CODEEXEC_API_KEYS item 1: the same key as "+file+":3") {
		t.Errorf("a key in both the file and the list: %v", err)
	}
	if err := os.WriteFile(file, []byte("k-x tenants=acme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAPIKeys(file, ""); err == nil || !strings.Contains(err.Error(), `unknown option "tenants"; the options are tenant, max_sessions, max_concurrent`) {
		t.Errorf("an unknown option: %v", err)
	}
}

// TestServeEnv: every config key has its CODEEXEC_ variable, decoded as the file's
// value would be; a flag beats it; an unknown variable names the known ones.
func TestServeEnv(t *testing.T) {
	tests := []struct {
		env   map[string]string
		args  []string
		check func(serveConfig) string // what is wrong, or ""
		err   string
	}{
		{env: map[string]string{"CODEEXEC_MAX_CONNS": "5", "CODEEXEC_IDLE_TIMEOUT": "7s", "CODEEXEC_COLD": "true"},
			check: func(c serveConfig) string {
				if c.conn.MaxConns != 5 || c.conn.IdleTimeout != 7*time.Second || !c.Cold {
					return "max_conns, idle_timeout or cold not taken"
				}
				return ""
			}},
		{env: map[string]string{"CODEEXEC_NET_ALLOW": "a.example.com, *.example.org"},
			check: func(c serveConfig) string {
				if strings.Join(c.NetAllow, "|") != "a.example.com|*.example.org" {
					return "net_allow " + strings.Join(c.NetAllow, "|")
				}
				return ""
			}},
		{env: map[string]string{"CODEEXEC_MAX_CONNS": "5"}, args: []string{"--max-conns", "9"},
			check: func(c serveConfig) string {
				if c.conn.MaxConns != 9 {
					return "the flag did not win"
				}
				return ""
			}},
		{env: map[string]string{"CODEEXEC_MAX_CONN": "5"}, err: "unknown variable CODEEXEC_MAX_CONN; the variables are CODEEXEC_ADDR,"},
		{env: map[string]string{"CODEEXEC_MAX_CONNS": "many"}, err: "CODEEXEC_MAX_CONNS: "},
		{env: map[string]string{"CODEEXEC_IDLE_TIMEOUT": "soon"}, err: `CODEEXEC_IDLE_TIMEOUT: "soon" is not a duration`},
		// The Helm chart names each replica by its pod, and lists them all as peers.
		{env: map[string]string{"CODEEXEC_REPLICA": "codeexec-2"}, check: func(c serveConfig) string {
			if c.Replica != "codeexec-2" {
				return "replica = " + c.Replica
			}
			return ""
		}},
		{env: map[string]string{"CODEEXEC_REPLICA": "codeexec-1", "CODEEXEC_E2B_ADDR": "127.0.0.1:8081",
			"CODEEXEC_PEERS": "codeexec-0=http://codeexec-0.h:8080, codeexec-1=http://codeexec-1.h:8080"},
			check: func(c serveConfig) string {
				if len(c.peers) != 2 || c.peers[1].Name != "codeexec-1" || c.peers[1].E2B.String() != "http://codeexec-1.h:8081" {
					return fmt.Sprintf("peers = %+v", c.peers)
				}
				return ""
			}},
		{env: map[string]string{"CODEEXEC_PEERS": "codeexec-0=http://codeexec-0.h:8080"}, err: "this replica has no name"},
		{env: map[string]string{"CODEEXEC_REPLICA": "Codeexec_0"}, err: `replica: replica name "Codeexec_0" is not a DNS label`},
		{env: map[string]string{"CODEEXEC_REPLICA": "a", "CODEEXEC_PEERS": "a=ftp://x"}, err: `peers: peer a: "ftp://x" is not a base URL`},
		{env: map[string]string{"CODEEXEC_DRAIN_TIMEOUT": "5s"}, check: func(c serveConfig) string {
			if time.Duration(c.DrainTimeout) != 5*time.Second {
				return fmt.Sprintf("drain_timeout = %v", time.Duration(c.DrainTimeout))
			}
			return ""
		}},
		{env: map[string]string{"CODEEXEC_MODEL": "m", "CODEEXEC_ADDR": ""},
			check: func(c serveConfig) string {
				if c.Addr != defaultServeConfig().Addr {
					return "an empty variable changed addr to " + c.Addr
				}
				return ""
			}},
	}
	for _, tt := range tests {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		cfg, err := loadServeEnv(t, tt.args...)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("env %v: error %v, want one with %q", tt.env, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("env %v: %v", tt.env, err)
		case tt.check != nil && err == nil:
			if msg := tt.check(cfg); msg != "" {
				t.Errorf("env %v: %s", tt.env, msg)
			}
		}
		for k := range tt.env {
			os.Unsetenv(k)
		}
	}
}

// loadServeEnv loads a serve config from the flags args and the environment as it is.
func loadServeEnv(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	cfg := defaultServeConfig()
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fl, &cfg)
	if err := fl.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg, cfg.load("", fl)
}

// TestServeFlagsNameKeys: every flag of serve but --config is named for a config key,
// which is how load lets it win over the file and the environment.
func TestServeFlagsNameKeys(t *testing.T) {
	cfg := defaultServeConfig()
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fl, &cfg)
	keys := configFields(&cfg)
	fl.VisitAll(func(f *pflag.Flag) {
		if key := strings.ReplaceAll(f.Name, "-", "_"); f.Name != "config" && !keys[key].IsValid() {
			t.Errorf("flag --%s names no config key (want %q)", f.Name, key)
		}
	})
}
