package mcp

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func ptr[T any](v T) *T { return &v }

const zeroTraceback = "Traceback (most recent call last):\n  File \"<code>\", line 1, in <module>\n    1/0\n    ~^~\nZeroDivisionError: division by zero\n"

var png = []byte("\x89PNG\r\n\x1a\nfigure")

func TestExecuteContent(t *testing.T) {
	alive := &SessionState{ID: "sess_1"}
	tests := []struct {
		name  string
		res   job.Result
		state *SessionState
		text  string // the whole text content
		// the blocks after the text: "image:<mime>" or "link:<uri>"
		blocks []string
	}{{
		name: "ok with output and result",
		res:  job.Result{Status: job.StatusOK, Stdout: "5050\n", Result: ptr("1024")},
		text: "status: ok\nstdout:\n5050\nresult:\n1024\n",
	}, {
		name: "an exception: its traceback is in stderr, shown once",
		res: job.Result{Status: job.StatusError, Stderr: zeroTraceback,
			Error: &job.Error{Name: "ZeroDivisionError", Message: "division by zero", Traceback: zeroTraceback}},
		text: "status: error\nstderr:\n" + zeroTraceback + "error: ZeroDivisionError: division by zero\n",
	}, {
		name: "an exception whose traceback stderr lacks",
		res: job.Result{Status: job.StatusError, Stderr: "redirected\n",
			Error: &job.Error{Name: "ZeroDivisionError", Message: "division by zero", Traceback: zeroTraceback}},
		text: "status: error\nstderr:\nredirected\ntraceback:\n" + zeroTraceback + "error: ZeroDivisionError: division by zero\n",
	}, {
		name: "a timeout",
		res: job.Result{Status: job.StatusTimeout, Stdout: "tick\n", StdoutTruncated: false,
			Error: &job.Error{Name: "TimeoutError", Message: "the program ran past its 30s limit"}},
		text: "status: timeout\nstdout:\ntick\nerror: TimeoutError: the program ran past its 30s limit\n",
	}, {
		name: "output cut at its limit",
		res: job.Result{Status: job.StatusOutputLimit, Stdout: "yyy", StdoutTruncated: true,
			Error: &job.Error{Name: "OutputLimitError", Message: "stdout passed 1 MiB"}},
		text: "status: output_limit\nstdout:\nyyy\n[stdout was truncated at its limit]\nerror: OutputLimitError: stdout passed 1 MiB\n",
	}, {
		name: "refused by the judge",
		res:  job.Result{Status: job.StatusRejected, Error: &job.Error{Name: "Rejected", Message: "it opens a socket"}},
		text: "status: rejected\nThe code was NOT run: the safety policy refused it. Reason: it opens a socket\nDo not try to get around this.\n",
	}, {
		name: "figures are images",
		res: job.Result{Status: job.StatusOK, Images: []job.Image{
			{Name: "figure-1.png", MimeType: "image/png", Data: png}, {Name: "figure-2.png", MimeType: "image/png", Data: png}}},
		text:   "status: ok\nfigures (attached as images): figure-1.png, figure-2.png\n",
		blocks: []string{"image:image/png", "image:image/png"},
	}, {
		name: "files of a one-shot run are gone",
		res:  job.Result{Status: job.StatusOK, Files: []job.FileInfo{{Path: "out.csv", Size: 12}}},
		text: "status: ok\nfiles written in /work: out.csv (12 bytes)\n" +
			"[this run had no session: its files are gone; to keep files and download them, run in a session (create_session)]\n",
	}, {
		name:  "files of a session are links",
		res:   job.Result{Status: job.StatusOK, Files: []job.FileInfo{{Path: "out.csv", Size: 12}, {Path: "plots/a b%.png", Size: 3}}},
		state: alive,
		text: "status: ok\nfiles written in /work: out.csv (12 bytes), plots/a b%.png (3 bytes)\n" +
			"[attached as resource links; download_file reads them]\nsession: sess_1 (variables, imports and files persist)\n",
		blocks: []string{"link:codeexec://sessions/sess_1/files/out.csv", "link:codeexec://sessions/sess_1/files/plots/a%20b%25.png"},
	}, {
		name:  "a run that ended its session",
		res:   job.Result{Status: job.StatusMemoryLimit, Files: []job.FileInfo{{Path: "out.csv", Size: 12}}, Error: &job.Error{Name: "MemoryError", Message: "out of memory; the session has ended with it"}},
		state: &SessionState{ID: "sess_1", Ended: true, Reason: "memory_limit"},
		text: "status: memory_limit\nerror: MemoryError: out of memory; the session has ended with it\nfiles written in /work: out.csv (12 bytes)\n" +
			"session sess_1 has ended (memory_limit): its variables and files are gone; create a new session to go on\n",
	}, {
		name: "truncated lists say so",
		res:  job.Result{Status: job.StatusOK, ImagesTruncated: true, FilesTruncated: true, Result: ptr("'x'"), ResultTruncated: true},
		text: "status: ok\nresult:\n'x'\n[result was truncated at its limit]\n[more figures were drawn than are kept]\n[more files were written than are listed]\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := executeContent(&tt.res, tt.state)
			text, ok := content[0].(*sdk.TextContent)
			if !ok {
				t.Fatalf("executeContent: the first block is %T, want text", content[0])
			}
			if text.Text != tt.text {
				t.Errorf("executeContent text:\ngot:\n%s\nwant:\n%s", text.Text, tt.text)
			}
			var blocks []string
			for _, c := range content[1:] {
				switch c := c.(type) {
				case *sdk.ImageContent:
					if string(c.Data) != string(png) {
						t.Errorf("an image block holds %q, want the figure's bytes", c.Data)
					}
					blocks = append(blocks, "image:"+c.MIMEType)
				case *sdk.ResourceLink:
					blocks = append(blocks, "link:"+c.URI)
				default:
					t.Errorf("unexpected block %T", c)
				}
			}
			if !slices.Equal(blocks, tt.blocks) {
				t.Errorf("executeContent blocks %q, want %q", blocks, tt.blocks)
			}
		})
	}
}

// A long stdout is cut to its share: the traceback and the result stay whole.
func TestResultTextKeepsEveryPart(t *testing.T) {
	res := &job.Result{Status: job.StatusError, Stdout: "start" + strings.Repeat("x", 100000) + "end\n",
		Stderr: zeroTraceback, Result: ptr("'value'"),
		Error: &job.Error{Name: "ZeroDivisionError", Message: "division by zero", Traceback: zeroTraceback}}
	text := resultText(res, nil, 2000)
	if len(text) > 2200 {
		t.Errorf("resultText is %d bytes, want about 2000", len(text))
	}
	for _, want := range []string{"stdout:\nstart", "end\n", "bytes cut here", zeroTraceback, "result:\n'value'\n", "error: ZeroDivisionError"} {
		if !strings.Contains(text, want) {
			t.Errorf("resultText lacks %q:\n%s", want, text)
		}
	}
}

func TestFileURI(t *testing.T) {
	tests := []struct{ id, path, uri string }{
		{"sess_1", "out.csv", "codeexec://sessions/sess_1/files/out.csv"},
		{"sess_1", "dir/sub/x.png", "codeexec://sessions/sess_1/files/dir/sub/x.png"},
		{"sess_1", "a b%?#.txt", "codeexec://sessions/sess_1/files/a%20b%25%3F%23.txt"},
		{"sess_1", "données/été.csv", "codeexec://sessions/sess_1/files/donn%C3%A9es/%C3%A9t%C3%A9.csv"},
	}
	for _, tt := range tests {
		if got := fileURI(tt.id, tt.path); got != tt.uri {
			t.Errorf("fileURI(%q, %q) = %q, want %q", tt.id, tt.path, got, tt.uri)
		}
		id, p, err := parseFileURI(tt.uri)
		if err != nil || id != tt.id || p != tt.path {
			t.Errorf("parseFileURI(%q) = %q, %q, %v; want %q, %q", tt.uri, id, p, err, tt.id, tt.path)
		}
	}
	if id, p, err := parseFileURI("codeexec://sessions/sess_1/files"); err != nil || id != "sess_1" || p != "" {
		t.Errorf("parseFileURI of a file list = %q, %q, %v; want sess_1 and no path", id, p, err)
	}
	for _, bad := range []string{"file:///etc/passwd", "codeexec://sessions/", "codeexec://sessions/sess_1", "codeexec://sessions/sess_1/other/x",
		"codeexec://sessions//files/x", "codeexec://sessions/sess_1/filesx", "codeexec://sessions/sess_1/files/%zz"} {
		if id, p, err := parseFileURI(bad); err == nil {
			t.Errorf("parseFileURI(%q) = %q, %q; want an error", bad, id, p)
		}
	}
}

func TestFileContents(t *testing.T) {
	tests := []struct {
		name, path string
		data       []byte
		text, mime string
		blob       bool
	}{
		{"utf-8 text", "out.csv", []byte("a,b\n1,é\n"), "a,b\n1,é\n", "text/csv; charset=utf-8", false},
		{"binary", "bytes.bin", []byte{0, 1, 2, 0xff}, "", "application/octet-stream", true},
		{"text with a NUL byte", "x.txt", []byte("a\x00b"), "", "text/plain; charset=utf-8", true},
		{"a PNG by its name", "plot.png", png, "", "image/png", true},
		{"no extension, sniffed", "README", []byte("hello\n"), "hello\n", "text/plain; charset=utf-8", false},
		{"empty", "empty.dat", []byte{}, "", "text/plain", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fileContents("sess_1", tt.path, tt.data)
			if c.Text != tt.text || (c.Blob != nil) != tt.blob || c.MIMEType != tt.mime || c.URI != fileURI("sess_1", tt.path) {
				t.Errorf("fileContents(%q) = text %q, blob %v, mime %q, uri %q; want text %q, blob %v, mime %q",
					tt.path, c.Text, c.Blob != nil, c.MIMEType, c.URI, tt.text, tt.blob, tt.mime)
			}
			if tt.blob && string(c.Blob) != string(tt.data) {
				t.Errorf("fileContents(%q) blob %q, want %q", tt.path, c.Blob, tt.data)
			}
		})
	}
}

// The output schema of execute_python holds every field a Result has: a Result with
// every field set, in a session, validates against it. A field added to the Result
// without its schema fails here (the SDK would refuse to send such results).
func TestResultSchemaCoversResult(t *testing.T) {
	full := executeOutput{Result: &job.Result{}, Session: &SessionState{ID: "sess_1", Ended: true, Reason: "timeout"}}
	fill(t, reflect.ValueOf(full.Result).Elem())
	data, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := resultSchema().Resolve(nil)
	if err != nil {
		t.Fatalf("resolving the Result schema: %v", err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if err := resolved.Validate(v); err != nil {
		t.Errorf("a full Result does not validate against execute_python's output schema: %v\n%s", err, data)
	}
	// And the smallest one, with the nulls a Result has.
	min := executeOutput{Result: &job.Result{Status: job.StatusOK, Images: []job.Image{}, Files: []job.FileInfo{}}}
	data, _ = json.Marshal(min)
	_ = json.Unmarshal(data, &v)
	if err := resolved.Validate(v); err != nil {
		t.Errorf("a minimal Result does not validate: %v\n%s", err, data)
	}
}

// fill sets every field of v to a value that is not its zero, as a guard test's
// input: slices and maps get one element, pointers a value.
func fill(t *testing.T, v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i))
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem())
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k)
		fill(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			v.SetBytes([]byte(`"s"`))
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte("data"))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0))
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	case reflect.Float64:
		v.SetFloat(1.5)
	default:
		t.Fatalf("fill: a field of kind %s; teach fill about it", v.Kind())
	}
}

// Every schema the tools declare is portable: no list of types, which clients that
// map schemas onto single-type dialects (Gemini's function declarations) refuse.
func TestSchemasArePortable(t *testing.T) {
	s := New(nil, Policy{DefaultTimeout: 30 * time.Second, MaxTimeout: 5 * time.Minute, MemoryBytes: 512 << 20, OutputBytes: 1 << 20}, nil)
	var walk func(where string, sch *jsonschema.Schema)
	walk = func(where string, sch *jsonschema.Schema) {
		if sch == nil {
			return
		}
		if len(sch.Types) > 0 {
			t.Errorf("%s has the list of types %v", where, sch.Types)
		}
		for name, p := range sch.Properties {
			walk(where+"."+name, p)
		}
		walk(where+"[]", sch.Items)
		for i, a := range sch.AnyOf {
			walk(where+".anyOf"+string(rune('0'+i)), a)
		}
	}
	ct, st := sdk.NewInMemoryTransports()
	ss, err := s.srv.Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	list, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range list.Tools {
		for kind, raw := range map[string]any{"input": tool.InputSchema, "output": tool.OutputSchema} {
			data, err := json.Marshal(raw)
			var sch jsonschema.Schema
			if err == nil {
				err = json.Unmarshal(data, &sch)
			}
			if err != nil {
				t.Fatalf("%s's %s schema %s: %v", tool.Name, kind, data, err)
			}
			walk(tool.Name+"."+kind, &sch)
		}
	}
	if len(list.Tools) != 9 {
		t.Errorf("the server lists %d tools, want 9", len(list.Tools))
	}
}

func TestExecuteDescription(t *testing.T) {
	p := Policy{DefaultTimeout: 30 * time.Second, MaxTimeout: 300 * time.Second, MemoryBytes: 512 << 20, OutputBytes: 1 << 20}
	for _, c := range []struct {
		name string
		lang int // in toolLanguages
		edit func(*Policy)
		want []string
	}{
		{"defaults", 0, func(*Policy) {}, []string{"Python 3.13", "numpy, pandas, matplotlib, scipy, sympy and requests",
			"30 s of wall-clock time by default (timeout_s, up to 300 s), 512 MiB of memory, 1 MiB", "no network access", "/work"}},
		{"javascript", 1, func(*Policy) {}, []string{"JavaScript in Node.js 20", "last expression as result", "top-level await",
			`create_session (language "javascript"), variables (let, const, var, functions, classes) and files persist`, "no network access"}},
		{"bash", 2, func(*Policy) {}, []string{"bash script", "exit status", `create_session (language "bash"), the working directory, exported variables`}},
		{"network and judge", 0, func(p *Policy) { p.Network, p.Judged = []string{"api.example.com", "*.example.org"}, true },
			[]string{"HTTP and HTTPS to api.example.com, *.example.org only", "safety policy checks the code"}},
	} {
		q := p
		c.edit(&q)
		d := executeDescription(q, toolLanguages[c.lang])
		for _, w := range c.want {
			if !strings.Contains(d, w) {
				t.Errorf("%s: the description lacks %q:\n%s", c.name, w, d)
			}
		}
	}
}
