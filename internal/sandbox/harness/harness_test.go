package harness

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const png1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

// report returns a report's JSON: a successful run with no output, changed by edit.
func report(edit func(m map[string]any)) string {
	m := map[string]any{"ok": true, "result": nil, "result_truncated": false, "error": nil,
		"images": []any{}, "images_truncated": false, "exit_code": 0}
	if edit != nil {
		edit(m)
	}
	data, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// pngOf is a figure of n bytes that starts with the PNG signature.
func pngOf(n int) map[string]any {
	data := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, n-8)...)
	return map[string]any{"name": "figure-1.png", "mime_type": "image/png", "data": base64.StdEncoding.EncodeToString(data)}
}

func figures(n, size int) func(m map[string]any) {
	return func(m map[string]any) {
		var ims []any
		for range n {
			ims = append(ims, pngOf(size))
		}
		m["images"] = ims
	}
}

func failed(name, message, traceback string) func(m map[string]any) {
	return func(m map[string]any) {
		m["ok"], m["exit_code"] = false, 1
		m["error"] = map[string]any{"name": name, "message": message, "traceback": traceback, "truncated": false}
	}
}

func result(n int) func(m map[string]any) {
	return func(m map[string]any) { m["result"] = strings.Repeat("r", n) }
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(*Report) bool // nil: Parse must refuse in
	}{
		{"ok with result", `{"ok":true,"result":"42","exit_code":0}`, func(r *Report) bool { return r.OK && *r.Result == "42" }},
		{"error", `{"ok":false,"error":{"name":"ValueError","message":"m","traceback":"t","truncated":true},"exit_code":1}`,
			func(r *Report) bool {
				return !r.OK && r.Error.Name == "ValueError" && r.Error.Truncated && r.ExitCode == 1
			}},
		{"png image", `{"ok":true,"images":[{"name":"figure-1.png","mime_type":"image/png","data":"` + png1x1 + `"}]}`,
			func(r *Report) bool { return len(r.Images) == 1 && len(r.Images[0].Data) > 8 }},
		{"not a png", `{"ok":true,"images":[{"name":"x.png","mime_type":"image/png","data":"aGVsbG8gd29ybGQ="}]}`, nil},
		{"wrong mime type", `{"ok":true,"images":[{"name":"x.svg","mime_type":"image/svg+xml","data":"` + png1x1 + `"}]}`, nil},
		{"bad base64", `{"ok":true,"images":[{"name":"x","mime_type":"image/png","data":"%%%"}]}`, nil},
		{"truncated json", `{"ok":tr`, nil},
		{"not an object", `[1,2]`, nil},
		{"unknown field", `{"ok":true,"status":"ok"}`, nil},
		{"unknown field of a figure", `{"ok":true,"images":[{"name":"f.png","mime_type":"image/png","data":"` + png1x1 + `","path":"/etc/x"}]}`, nil},
		{"figures not a list", `{"ok":true,"images":{"name":"f.png"}}`, nil},
		{"null figures", `{"ok":true,"images":null}`, func(r *Report) bool { return len(r.Images) == 0 }},
		{"a second report after the first", report(nil) + report(nil), nil},
		{"garbage after the report", report(nil) + "x", nil},
		{"white space after the report", report(nil) + "\n", func(r *Report) bool { return r.OK }},
		{"16 figures", report(figures(MaxImages, 100)), func(r *Report) bool { return len(r.Images) == MaxImages }},
		{"17 figures", report(figures(MaxImages+1, 100)), nil},
		{"figures of exactly the byte cap", report(figures(2, MaxImageBytes/2)), func(r *Report) bool { return len(r.Images) == 2 }},
		{"figures over the byte cap", report(figures(2, MaxImageBytes/2+1)), nil},
		{"a figure name over its cap", report(func(m map[string]any) {
			im := pngOf(100)
			im["name"] = strings.Repeat("../", 30) + "etc/x.png"
			m["images"] = []any{im}
		}), nil},
		{"result at its cap", report(result(MaxResultBytes)), func(r *Report) bool { return len(*r.Result) == MaxResultBytes }},
		{"result over its cap", report(result(MaxResultBytes + 1)), nil},
		{"result over its cap once decoded", report(func(m map[string]any) { m["result"] = strings.Repeat("é", MaxResultBytes/2+1) }), nil},
		{"error parts at their caps", report(failed(strings.Repeat("E", MaxErrorNameBytes), strings.Repeat("m", MaxErrorMessageBytes), strings.Repeat("t", MaxTracebackBytes))),
			func(r *Report) bool { return !r.OK && len(r.Error.Traceback) == MaxTracebackBytes }},
		{"error name over its cap", report(failed(strings.Repeat("E", MaxErrorNameBytes+1), "m", "t")), nil},
		{"error message over its cap", report(failed("E", strings.Repeat("m", MaxErrorMessageBytes+1), "t")), nil},
		{"traceback over its cap", report(failed("E", "m", strings.Repeat("t", MaxTracebackBytes+1))), nil},
		{"an error on a run that succeeded", report(func(m map[string]any) { failed("E", "m", "t")(m); m["ok"] = true }), nil},
		{"no error on a run that failed", report(func(m map[string]any) { m["ok"] = false }), nil},
		{"display outputs", `{"ok":true,"outputs":[{"data":{"text/plain":"1","text/html":"<b>1</b>","e2b/data":{"a":[1]}},"main":true}],"outputs_truncated":false}`,
			func(r *Report) bool { return len(r.Outputs) == 1 && r.Outputs[0].Main && len(r.Outputs[0].Data) == 3 }},
		{"unknown field of an output", `{"ok":true,"outputs":[{"data":{},"main":false,"x":1}]}`, nil},
		{"outputs at their count", report(outputs(MaxOutputs, 10)), func(r *Report) bool { return len(r.Outputs) == MaxOutputs }},
		{"outputs over their count", report(outputs(MaxOutputs+1, 10)), nil},
		{"outputs over their bytes", report(outputs(2, MaxOutputBytes/2)), nil},
		{"an empty MIME type", `{"ok":true,"outputs":[{"data":{"":"x"},"main":false}]}`, nil},
		{"over the report's size", report(nil) + strings.Repeat(" ", MaxReportBytes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse([]byte(tt.in))
			switch {
			case tt.check == nil && err == nil:
				t.Fatalf("Parse(%.200s) accepted a report it must refuse", tt.in)
			case tt.check != nil && err != nil:
				t.Fatalf("Parse(%.200s) = %v, want a report", tt.in, err)
			case err == nil && !tt.check(r):
				t.Fatalf("Parse(%.200s) = %+v", tt.in, r)
			case err != nil && len(err.Error()) > 300:
				t.Errorf("Parse(%.200s) error of %d bytes: it must not quote the report", tt.in, len(err.Error()))
			}
		})
	}
	if _, err := Parse(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(nil) = %v, want ErrEmpty", err)
	}
	// The decoder's message names an unknown field; the report chooses the name.
	_, err := Parse([]byte(`{"` + strings.Repeat("x", 1<<20) + `":1}`))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("Parse(an unknown field of 1 MiB) = %.300v…, want a short error", err)
	}
}

// outputs is n display outputs of a text/plain of size bytes each.
func outputs(n, size int) func(m map[string]any) {
	return func(m map[string]any) {
		var outs []any
		for range n {
			outs = append(outs, map[string]any{"data": map[string]any{"text/plain": strings.Repeat("x", size)}, "main": false})
		}
		m["outputs"] = outs
	}
}

// TestEnvMatchesHarness is a guard: every cap the harness reads from its environment
// comes from Env, and Env sets nothing the harness does not read.
func TestEnvMatchesHarness(t *testing.T) {
	var read []string
	for _, m := range regexp.MustCompile(`os\.environ\.pop\("(CODEEXEC_[A-Z_]+)"\)`).FindAllStringSubmatch(Source, -1) {
		read = append(read, m[1])
	}
	var set []string
	for _, kv := range Env() {
		k, _, _ := strings.Cut(kv, "=")
		set = append(set, k)
	}
	slices.Sort(read)
	slices.Sort(set)
	if !slices.Equal(read, set) || len(set) == 0 {
		t.Errorf("harness.py reads %v, Env sets %v", read, set)
	}
	if regexp.MustCompile(`os\.environ\.pop\("CODEEXEC_[A-Z_]+", `).MatchString(Source) {
		t.Error("harness.py has a default of its own for a cap: Env is the only source")
	}
}

// FuzzParse feeds the report decoder what a hostile program could write to its
// report pipe: it must never panic, and a report it accepts keeps within every cap.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"ok":true,"result":"1"}`))
	f.Add([]byte(`{"ok":true,"images":[{"name":"f.png","mime_type":"image/png","data":"` + png1x1 + `"}]}`))
	f.Add([]byte(`{"ok":false,"error":{"name":"E","message":"","traceback":"","truncated":false},"exit_code":-1}`))
	f.Add([]byte(`{"images":null,"result":null}`))
	f.Add([]byte(report(figures(MaxImages, 8))))
	f.Add([]byte(`{"ok":false,"error":{"name":"\udc80","message":"\u0000","traceback":"","truncated":true}}`))
	f.Add([]byte(`{"ok":true,"result":"\ud83d\ude00\udc80"}`))
	f.Add([]byte(report(nil) + report(nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("an error of %d bytes", len(err.Error()))
			}
			return
		}
		if len(data) > MaxReportBytes {
			t.Fatalf("accepted a report of %d bytes", len(data))
		}
		if len(r.Images) > MaxImages {
			t.Fatalf("accepted %d figures", len(r.Images))
		}
		total := 0
		for _, im := range r.Images {
			if im.MimeType != "image/png" || len(im.Data) < 8 || string(im.Data[:8]) != "\x89PNG\r\n\x1a\n" {
				t.Fatalf("accepted a non-PNG image: %+v", im)
			}
			total += len(im.Data)
		}
		if total > MaxImageBytes {
			t.Fatalf("accepted %d bytes of figures", total)
		}
		if r.Result != nil && len(*r.Result) > MaxResultBytes {
			t.Fatalf("accepted a result of %d bytes", len(*r.Result))
		}
		if len(r.Outputs) > MaxOutputs {
			t.Fatalf("accepted %d display outputs", len(r.Outputs))
		}
		if r.OK != (r.Error == nil) {
			t.Fatalf("accepted ok %v with error %+v", r.OK, r.Error)
		}
		if e := r.Error; e != nil && (len(e.Name) > MaxErrorNameBytes || len(e.Message) > MaxErrorMessageBytes || len(e.Traceback) > MaxTracebackBytes) {
			t.Fatalf("accepted an error of %d+%d+%d bytes", len(e.Name), len(e.Message), len(e.Traceback))
		}
	})
}
