package cleanup

import (
	"slices"
	"testing"
)

func TestCleanup(t *testing.T) {
	for _, tt := range []struct {
		name    string
		release bool
		want    []int // what Clean runs, in order
		handed  []int // what the function Release returned runs
	}{
		{name: "clean", want: []int{3, 2, 1}},
		{name: "release", release: true, want: nil, handed: []int{3, 2, 1}},
	} {
		var got []int
		c := Make(func() { got = append(got, 1) })
		c.Add(func() { got = append(got, 2) })
		c.Add(func() { got = append(got, 3) })
		var handed func()
		if tt.release {
			handed = c.Release()
		}
		c.Clean()
		c.Clean() // a second Clean runs nothing again
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Clean ran %v, want %v", tt.name, got, tt.want)
		}
		if handed != nil {
			got = nil
			handed()
			if !slices.Equal(got, tt.handed) {
				t.Errorf("%s: the released function ran %v, want %v", tt.name, got, tt.handed)
			}
		}
	}
}
