package gateway_test

import (
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/llm/llmtest"
)

// TestCodeToolLanguage: a code tool with "language" runs the model's code in that
// language, in a session that keeps it (JavaScript's globals here), and the model is
// told what it writes; a container of another language is refused.
func TestCodeToolLanguage(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("const rows = [1, 2, 3];\nconsole.log('node', process.version.startsWith('v20'));\nrows.reduce((a, b) => a + b)")),
		llmtest.Text("The sum is 6."),
		llmtest.Calls(code("rows.length")),
		llmtest.Text("Three rows."),
		llmtest.Calls(code("echo $((6 * 7))")),
		llmtest.Text("42."),
	)
	hs := gateway(t, up, nil)
	jsTool := `"tools":[{"type":"code_execution","language":"javascript"}]`
	first := chat(t, hs.URL, userBody("sum 1,2,3", jsTool))
	e := first.Choices[0].Message.ToolCalls[0].CodeExecution
	if e.Status != "ok" || e.Stdout != "node true\n" || e.Result == nil || *e.Result != "6" {
		t.Fatalf("JavaScript entry %+v", e)
	}
	id := first.Container.ID
	second := chat(t, hs.URL, userBody("how many?", `"tools":[{"type":"code_execution","language":"js","container":"`+id+`"}]`))
	if e := second.Choices[0].Message.ToolCalls[0].CodeExecution; e.Result == nil || *e.Result != "3" {
		t.Errorf("the container did not keep rows: %+v", e)
	}
	third := chat(t, hs.URL, userBody("6*7", `"tools":[{"type":"code_execution","language":"bash"}]`))
	if e := third.Choices[0].Message.ToolCalls[0].CodeExecution; e.Status != "ok" || e.Stdout != "42\n" {
		t.Errorf("bash entry %+v", e)
	}
	reqs := up.ChatRequests()
	if len(reqs) != 6 {
		t.Fatalf("%d upstream requests, want 6", len(reqs))
	}
	for i, want := range map[int]string{0: "JavaScript", 4: "bash"} {
		fn := reqs[i].Tools[0].Function
		if !strings.Contains(fn.Description, want) || !strings.Contains(reqs[i].Messages[0].Text(), want) {
			t.Errorf("request %d: the model was not told of %s: tool %q, hint %q", i, want, fn.Description, reqs[i].Messages[0].Text())
		}
	}

	status, data := post(t, hs.URL, userBody("again", `"tools":[{"type":"code_execution","container":"`+id+`"}]`))
	if r := decode(t, data); status != 400 || r.Error == nil || r.Error.Code != "language_mismatch" {
		t.Errorf("a Python tool naming a JavaScript container: %d %s", status, data)
	}
	status, data = post(t, hs.URL, userBody("again", `"tools":[{"type":"code_execution","language":"cobol"}]`))
	if r := decode(t, data); status != 400 || r.Error == nil || r.Error.Code != "unsupported_language" {
		t.Errorf("language cobol: %d %s", status, data)
	}
}
