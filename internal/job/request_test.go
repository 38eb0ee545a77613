package job

import (
	"strings"
	"testing"
)

func TestInputPathValidation(t *testing.T) {
	for _, p := range []string{"../x", "/etc/passwd", "a/../../x", "", ".", "a\x00b"} {
		req := &Request{Code: "1", Limits: DefaultLimits(), Files: []InputFile{{Path: p}}}
		if err := req.Validate(); err == nil {
			t.Errorf("Validate accepted input path %q", p)
		}
	}
	req := &Request{Code: "1", Limits: DefaultLimits(), Files: []InputFile{{Path: "./a//b.txt"}}}
	if err := req.Validate(); err != nil || req.Files[0].Path != "a/b.txt" {
		t.Errorf("Validate(./a//b.txt) = %v, path %q; want a/b.txt", err, req.Files[0].Path)
	}
}

func TestArgsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  Request
	}{
		{"NUL", Request{Args: []string{"a\x00b"}}},
		{"NUL in the name", Request{Name: "a\x00"}},
		{"not UTF-8", Request{Args: []string{"\xff"}}},
		{"too long", Request{Args: []string{strings.Repeat("a", MaxArgsBytes)}}},
		{"too many", Request{Args: make([]string, MaxArgsBytes)}},
	} {
		tt.req.Limits = DefaultLimits()
		if err := tt.req.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %q %q", tt.name, tt.req.Name, tt.req.Args)
		}
	}
	ok := Request{Limits: DefaultLimits(), Name: "x.py", Args: []string{strings.Repeat("a", MaxArgsBytes-10)}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate refused arguments within the limit: %v", err)
	}
}
