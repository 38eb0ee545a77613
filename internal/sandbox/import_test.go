package sandbox

import (
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// TestImportFromWorkDir: a program imports a module from its work dir, one it wrote
// itself and one given as an input file, on both paths. The zygote sets sys.path up
// for its children before the work dir exists (setup_zygote): an import system that
// had remembered /work as no directory would miss both.
func TestImportFromWorkDir(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		code := "open('written.py', 'w').write('X = 2\\n')\nimport written, given\nprint(written.X * given.Y)"
		res := run(t, r, code, func(req *job.Request) {
			req.Files = []job.InputFile{{Path: "given.py", Data: []byte("Y = 21\n")}}
		})
		if res.Status != job.StatusOK || res.Stdout != "42\n" {
			t.Errorf("status %s, stdout %q, stderr %q; want ok and 42", res.Status, res.Stdout, res.Stderr)
		}
	})
}
