package agent

import (
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// The code tool's language decides what the model is told: the function's
// description and parameters, and the system hint.
func TestCodeToolLanguage(t *testing.T) {
	for _, tc := range []struct {
		lang               string
		description, hint  string
		notDesc, notInHint string
	}{
		{"", "Run Python code", "Python", "", "JavaScript"},
		{job.LangPython, "Run Python code", "Python", "", "JavaScript"},
		{job.LangJavaScript, "Run JavaScript in Node.js", "JavaScript with the code_execution tool, in Node.js 20", "Python", "matplotlib figures"},
		{job.LangBash, "Run a bash script", "bash scripts with the code_execution tool", "Python code", "value of the last expression"},
	} {
		up, err := upstreamRequest(&Request{Model: "m", Code: &CodeTool{Language: tc.lang}})
		if err != nil {
			t.Fatal(err)
		}
		fn := up.Tools[len(up.Tools)-1].Function
		if fn.Name != ToolName || !strings.Contains(fn.Description, tc.description) || (tc.notDesc != "" && strings.Contains(fn.Description, tc.notDesc)) {
			t.Errorf("language %q: the code tool is %s: %q, want a description with %q", tc.lang, fn.Name, fn.Description, tc.description)
		}
		if tc.lang == job.LangJavaScript && !strings.Contains(string(fn.Parameters), "JavaScript") {
			t.Errorf("language %q: parameters %s do not say JavaScript", tc.lang, fn.Parameters)
		}
		hint := codeHint(tc.lang, nil, false, nil)
		if !strings.Contains(hint, tc.hint) || strings.Contains(hint, tc.notInHint) || !strings.Contains(hint, "with no network access") {
			t.Errorf("language %q: hint %q, want %q and not %q", tc.lang, hint, tc.hint, tc.notInHint)
		}
	}
}
