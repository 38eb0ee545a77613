package cgroup

import (
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	hybrid := `25 1 0:22 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu\040acct rw,relatime - cgroup cgroup rw,cpuacct
`
	m, err := parseMountinfo(strings.NewReader(hybrid))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
		"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpu acct",
	}
	for c, p := range want {
		if m.v1[c] != p {
			t.Errorf("v1[%q] = %q, want %q", c, m.v1[c], p)
		}
	}
	if u, ok := m.unified(); !ok || u != "/sys/fs/cgroup/unified" {
		t.Errorf("unified() = %q, %v", u, ok)
	}
	m, _ = parseMountinfo(strings.NewReader("25 1 0:22 / / rw - ext4 /dev/vda rw\n"))
	if _, ok := m.unified(); ok || len(m.v1) != 0 {
		t.Errorf("found cgroups in a table without any: %+v", m)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x`: "/tab\tx", `/bad\09`: `/bad\09`, `/end\04`: `/end\04`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}
