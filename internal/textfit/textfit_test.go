package textfit

import (
	"slices"
	"strings"
	"testing"
)

func TestShares(t *testing.T) {
	tests := []struct {
		sizes  []int
		budget int
		want   []int
	}{
		{[]int{10, 10}, 100, []int{10, 10}},
		{[]int{1000, 10}, 100, []int{90, 10}}, // the small part keeps all; the rest goes to the large
		{[]int{1000, 1000}, 100, []int{50, 50}},
		{[]int{1000, 30, 1000}, 100, []int{35, 30, 35}},
		{[]int{5, 5}, -3, []int{0, 0}},
		{nil, 10, []int{}},
	}
	for _, tt := range tests {
		if got := Shares(tt.sizes, tt.budget); !slices.Equal(got, tt.want) {
			t.Errorf("Shares(%v, %d) = %v, want %v", tt.sizes, tt.budget, got, tt.want)
		}
	}
}

func TestLayout(t *testing.T) {
	notes := Notes{Cut: "[%d cut]", Truncated: "[%s truncated]"}
	out := strings.Repeat("o", 1000) + "END"
	got := Layout("head\n", []Section{{Name: "stdout", Text: out}, {Name: "stderr", Text: "boom\n", Truncated: true}, {Name: "result"}}, "tail\n", 200, notes)
	for _, want := range []string{"head\n", "stdout:\noooo", "END\n", "stderr:\nboom\n[stderr truncated]\n", "tail\n", " cut]"} {
		if !strings.Contains(got, want) {
			t.Errorf("Layout = %q, want it to hold %q", got, want)
		}
	}
	if strings.Contains(got, "result:") {
		t.Errorf("Layout = %q shows an empty section", got)
	}
	if len(got) > 260 {
		t.Errorf("Layout is %d bytes for a budget of 200 (plus its notes)", len(got))
	}
	if short := Layout("", []Section{{Name: "stdout", Text: "hi"}}, "", 200, notes); short != "stdout:\nhi\n" {
		t.Errorf("Layout of what fits = %q, want it whole", short)
	}
}
