package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/spf13/cobra"
)

// mcpHidden are serve's flags that mean nothing without HTTP; codeexec mcp takes
// them (a shared config file may set their keys) but does not show them.
var mcpHidden = []string{"addr", "api-keys-file", "insecure-no-auth", "max-conns", "max-conns-per-client", "safety-scope", "chat-net"}

func newMCPCmd() *cobra.Command {
	cfg := defaultServeConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve MCP over stdio, for hosts that start a command",
		Long: `Serve the Model Context Protocol over standard input and output, for MCP hosts
(desktop assistants, IDE agents) that start a command:

  {"mcpServers": {"codeexec": {"command": "codeexec", "args": ["mcp"]}}}

The tools run Python in the same sandboxes, with the same limits and configuration as
codeexec serve (--config FILE, CODEEXEC_* variables, flags); the host is the one
tenant. Logs go to standard error. --safety judges every execution; --mcp-net gives
the code network (none by default). codeexec serve serves the same tools at /mcp,
over streamable HTTP, behind its API keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.load(configFile, cmd.Flags()); err != nil {
				return usageError{err}
			}
			cfg.forMCP()
			return serveMCP(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "JSON config file (codeexec serve's)")
	bindServeFlags(cmd.Flags(), &cfg)
	for _, name := range mcpHidden {
		_ = cmd.Flags().MarkHidden(name)
	}
	return cmd
}

// forMCP adjusts a loaded config for codeexec mcp: every execution there is the MCP
// face's, which the judge covers with the scope "all" (there is no other face to
// leave out), so a judge that is on judges them all.
func (c *serveConfig) forMCP() {
	if c.Safety != "off" {
		c.SafetyScope = "all"
	}
}

// serveMCP serves one MCP session over stdio until the host closes it or a signal
// comes.
func serveMCP(ctx context.Context, c serveConfig) error {
	return withServer(ctx, c, func(b *builtServer) error {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		b.log.Info("serving MCP on stdio", "store", c.Store, "image", b.img.ID(), "warm", !c.Cold, "safety", c.Safety, "mcp_net", c.MCPNet)
		return b.srv.MCP().ServeStdio(ctx, os.Stdin, os.Stdout, tenant.Anonymous)
	})
}
