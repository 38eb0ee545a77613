package mcp

import (
	"context"
	"fmt"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// instructions tell the client's model how the tools fit together.
func instructions(p Policy) string {
	s := "codeexec runs Python 3.13 with numpy, pandas, matplotlib, scipy, sympy and requests in a secure sandbox. " +
		"Use execute_python for calculations, data analysis and charts instead of working them out by hand. " +
		"execute_javascript runs Node.js and run_command runs bash, when the task is in those. " +
		"For work over several steps, or with files, create_session first (with the language, if not Python) and pass its session_id to every call: " +
		"variables and files then persist, upload_file puts the user's data in /work, and download_file returns what the code wrote."
	if len(p.Network) == 0 {
		s += " The sandbox has no network access."
	}
	return s
}

func (s *Server) addPrompts() {
	s.srv.AddPrompt(&sdk.Prompt{
		Name:        "analyse_csv",
		Title:       "Analyse a CSV file",
		Description: "Explore a CSV file with pandas in a codeexec session: its structure, summary statistics, trends and outliers, with charts.",
		Arguments: []*sdk.PromptArgument{
			{Name: "path", Title: "CSV file", Description: "the file's path in the session's /work, e.g. sales.csv", Required: true},
			{Name: "session_id", Title: "Session", Description: "the session that holds the file; leave it empty to create one and upload the file"},
			{Name: "question", Title: "Question", Description: "what to find out, if anything in particular"},
		},
	}, s.analyseCSV)
}

func (s *Server) analyseCSV(_ context.Context, req *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
	args := req.Params.Arguments
	p := strings.TrimSpace(args["path"])
	if p == "" {
		return nil, fmt.Errorf("the argument path is required: the CSV file's path in /work")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Analyse the CSV file %q with the codeexec tools.\n\n", p)
	if id := strings.TrimSpace(args["session_id"]); id != "" {
		fmt.Fprintf(&b, "It is in the work dir of session %s: pass session_id %q to every execute_python call.\n", id, id)
	} else {
		fmt.Fprintf(&b, "First create a session (create_session) and upload the file to it as %q (upload_file), unless it is there already; "+
			"then pass its session_id to every execute_python call.\n", p)
	}
	b.WriteString("Load it with pandas and report its shape, the columns with their types, missing values and summary statistics. " +
		"Then look for the main patterns: trends over time if there is a date column, the largest groups and how they compare, " +
		"correlations, outliers. Draw one or two matplotlib charts that show the most important findings (they come back as images), " +
		"and save any table worth keeping as a CSV file in /work. Finish with a short summary of what you found, in plain words.")
	if q := strings.TrimSpace(args["question"]); q != "" {
		fmt.Fprintf(&b, "\n\nAbove all, answer this question: %s", q)
	}
	return &sdk.GetPromptResult{
		Description: "Analyse " + p,
		Messages:    []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: b.String()}}},
	}, nil
}
