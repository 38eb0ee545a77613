package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/repl"
	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/spf13/cobra"
)

type chatFlags struct {
	model     string
	baseURL   string
	llmConfig string
	server    string
	safety    string
	store     string
	net       string
}

func newChatCmd() *cobra.Command {
	var f chatFlags
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Ask a software-engineer agent that runs code to answer",
		Long: `Chat in the terminal with a model that writes and runs Python in the sandbox to
answer: "(User): " is your turn, "(Assistant): " its answer, with each execution's
code and output shown as it runs. Variables persist for the whole conversation.

By default the agent runs in this process against the upstream of OPENAI_BASE_URL
and OPENAI_API_KEY (or --base-url, or --llm-config). With --server it talks to a
running codeexec server instead. Type "exit" or end the input to leave.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			err := runChat(ctx, f, os.Stdin, os.Stdout)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", envOr("CODEEXEC_MODEL", "gpt-4o-mini"), "model to ask (also $CODEEXEC_MODEL)")
	fl.StringVar(&f.baseURL, "base-url", "", "OpenAI-compatible upstream URL (default $OPENAI_BASE_URL)")
	fl.StringVar(&f.llmConfig, "llm-config", "", "JSON file of upstream model providers")
	fl.StringVar(&f.server, "server", "", "use a running codeexec server at this URL (key from $CODEEXEC_API_KEY)")
	fl.StringVar(&f.safety, "safety", "off", "safety judge: off, static or llm")
	fl.StringVar(&f.net, "net", "none", "network for the model's code: none, or allow=HOST[,HOST…] through the egress proxy")
	fl.StringVar(&f.store, "store", "", "image and state directory (default $CODEEXEC_STORE or "+defaultStore+")")
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func runChat(ctx context.Context, f chatFlags, in io.Reader, out io.Writer) error {
	if f.server != "" {
		if f.safety != "off" || f.net != "none" {
			return usageError{errors.New("--safety and --net are the server's settings when --server is used")}
		}
		return repl.Run(ctx, in, out, serverTurn(f.server, f.model))
	}
	network, err := egress.ParseSpec(f.net)
	if err != nil {
		return usageError{fmt.Errorf("--net: %w", err)}
	}
	router, err := chatUpstreams(f)
	if err != nil {
		return err
	}
	client, err := router.Route(f.model)
	if err != nil {
		return usageError{err}
	}
	runner, _, err := openRunner(storeDir(f.store), "", func(cfg *sandbox.Config) { cfg.Warm, cfg.Prefork = true, 1 })
	if err != nil {
		return err
	}
	defer runner.Close()
	judge, err := safety.New(f.safety, runner, client, f.model)
	if err != nil {
		return usageError{err}
	}
	// One sandbox for the whole conversation, so that variables persist across turns.
	sb, err := agent.Sessions(runner, sandbox.DefaultLimits(), network)(ctx)
	if err != nil {
		return err
	}
	defer sb.Close()
	a := &agent.Agent{NewSandbox: func(context.Context) (agent.Sandbox, error) { return keepOpen{sb}, nil }, Judge: judge, MaxSteps: 10,
		Network: network}
	model := agent.Upstream(client)
	return repl.Run(ctx, in, out, func(ctx context.Context, history []llm.Message, p *repl.Printer) (llm.Message, error) {
		req := &llm.ChatRequest{Model: f.model, Messages: history, Tools: []llm.Tool{{Type: llm.ToolTypeCodeExecution}}, Stream: true}
		resp, err := a.Complete(ctx, model, req, p)
		if err != nil {
			return llm.Message{}, err
		}
		return resp.Choices[0].Message, nil
	})
}

// keepOpen lends the conversation's sandbox to each completion without letting it
// close it.
type keepOpen struct{ agent.Sandbox }

func (keepOpen) Close() {}

func chatUpstreams(f chatFlags) (*llm.Router, error) {
	if f.llmConfig != "" {
		return newUpstreams(f.llmConfig)
	}
	p := llm.DefaultProvider()
	if f.baseURL != "" {
		p.BaseURL = strings.TrimRight(f.baseURL, "/")
	}
	return llm.NewRouter(p.Name, p)
}

// serverTurn asks a codeexec server, streaming, and rebuilds the reply for the
// history from the chunks.
func serverTurn(server, model string) repl.Turn {
	c := llm.New(llm.Provider{Name: "codeexec", BaseURL: strings.TrimRight(server, "/") + "/v1", APIKeyEnv: "CODEEXEC_API_KEY"})
	return func(ctx context.Context, history []llm.Message, p *repl.Printer) (llm.Message, error) {
		req := &llm.ChatRequest{Model: model, Messages: history, Tools: []llm.Tool{{Type: llm.ToolTypeCodeExecution}}, Stream: true}
		s, err := c.ChatStream(ctx, req)
		if err != nil {
			return llm.Message{}, err
		}
		defer s.Close()
		var text strings.Builder
		var execs []llm.ToolCall
		for {
			chunk, err := s.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return llm.Message{}, err
			}
			for _, ch := range chunk.Choices {
				if t := ch.Delta.Text(); t != "" {
					text.WriteString(t)
					p.Content(t)
				}
				for _, tc := range ch.Delta.ToolCalls {
					if tc.Type != llm.ToolTypeCodeExecution || tc.CodeExecution == nil || tc.Index == nil {
						continue
					}
					i := *tc.Index
					for len(execs) <= i {
						execs = append(execs, llm.ToolCall{Type: llm.ToolTypeCodeExecution, CodeExecution: &llm.CodeExecution{}})
					}
					e := execs[i].CodeExecution
					if tc.ID != "" {
						execs[i].ID = tc.ID
					}
					if tc.CodeExecution.Status == "" {
						e.Code = tc.CodeExecution.Code
						p.CodeStarted(i, tc.ID, e.Code)
						continue
					}
					*e = *tc.CodeExecution
					p.CodeFinished(i, tc.ID, e)
				}
			}
		}
		return llm.Message{Role: "assistant", Content: llm.TextContent(text.String()), ToolCalls: execs}, nil
	}
}
