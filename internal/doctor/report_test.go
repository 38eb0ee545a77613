package doctor

import (
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	checks := []Check{
		{Name: "root", Status: OK, Detail: "running as uid 0"},
		{Name: "landlock", Status: Warn, Detail: "no Landlock", Fix: "boot with lsm=landlock"},
		{Name: "image", Status: Fail, Detail: "image not built", Fix: "codeexec image build"},
	}
	var b strings.Builder
	if err := Write(&b, checks); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"✓ root      running as uid 0\n" +
		"! landlock  no Landlock\n" +
		"            fix: boot with lsm=landlock\n" +
		"✗ image     image not built\n" +
		"            fix: codeexec image build\n" +
		"2 problems found (1 failure, 1 warning)\n"
	if got := b.String(); got != want {
		t.Errorf("Write(%v) printed\n%s\nwant\n%s", checks, got, want)
	}
}

func TestSummary(t *testing.T) {
	ok := Check{Status: OK}
	warn := Check{Status: Warn}
	fail := Check{Status: Fail}
	tests := []struct {
		checks []Check
		want   string
	}{
		{[]Check{ok, ok}, "all checks passed"},
		{[]Check{ok, warn}, "1 problem found (0 failures, 1 warning)"},
		{[]Check{fail, ok}, "1 problem found (1 failure, 0 warnings)"},
		{[]Check{fail, fail, warn, warn, warn}, "5 problems found (2 failures, 3 warnings)"},
	}
	for _, tt := range tests {
		if got := Summary(tt.checks); got != tt.want {
			t.Errorf("Summary(%v) = %q, want %q", tt.checks, got, tt.want)
		}
	}
}
