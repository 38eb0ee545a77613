package egress

import (
	"slices"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "none", want: nil},
		{in: "allow=example.com", want: []string{"example.com"}},
		{in: "allow=example.com, *.pypi.org", want: []string{"example.com", "*.pypi.org"}},
		{in: "allow=", wantErr: true},
		{in: "allow=a.com,,b.com", wantErr: true},
		{in: "allow=exa mple.com", wantErr: true},
		{in: "all", wantErr: true},
		{in: "example.com", wantErr: true},
	} {
		got, err := ParseSpec(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseSpec(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if (got == nil) != (tc.want == nil) || got != nil && !slices.Equal(got.Allow, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want allow %q", tc.in, got, tc.want)
		}
	}
}
