package main

import "testing"

func TestForMCP(t *testing.T) {
	for _, c := range []struct{ safety, scope, want string }{
		{"off", "chat", "chat"},
		{"static", "chat", "all"},
		{"llm", "chat", "all"},
		{"static", "all", "all"},
	} {
		cfg := defaultServeConfig()
		cfg.Safety, cfg.SafetyScope = c.safety, c.scope
		cfg.forMCP()
		if cfg.SafetyScope != c.want {
			t.Errorf("forMCP with safety %q and scope %q: scope %q, want %q", c.safety, c.scope, cfg.SafetyScope, c.want)
		}
	}
}
