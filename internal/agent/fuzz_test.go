package agent

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCodeScanner: for any valid arguments, however cut in two, the code scanned
// as it comes is the first top-level "code" member's string, as encoding/json
// reads it; for any input at all, the scanner does not panic.
func FuzzCodeScanner(f *testing.F) {
	for _, s := range []string{`{"code":"print(1)"}`, `{"a":[1,{"b":"}"}],"code":"x\u00e9\ud83d\ude00"}`, `{"code":1,"code":"y"}`, `[]`, `{"code":"\ud800"}`} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, args string, cut int) {
		if cut < 0 || cut > len(args) {
			cut = len(args) / 2
		}
		var s codeScanner
		got := s.feed(args[:cut]) + s.feed(args[cut:])
		if !json.Valid([]byte(args)) || !utf8.ValidString(args) {
			return
		}
		if want, ok := firstCode(args); ok && got != want {
			t.Fatalf("args %q cut at %d: scanned %q, want %q", args, cut, got, want)
		}
	})
}

// firstCode is the first top-level "code" member of the JSON object args, if it
// is a string, read with encoding/json's tokenizer.
func firstCode(args string) (string, bool) {
	dec := json.NewDecoder(strings.NewReader(args))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	for {
		key, err := dec.Token()
		if err == io.EOF || key == json.Delim('}') || err != nil {
			return "", false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return "", false
		}
		if key != "code" {
			continue
		}
		var code string
		if err := json.Unmarshal(v, &code); err != nil {
			return "", false
		}
		return code, true
	}
}
