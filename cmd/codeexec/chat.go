package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/openaichat"
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
	figures   string
}

func newChatCmd() *cobra.Command {
	var f chatFlags
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Ask a software-engineer agent that runs code to answer",
		Long: `Chat in the terminal with a model that writes and runs Python in the sandbox to
answer: "(User): " is your turn, "(Assistant): " its answer, with each execution's
code and output shown as it runs. Variables persist for the whole conversation.
Figures are saved as files (in --figures DIR, or a new directory under $TMPDIR) and
their paths shown. Ctrl-C stops the running code and the answer, not the chat.

By default the agent runs in this process against the upstream of OPENAI_BASE_URL
and OPENAI_API_KEY (or --base-url, or --llm-config). With --server it talks to a
running codeexec server instead, keeping the conversation's sandbox there from one
question to the next. Type "exit" or end the input (Ctrl-D) to leave.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			interrupts := make(chan os.Signal, 1)
			signal.Notify(interrupts, os.Interrupt)
			defer signal.Stop(interrupts)
			return runChat(cmd.Context(), f, os.Stdin, repl.NewConsole(os.Stdout, os.Stderr), interrupts)
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
	fl.StringVar(&f.figures, "figures", "", "directory for the figures of the code (default: a new one under $TMPDIR)")
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// runChat runs the conversation on con, reading questions from in; an interrupt
// stops the running turn. Log lines (an upstream retry, a sandbox restart) go
// through con, so that they never land inside the prompt or an answer.
func runChat(ctx context.Context, f chatFlags, in io.Reader, con *repl.Console, interrupts <-chan os.Signal) error {
	logger := slog.New(slog.NewTextHandler(con.LogWriter(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	prev := slog.Default()
	slog.SetDefault(logger) // the upstream clients log through the default logger
	defer slog.SetDefault(prev)
	chat := &repl.Chat{In: in, Console: con, Figures: &repl.Figures{Dir: f.figures}, Interrupts: interrupts}
	if f.server != "" {
		if f.safety != "off" || f.net != "none" {
			return usageError{errors.New("--safety and --net are the server's settings when --server is used")}
		}
		chat.Turn = (&serverChat{client: llm.New(llm.Provider{Name: "codeexec", BaseURL: strings.TrimRight(f.server, "/") + "/v1", APIKeyEnv: "CODEEXEC_API_KEY"}), model: f.model}).turn
		return chat.Run(ctx)
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
	runner, _, err := openRunner(storeDir(f.store), "", func(cfg *sandbox.Config) { cfg.Warm, cfg.Prefork, cfg.Logger = true, 1, logger })
	if err != nil {
		return err
	}
	defer runner.Close()
	judge, err := safety.New(f.safety, runner, client, f.model)
	if err != nil {
		return usageError{err}
	}
	// One sandbox for the whole conversation, so that variables persist across turns.
	sb := &agent.RunnerSandbox{Runner: runner, Limits: job.DefaultLimits(), Network: network}
	defer sb.Close()
	a := &agent.Agent{Judge: judge, MaxSteps: 10, Network: network}
	model := agent.Upstream(client)
	chat.Turn = func(ctx context.Context, history []llm.Message, p *repl.Printer) (llm.Message, error) {
		req, err := openaichat.FromChatRequest(&llm.ChatRequest{Model: f.model, Messages: history, Tools: []llm.Tool{{Type: llm.ToolTypeCodeExecution}}, Stream: true})
		if err != nil {
			return llm.Message{}, err
		}
		res, err := a.Complete(ctx, model, req, sb, openaichat.Events(p))
		if err != nil {
			return llm.Message{}, err
		}
		return openaichat.ToChatCompletion(res, nil).Choices[0].Message, nil
	}
	return chat.Run(ctx)
}

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

// serverChat is a conversation with a codeexec server. It names the container
// (session) of the conversation in each request, so that the code's variables and
// files persist from one question to the next as in the in-process chat.
type serverChat struct {
	client    *llm.Client
	model     string
	container string // the session the server named; "" until it named one
}

// turn asks the server; when the conversation's container has expired, it says so
// and asks again in a new one.
func (s *serverChat) turn(ctx context.Context, history []llm.Message, p *repl.Printer) (llm.Message, error) {
	msg, err := s.ask(ctx, history, p)
	var apiErr *llm.APIError
	if s.container != "" && errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound && apiErr.Code == "session_not_found" {
		p.Notice("the sandbox of this conversation expired: its variables and files are gone; starting a new one")
		s.container = ""
		return s.ask(ctx, history, p)
	}
	return msg, err
}

// ask streams one answer and rebuilds the reply for the history from the chunks.
func (s *serverChat) ask(ctx context.Context, history []llm.Message, p *repl.Printer) (llm.Message, error) {
	tool := llm.Tool{Type: llm.ToolTypeCodeExecution}
	if s.container != "" {
		id, _ := json.Marshal(s.container)
		tool.Extra = map[string]json.RawMessage{"container": id}
	}
	req := &llm.ChatRequest{Model: s.model, Messages: history, Tools: []llm.Tool{tool}, Stream: true}
	stream, err := s.client.ChatStream(ctx, req)
	if err != nil {
		return llm.Message{}, err
	}
	defer stream.Close()
	var text strings.Builder
	var execs []llm.ToolCall
	for {
		chunk, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return llm.Message{}, err
		}
		s.noteContainer(chunk.Extra["container"])
		for _, ch := range chunk.Choices {
			if t := ch.Delta.Text(); t != "" {
				text.WriteString(t)
				p.Content(t)
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Type != llm.ToolTypeCodeExecution || tc.CodeExecution == nil || tc.Index == nil {
					continue
				}
				if id := tc.CodeExecution.ContainerID; id != "" {
					s.container = id
				}
				i := *tc.Index
				for len(execs) <= i {
					execs = append(execs, llm.ToolCall{Type: llm.ToolTypeCodeExecution, CodeExecution: &llm.CodeExecution{}})
				}
				if tc.ID != "" {
					execs[i].ID = tc.ID
				}
				if tc.CodeExecution.Status == llm.StatusRunning {
					execs[i].CodeExecution.Code = tc.CodeExecution.Code
					p.CodeStarted(i, tc.ID, tc.CodeExecution)
					continue
				}
				p.CodeFinished(i, tc.ID, tc.CodeExecution)
				kept := *tc.CodeExecution
				// The history goes back to the server with every question: the
				// figures' bytes, which the model never reads, stay out of it.
				kept.Images = nil
				for _, im := range tc.CodeExecution.Images {
					kept.Images = append(kept.Images, llm.CodeImage{Name: im.Name, MimeType: im.MimeType})
				}
				*execs[i].CodeExecution = kept
			}
		}
	}
	return llm.Message{Role: "assistant", Content: llm.TextContent(text.String()), ToolCalls: execs}, nil
}

// noteContainer keeps the id of a chunk's "container" field, if it has one.
func (s *serverChat) noteContainer(raw json.RawMessage) {
	var c struct {
		ID string `json:"id"`
	}
	if len(raw) > 0 && json.Unmarshal(raw, &c) == nil && c.ID != "" {
		s.container = c.ID
	}
}
