package e2b

import "testing"

func TestPaths(t *testing.T) {
	for _, c := range []struct {
		in, sandbox, work string
		bad               bool
	}{
		{in: "/home/user", sandbox: "/work", work: "."},
		{in: "/home/user/a/b.txt", sandbox: "/work/a/b.txt", work: "a/b.txt"},
		{in: "a.txt", sandbox: "/work/a.txt", work: "a.txt"},
		{in: "~/x", sandbox: "/work/x", work: "x"},
		{in: "/work/y", sandbox: "/work/y", work: "y"},
		{in: "/home/user/../../etc/passwd", sandbox: "/etc/passwd", bad: true},
		{in: "/home/userx", sandbox: "/home/userx", bad: true},
		{in: "/tmp/z", sandbox: "/tmp/z", bad: true},
		{in: "../etc", sandbox: "/etc", bad: true},
	} {
		if got := sandboxPath(c.in); got != c.sandbox {
			t.Errorf("sandboxPath(%q) = %q, want %q", c.in, got, c.sandbox)
		}
		got, err := workPath(c.in)
		if c.bad != (err != nil) || (!c.bad && got != c.work) {
			t.Errorf("workPath(%q) = %q, %v; want %q (error: %v)", c.in, got, err, c.work, c.bad)
		}
	}
}
