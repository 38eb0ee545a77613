// Package responses_test drives codeexec's Responses API with the clients people
// use: the npm openai package, the OpenAI Agents SDK and the Vercel AI SDK (from
// test/responses/node), against a real API server on loopback, the real sandbox
// and a scripted fake upstream.
package responses_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/test/testenv"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// The xAI seed example, and a follow-up.
const (
	fibCode   = "def fibonacci(n):\n    fibs = [0, 1]\n    for i in range(2, n):\n        fibs.append(fibs[-1] + fibs[-2])\n    return fibs[:n]\n\nprint(fibonacci(20))"
	fibOutput = "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]\n"
	fibAnswer = "Here are the first 20 Fibonacci numbers: [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]"
	// sumInContainer runs only where fibCode ran before: in the same container.
	sumInContainer = "print(sum(fibonacci(20)))"
	sumAlone       = "fibs = [0, 1]\nwhile len(fibs) < 20:\n    fibs.append(fibs[-1] + fibs[-2])\nprint(sum(fibs))"
	sumOutput      = "10945\n"
	sumAnswer      = "Their sum is 10945."
)

// run is one client request's script: the model runs code, then answers.
func run(code, answer string) []llmtest.Turn {
	args, _ := json.Marshal(map[string]string{"code": code})
	return []llmtest.Turn{llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: string(args)}), llmtest.Text(answer)}
}

// gateway starts a fake upstream scripted with the runs, in order, and a codeexec
// server in front of it; at the end of the test the clients must have used the
// whole script (no request retried or left out).
func gateway(t *testing.T, runs ...[]llmtest.Turn) (*llmtest.Server, string) {
	t.Helper()
	up, gw := testenv.Fake(t, slices.Concat(runs...)...)
	t.Cleanup(func() {
		if left := up.Remaining(); left != 0 && !t.Failed() {
			t.Errorf("%d scripted model turns were not used (%d upstream requests)", left, len(up.ChatRequests()))
		}
	})
	return up, gw.URL
}

// pinned are the packages node/package.json pins, which nodeDir installs.
var pinned = []string{"openai", "@openai/agents", "ai", "@ai-sdk/openai"}

// nodeDir returns node/ with the packages it pins installed.
func nodeDir(t *testing.T) string {
	t.Helper()
	return testenv.NodeDir(t, "node", pinned...)
}

// node runs a script of test/responses/node against the server at url and decodes
// the JSON report it prints into report.
func node(t *testing.T, script, url string, report any) {
	t.Helper()
	dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, url+"/v1", "sk-test")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, out, stderr.Bytes())
	}
	if err := json.Unmarshal(out, report); err != nil {
		t.Fatalf("%s printed no report: %v: %s\nstderr: %s", script, err, out, stderr.Bytes())
	}
	t.Logf("%s: %s", script, out)
}

// call is a code_interpreter_call as a client read it.
type call struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Code        string `json:"code"`
	ContainerID string `json:"containerId"`
	Status      string `json:"status"`
	Logs        string `json:"logs"`
}

// checkCall checks that a client read one run of code, with its logs (when
// logs is set) and a container.
func checkCall(t *testing.T, who string, calls []call, code, logs string) {
	t.Helper()
	if len(calls) != 1 {
		t.Errorf("%s read %d code_interpreter calls %+v, want 1", who, len(calls), calls)
		return
	}
	c := calls[0]
	if c.Code != code || !strings.HasPrefix(c.ContainerID, "sess_") || (logs != "" && c.Logs != logs) {
		t.Errorf("%s read the call %+v, want code %q in a container (sess_…) with logs %q", who, c, code, logs)
	}
}

type step struct {
	Failed string `json:"failed"`
}

func checkSteps(t *testing.T, steps map[string]string) {
	t.Helper()
	for name, failed := range steps {
		if failed != "" {
			t.Errorf("step %s threw: %s", name, failed)
		}
	}
}

func TestOpenAINode(t *testing.T) {
	up, url := gateway(t, run(fibCode, fibAnswer), run(fibCode, fibAnswer), run(fibCode, fibAnswer), run(sumInContainer, sumAnswer))
	var r struct {
		Create struct {
			step
			ID         string   `json:"id"`
			Status     string   `json:"status"`
			OutputText string   `json:"outputText"`
			Types      []string `json:"types"`
			Calls      []call   `json:"calls"`
		} `json:"create"`
		Stream struct {
			step
			Events     []string `json:"events"`
			Code       string   `json:"code"`
			Text       string   `json:"text"`
			Ordered    bool     `json:"ordered"`
			Status     string   `json:"status"`
			OutputText string   `json:"outputText"`
			Calls      []call   `json:"calls"`
		} `json:"stream"`
		HelperStream struct {
			step
			Status     string `json:"status"`
			OutputText string `json:"outputText"`
			Calls      []call `json:"calls"`
		} `json:"helperStream"`
		Previous struct {
			step
			Previous   string `json:"previous"`
			OutputText string `json:"outputText"`
			Calls      []call `json:"calls"`
		} `json:"previous"`
		NotFound struct {
			step
			Status int    `json:"status"`
			Code   string `json:"code"`
		} `json:"notFound"`
	}
	node(t, "openai.mjs", url, &r)
	checkSteps(t, map[string]string{"create": r.Create.Failed, "stream": r.Stream.Failed, "helperStream": r.HelperStream.Failed,
		"previous": r.Previous.Failed, "notFound": r.NotFound.Failed})

	if c := r.Create; c.Status != "completed" || c.OutputText != fibAnswer || !slices.Equal(c.Types, []string{"code_interpreter_call", "message"}) {
		t.Errorf("responses.create: status %q, output_text %q, items %v; want completed, the answer, a call and a message", c.Status, c.OutputText, c.Types)
	}
	checkCall(t, "responses.create", r.Create.Calls, fibCode, fibOutput)

	s := r.Stream
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.code_interpreter_call.in_progress",
		"response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
		"response.code_interpreter_call.completed", "response.output_item.done", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if got := slices.Compact(slices.Clone(s.Events)); !slices.Equal(got, want) {
		t.Errorf("the stream's events (repeats folded):\n got %v\nwant %v", got, want)
	}
	if !s.Ordered || s.Code != fibCode || s.Text != fibAnswer || s.Status != "completed" || s.OutputText != fibAnswer {
		t.Errorf("the stream: sequence numbers in order %v, code deltas %q, text deltas %q, final status %q and output_text %q",
			s.Ordered, s.Code, s.Text, s.Status, s.OutputText)
	}
	checkCall(t, "the stream's response.completed", s.Calls, fibCode, fibOutput)

	if h := r.HelperStream; h.Status != "completed" || h.OutputText != fibAnswer {
		t.Errorf("responses.stream().finalResponse(): status %q, output_text %q", h.Status, h.OutputText)
	}
	checkCall(t, "responses.stream().finalResponse()", r.HelperStream.Calls, fibCode, fibOutput)

	// The follow-up ran in the first response's container, where fibonacci is defined.
	p := r.Previous
	if p.Previous != r.Create.ID || p.OutputText != sumAnswer {
		t.Errorf("the follow-up: previous_response_id %q, output_text %q; want %q and %q", p.Previous, p.OutputText, r.Create.ID, sumAnswer)
	}
	checkCall(t, "the follow-up", p.Calls, sumInContainer, sumOutput)
	if len(p.Calls) == 1 && len(r.Create.Calls) == 1 && p.Calls[0].ContainerID != r.Create.Calls[0].ContainerID {
		t.Errorf("the follow-up ran in %s, not in the first response's container %s", p.Calls[0].ContainerID, r.Create.Calls[0].ContainerID)
	}
	if reqs := up.ChatRequests(); len(reqs) == 8 {
		if body, _ := json.Marshal(reqs[6].Messages); !strings.Contains(string(body), "Calculate the first 20 Fibonacci numbers") {
			t.Errorf("the follow-up's model request lacks the first question: %s", body)
		}
	}
	if n := r.NotFound; n.Status != 404 || n.Code != "response_not_found" {
		t.Errorf("an unknown previous_response_id: the SDK threw status %d, code %q; want 404 and response_not_found", n.Status, n.Code)
	}
}

func TestAgentsNode(t *testing.T) {
	_, url := gateway(t, run(fibCode, fibAnswer), run(fibCode, fibAnswer))
	type result struct {
		step
		FinalOutput    string   `json:"finalOutput"`
		Items          []string `json:"items"`
		Calls          []call   `json:"calls"`
		LastResponseID string   `json:"lastResponseId"`
		Events         []string `json:"events"`
	}
	var r struct {
		Run    result `json:"run"`
		Stream result `json:"stream"`
	}
	node(t, "agents.mjs", url, &r)
	checkSteps(t, map[string]string{"run": r.Run.Failed, "stream": r.Stream.Failed})
	for name, res := range map[string]result{"run": r.Run, "run with stream": r.Stream} {
		if res.FinalOutput != fibAnswer || !slices.Equal(res.Items, []string{"tool_call_item", "message_output_item"}) ||
			!strings.HasPrefix(res.LastResponseID, "resp_") {
			t.Errorf("%s: finalOutput %q, items %v, lastResponseId %q; want the answer after a tool call", name, res.FinalOutput, res.Items, res.LastResponseID)
		}
		checkCall(t, name, res.Calls, fibCode, fibOutput)
	}
	if !slices.Contains(r.Stream.Events, "response.code_interpreter_call_code.delta") || !slices.Contains(r.Stream.Events, "response.completed") {
		t.Errorf("the streamed run saw the raw events %v, want the code's deltas and response.completed", slices.Compact(r.Stream.Events))
	}
}

func TestAISDKNode(t *testing.T) {
	_, url := gateway(t, run(fibCode, fibAnswer), run(fibCode, fibAnswer), run(sumAlone, sumAnswer))
	type result struct {
		step
		Text  string `json:"text"`
		Calls []struct {
			Name             string `json:"name"`
			ProviderExecuted bool   `json:"providerExecuted"`
			Code             string `json:"code"`
			ContainerID      string `json:"containerId"`
		} `json:"calls"`
		Results []struct {
			Name    string `json:"name"`
			Outputs []struct {
				Type string `json:"type"`
				Logs string `json:"logs"`
			} `json:"outputs"`
		} `json:"results"`
		FinishReason string   `json:"finishReason"`
		Parts        []string `json:"parts"`
	}
	var r struct {
		GenerateText result `json:"generateText"`
		StreamText   result `json:"streamText"`
		FollowUp     result `json:"followUp"`
	}
	node(t, "aisdk.mjs", url, &r)
	checkSteps(t, map[string]string{"generateText": r.GenerateText.Failed, "streamText": r.StreamText.Failed, "followUp": r.FollowUp.Failed})
	for _, c := range []struct {
		name       string
		res        result
		code, logs string
		answer     string
	}{
		{"generateText", r.GenerateText, fibCode, fibOutput, fibAnswer},
		{"streamText", r.StreamText, fibCode, fibOutput, fibAnswer},
		{"generateText with the first turn's messages", r.FollowUp, sumAlone, sumOutput, sumAnswer},
	} {
		res := c.res
		if res.Text != c.answer || res.FinishReason != "stop" {
			t.Errorf("%s: text %q, finishReason %q; want %q and stop", c.name, res.Text, res.FinishReason, c.answer)
		}
		if len(res.Calls) != 1 || res.Calls[0].Name != "code_interpreter" || !res.Calls[0].ProviderExecuted || res.Calls[0].Code != c.code ||
			!strings.HasPrefix(res.Calls[0].ContainerID, "sess_") {
			t.Errorf("%s: tool calls %+v, want one provider-executed code_interpreter call of %q in a container", c.name, res.Calls, c.code)
		}
		if len(res.Results) != 1 || len(res.Results[0].Outputs) != 1 || res.Results[0].Outputs[0].Logs != c.logs {
			t.Errorf("%s: tool results %+v, want the logs %q", c.name, res.Results, c.logs)
		}
	}
	for _, p := range []string{"tool-input-start", "tool-input-delta", "tool-call", "tool-result", "text-delta", "finish"} {
		if !slices.Contains(r.StreamText.Parts, p) {
			t.Errorf("streamText's fullStream had the parts %v, none of type %q", r.StreamText.Parts, p)
		}
	}
}

// TestContainersNode: the openai package's containers API on codeexec's sessions,
// and a response whose code runs in the container made there.
func TestContainersNode(t *testing.T) {
	_, url := gateway(t, run("import pandas as pd\nprint(pd.read_csv('data.csv')['n'].sum())", "3"))
	var r struct {
		Failed  string `json:"failed"`
		Created struct {
			ID           string `json:"id"`
			Object       string `json:"object"`
			Status       string `json:"status"`
			Name         string `json:"name"`
			ExpiresAfter struct {
				Anchor  string `json:"anchor"`
				Minutes int    `json:"minutes"`
			} `json:"expires_after"`
			LastActiveAt int64 `json:"last_active_at"`
		} `json:"created"`
		Retrieved struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"retrieved"`
		Listed []string `json:"listed"`
		File   struct {
			ID          string `json:"id"`
			Object      string `json:"object"`
			ContainerID string `json:"container_id"`
			Bytes       int    `json:"bytes"`
			Path        string `json:"path"`
			Source      string `json:"source"`
		} `json:"file"`
		Files         []string `json:"files"`
		FileRetrieved struct {
			ID    string `json:"id"`
			Bytes int    `json:"bytes"`
		} `json:"fileRetrieved"`
		Content string `json:"content"`
		Run     struct {
			ContainerID string `json:"containerId"`
			Logs        string `json:"logs"`
			OutputText  string `json:"outputText"`
		} `json:"run"`
		FilesAfterDelete []string `json:"filesAfterDelete"`
		AfterDelete      struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		} `json:"afterDelete"`
	}
	node(t, "containers.mjs", url, &r)
	if r.Failed != "" {
		t.Fatalf("containers.mjs threw: %s", r.Failed)
	}
	c := r.Created
	if !strings.HasPrefix(c.ID, "sess_") || c.Object != "container" || c.Status != "running" || c.Name != "analysis" ||
		c.ExpiresAfter.Anchor != "last_active_at" || c.ExpiresAfter.Minutes != 20 || c.LastActiveAt == 0 {
		t.Errorf("containers.create: %+v", c)
	}
	if r.Retrieved.ID != c.ID || r.Retrieved.Name != "analysis" || !slices.Equal(r.Listed, []string{c.ID}) {
		t.Errorf("retrieve %+v, list %v; want the container", r.Retrieved, r.Listed)
	}
	f := r.File
	if !strings.HasPrefix(f.ID, "cfile_") || f.Object != "container.file" || f.ContainerID != c.ID || f.Bytes != 6 || f.Path != "data.csv" || f.Source != "user" {
		t.Errorf("containers.files.create: %+v", f)
	}
	if !slices.Equal(r.Files, []string{"data.csv"}) || r.FileRetrieved.ID != f.ID || r.FileRetrieved.Bytes != 6 || r.Content != "n\n1\n2\n" {
		t.Errorf("files list %v, retrieve %+v, content %q", r.Files, r.FileRetrieved, r.Content)
	}
	if r.Run.ContainerID != c.ID || r.Run.Logs != "3\n" || r.Run.OutputText != "3" {
		t.Errorf("the response in the container: %+v; want the code to read data.csv there", r.Run)
	}
	if len(r.FilesAfterDelete) != 0 || r.AfterDelete.Status != 404 || r.AfterDelete.Code != "session_not_found" {
		t.Errorf("after the deletes: files %v, retrieve %+v; want none and a 404", r.FilesAfterDelete, r.AfterDelete)
	}
}

// TestFilesNode: the openai package's files API, a container made with file_ids,
// and the URL of a figure fetched with containers.files.content and with fetch.
func TestFilesNode(t *testing.T) {
	_, url := gateway(t, run("import pandas as pd\nprint(pd.read_csv('data.csv')['n'].sum())", "3"),
		run("import matplotlib.pyplot as plt\nimport pandas as pd\nplt.plot(pd.read_csv('data.csv')['n'])\nplt.show()", "Here is the plot."))
	var r struct {
		Failed string `json:"failed"`
		File   struct {
			ID       string `json:"id"`
			Object   string `json:"object"`
			Bytes    int    `json:"bytes"`
			Filename string `json:"filename"`
			Purpose  string `json:"purpose"`
		} `json:"file"`
		Run struct {
			ContainerID string `json:"containerId"`
			Logs        string `json:"logs"`
			OutputText  string `json:"outputText"`
		} `json:"run"`
		Image struct {
			URL      string `json:"url"`
			Citation struct {
				Type        string `json:"type"`
				ContainerID string `json:"container_id"`
				FileID      string `json:"file_id"`
			} `json:"citation"`
			SDKBytes    int    `json:"sdkBytes"`
			SDKMagic    string `json:"sdkMagic"`
			FetchStatus int    `json:"fetchStatus"`
			FetchBytes  int    `json:"fetchBytes"`
		} `json:"image"`
		Listed    []string `json:"listed"`
		Retrieved struct {
			ID string `json:"id"`
		} `json:"retrieved"`
		Content string `json:"content"`
		Deleted struct {
			Deleted bool `json:"deleted"`
		} `json:"deleted"`
		AfterDelete struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		} `json:"afterDelete"`
	}
	node(t, "files.mjs", url, &r)
	if r.Failed != "" {
		t.Fatalf("files.mjs threw: %s", r.Failed)
	}
	f := r.File
	if !strings.HasPrefix(f.ID, "file-") || f.Object != "file" || f.Bytes != 6 || f.Filename != "data.csv" || f.Purpose != "user_data" {
		t.Errorf("files.create: %+v", f)
	}
	if !strings.HasPrefix(r.Run.ContainerID, "sess_") || r.Run.Logs != "3\n" || r.Run.OutputText != "3" {
		t.Errorf("the response with file_ids: %+v; want the code to read data.csv", r.Run)
	}
	im := r.Image
	if !strings.HasPrefix(im.URL, url+"/v1/containers/"+r.Run.ContainerID+"/files/cfile_") || im.Citation.Type != "container_file_citation" ||
		!strings.Contains(im.URL, "/"+im.Citation.FileID+"/") {
		t.Errorf("the figure: url %q, citation %+v", im.URL, im.Citation)
	}
	if im.SDKMagic != "\u0089PNG" || im.SDKBytes < 1000 || im.FetchStatus != 200 || im.FetchBytes != im.SDKBytes {
		t.Errorf("the figure read with containers.files.content: %d bytes beginning %q; with fetch: %d, %d bytes", im.SDKBytes, im.SDKMagic, im.FetchStatus, im.FetchBytes)
	}
	if !slices.Equal(r.Listed, []string{f.ID}) || r.Retrieved.ID != f.ID || r.Content != "n\n1\n2\n" || !r.Deleted.Deleted {
		t.Errorf("files list %v, retrieve %+v, content %q, delete %+v", r.Listed, r.Retrieved, r.Content, r.Deleted)
	}
	if r.AfterDelete.Status != 404 || r.AfterDelete.Code != "file_not_found" {
		t.Errorf("retrieve after delete: %+v, want 404 file_not_found", r.AfterDelete)
	}
}

// TestPassthroughNode: without the code tool, the openai package's requests reach
// an upstream with its own Responses API, and its reply, streamed or not, reaches
// the client as the upstream wrote it.
func TestPassthroughNode(t *testing.T) {
	up, url := gateway(t)
	up.SetResponses("Hello from the upstream.")
	var r struct {
		Failed string `json:"failed"`
		Create struct {
			ID         string `json:"id"`
			OutputText string `json:"outputText"`
		} `json:"create"`
		Stream struct {
			Events []string `json:"events"`
			Text   string   `json:"text"`
			ID     string   `json:"id"`
		} `json:"stream"`
	}
	node(t, "passthrough.mjs", url, &r)
	if r.Failed != "" {
		t.Fatalf("passthrough.mjs threw: %s", r.Failed)
	}
	if r.Create.ID != "resp_upstream" || r.Create.OutputText != "Hello from the upstream." {
		t.Errorf("responses.create: %+v, want the upstream's response", r.Create)
	}
	if r.Stream.ID != "resp_upstream" || r.Stream.Text != "Hello from the upstream." || r.Stream.Events[0] != "response.created" ||
		r.Stream.Events[len(r.Stream.Events)-1] != "response.completed" {
		t.Errorf("the stream: %+v, want the upstream's events", r.Stream)
	}
	var paths []string
	for _, req := range up.Requests() {
		paths = append(paths, req.Path)
		if !strings.Contains(string(req.Body), `"model":"fake-model"`) {
			t.Errorf("the upstream got %s", req.Body)
		}
	}
	if !slices.Equal(paths, []string{"/v1/responses", "/v1/responses"}) || !strings.Contains(string(up.Requests()[0].Body), `"service_tier":"auto"`) {
		t.Errorf("the upstream got requests at %v: %s", paths, up.Requests()[0].Body)
	}
}
