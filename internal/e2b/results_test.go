package e2b

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestResults: a kernel run's display data becomes E2B's result objects, by E2B's
// keys, in order; a string's text loses its quotes as in E2B's server; other types
// go to extra.
func TestResults(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	str, num := "'plain'", "42"
	tests := []struct {
		name string
		res  job.Result
		want string
	}{
		{"a DataFrame", job.Result{Outputs: []job.Output{{Main: true, Data: map[string]json.RawMessage{
			"text/plain": raw(`"   a\n0  1"`), "text/html": raw(`"<table></table>"`), "e2b/data": raw(`{"a":[1]}`)}}}},
			`[{"data":{"a":[1]},"html":"<table></table>","is_main_result":true,"text":"   a\n0  1","type":"result"}]`},
		{"display() of a string, then a figure", job.Result{Outputs: []job.Output{
			{Data: map[string]json.RawMessage{"text/plain": raw(`"'shown'"`)}},
			{Data: map[string]json.RawMessage{"text/plain": raw(`"<Figure>"`), "image/png": raw(`"iVBORw0KGgo="`)}}}},
			`[{"is_main_result":false,"text":"shown","type":"result"},{"is_main_result":false,"png":"iVBORw0KGgo=","text":"<Figure>","type":"result"}]`},
		{"every E2B key and one more", job.Result{Outputs: []job.Output{{Main: true, Data: map[string]json.RawMessage{
			"text/markdown": raw(`"*m*"`), "image/svg+xml": raw(`"<svg/>"`), "image/jpeg": raw(`"/9j/"`), "application/pdf": raw(`"JVBE"`),
			"text/latex": raw(`"$x$"`), "application/json": raw(`[1,2]`), "application/javascript": raw(`"1"`), "e2b/chart": raw(`{}`),
			"application/vnd.custom+json": raw(`{"k":1}`)}}}},
			`[{"chart":{},"extra":{"application/vnd.custom+json":{"k":1}},"is_main_result":true,"javascript":"1","jpeg":"/9j/","json":[1,2],"latex":"$x$","markdown":"*m*","pdf":"JVBE","svg":"<svg/>","type":"result"}]`},
		// A JavaScript run's value: a string's text without its quotes, as E2B's.
		{"a plain run's result", job.Result{Result: &str},
			`[{"is_main_result":true,"text":"plain","type":"result"}]`},
		{"a plain run's number", job.Result{Result: &num},
			`[{"is_main_result":true,"text":"42","type":"result"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(results(&tt.res))
			if err != nil {
				t.Fatal(err)
			}
			var w any
			if err := json.Unmarshal([]byte(tt.want), &w); err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(w) // as Marshal escapes
			if string(got) != string(want) {
				t.Errorf("results(%s):\n got %s\nwant %s", tt.name, got, tt.want)
			}
		})
	}
}

// TestBashCode: a bash run's envs are exported for the run and restored after it
// to the sandbox's value or unset, keeping the program's exit status.
func TestBashCode(t *testing.T) {
	tests := []struct {
		name           string
		base, box, run map[string]string
		want           string
	}{
		{"no envs", nil, nil, nil, "echo hi"},
		{"the sandbox's, first run", map[string]string{"B": "b'q"}, map[string]string{"B": "b'q"}, nil, `export B='b'\''q'; echo hi`},
		{"a run's", nil, map[string]string{"B": "b"}, map[string]string{"R": "r", "B": "o"},
			"export B='o'; export R='r'; echo hi\n__codeexec_status=$?; export B='b'; unset R; (exit $__codeexec_status)\n"},
		{"a name that is not a shell's", nil, nil, map[string]string{"A-B": "x"}, "echo hi"},
	}
	for _, tt := range tests {
		if got := bashCode("echo hi", tt.base, tt.box, tt.run); got != tt.want {
			t.Errorf("%s: bashCode = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestLineStream: what a program prints reaches E2B as whole lines, a partial line
// when flushed.
func TestLineStream(t *testing.T) {
	rec := httptest.NewRecorder()
	out := &ndjson{w: rec}
	l := &lineStream{out: out, kind: "stdout"}
	for _, w := range []string{"1", "\n", "a\nb", "c\n", "partial"} {
		l.Write([]byte(w))
	}
	l.flush()
	want := `{"text":"1\n","type":"stdout"}` + "\n" + `{"text":"a\n","type":"stdout"}` + "\n" + `{"text":"bc\n","type":"stdout"}` + "\n" + `{"text":"partial","type":"stdout"}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("lineStream sent\n%s\nwant\n%s", got, want)
	}
}

// TestStreamRequestCap: a streaming call's envelope that claims more than the cap
// is refused in the stream's end, before anything is allocated for it.
func TestStreamRequestCap(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/process.Process/Start", strings.NewReader("\x00\xff\xff\xff\xff{}"))
	var v struct{}
	if readStreamRequest(rec, req, &v) {
		t.Fatal("readStreamRequest accepted a 4 GiB envelope")
	}
	if got := rec.Body.String(); rec.Code != 200 || !strings.Contains(got, `"code":"invalid_argument"`) || got[0] != 2 {
		t.Errorf("answered %d %q, want 200 and an end-of-stream invalid_argument", rec.Code, got)
	}
}
