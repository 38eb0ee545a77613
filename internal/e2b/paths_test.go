package e2b

import "testing"

func TestPaths(t *testing.T) {
	for _, c := range []struct {
		in, sandbox, work string
		outside           bool
	}{
		{in: "/home/user", sandbox: "/home/user", work: "."},
		{in: "/home/user/a/b.txt", sandbox: "/home/user/a/b.txt", work: "a/b.txt"},
		{in: "a.txt", sandbox: "/home/user/a.txt", work: "a.txt"},
		{in: "~/x", sandbox: "/home/user/x", work: "x"},
		{in: "/work/y", sandbox: "/work/y", work: "y"},
		{in: "/home/user/../../etc/passwd", sandbox: "/etc/passwd", outside: true},
		{in: "/home/userx", sandbox: "/home/userx", outside: true},
		{in: "/tmp/z", sandbox: "/tmp/z", outside: true},
		{in: "../etc", sandbox: "/home/etc", outside: true},
	} {
		if got := sandboxPath(c.in); got != c.sandbox {
			t.Errorf("sandboxPath(%q) = %q, want %q", c.in, got, c.sandbox)
		}
		got, ok := workPath(c.in)
		if c.outside == ok || (ok && got != c.work) {
			t.Errorf("workPath(%q) = %q, %v; want %q (outside: %v)", c.in, got, ok, c.work, c.outside)
		}
	}
}

// TestParseEntries reads find's output as envd's EntryInfo: types, octal mode,
// modified time, a relative symlink target made absolute, work dir paths named
// under /home/user.
func TestParseEntries(t *testing.T) {
	out := "f\x004\x00644\x00-rw-r--r--\x00sandbox\x00sandbox\x001732860000.5000000000\x00\x00/home/user/a.txt\x00" +
		"l\x001\x00777\x00lrwxrwxrwx\x00sandbox\x00sandbox\x001732860000.0\x00a.txt\x00/work/l\x00" +
		"d\x0040\x00755\x00drwxr-xr-x\x00root\x00root\x000.0\x00\x00/tmp/d\x00"
	got := parseEntries(out)
	want := []entryInfo{
		{Name: "a.txt", Type: "FILE_TYPE_FILE", Path: "/home/user/a.txt", Size: 4, Mode: 0o644, Permissions: "-rw-r--r--", Owner: "sandbox", Group: "sandbox", ModifiedTime: "2024-11-29T06:00:00.5Z"},
		{Name: "l", Type: "FILE_TYPE_SYMLINK", Path: "/home/user/l", Size: 1, Mode: 0o777, Permissions: "lrwxrwxrwx", Owner: "sandbox", Group: "sandbox", ModifiedTime: "2024-11-29T06:00:00Z", SymlinkTarget: "/home/user/a.txt"},
		{Name: "d", Type: "FILE_TYPE_DIRECTORY", Path: "/tmp/d", Size: 40, Mode: 0o755, Permissions: "drwxr-xr-x", Owner: "root", Group: "root", ModifiedTime: "1970-01-01T00:00:00Z"},
	}
	if len(got) != len(want) {
		t.Fatalf("parseEntries gave %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
