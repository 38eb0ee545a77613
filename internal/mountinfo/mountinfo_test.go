package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	table := `25 1 0:22 / / rw,relatime - ext4 /dev/vda rw
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
35 30 0:31 / /var/lib/a\040b rw,relatime - tmpfs tmpfs rw,size=1024k
36 35 0:32 / /var/lib/a\040b/c rw - tmpfs tmpfs rw
garbage line
`
	m, err := Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 5 {
		t.Fatalf("Parse found %d mounts, want 5: %+v", len(m), m)
	}
	if m[2].Point != "/sys/fs/cgroup/memory" || m[2].FSType != "cgroup" || m[2].SuperOptions[1] != "memory" {
		t.Errorf("cgroup line parsed as %+v", m[2])
	}
	if m[3].Point != "/var/lib/a b" {
		t.Errorf("escaped point parsed as %q", m[3].Point)
	}
	got := Under(m, "/var/lib/a b")
	if len(got) != 2 || got[0] != "/var/lib/a b/c" || got[1] != "/var/lib/a b" {
		t.Errorf("Under = %v, want the nested mount first", got)
	}
	if got := Under(m, "/var/lib/a"); len(got) != 0 {
		t.Errorf("Under matched a mere prefix: %v", got)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/a\040b`:           "/a b",
		`/tab\011x\134y`:    "/tab\tx\\y",
		`/trailing\04`:      `/trailing\04`,
		`/bad\09`:           `/bad\09`,
		`/not\xyzoctal\777`: `/not\xyzoctal\777`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
