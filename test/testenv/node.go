package testenv

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NodeDir returns the test's node directory (dir, relative to the test's package)
// with the npm packages it pins installed: it runs `npm ci` when node_modules lacks
// the version package.json pins for any of packages. Without node, or without npm
// when an install is needed, the test is skipped (failed under
// CODEEXEC_REQUIRE_INTEGRATION=1).
func NodeDir(t testing.TB, dir string, packages ...string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		Skip(t, "node is not on PATH")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &pkg)
	}
	if err != nil {
		t.Fatalf("%s/package.json: %v", dir, err)
	}
	var missing []string
	for _, name := range packages {
		want := pkg.Dependencies[name]
		if want == "" {
			t.Fatalf("%s/package.json does not pin %s", dir, name)
		}
		var installed struct {
			Version string `json:"version"`
		}
		if data, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json")); err == nil {
			json.Unmarshal(data, &installed)
		}
		if installed.Version != want {
			missing = append(missing, name+"@"+want)
		}
	}
	if len(missing) == 0 {
		return dir
	}
	if _, err := exec.LookPath("npm"); err != nil {
		Skip(t, "npm is not on PATH, and "+dir+"/node_modules lacks "+strings.Join(missing, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	npm := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	npm.Dir = dir
	start := time.Now()
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	t.Logf("npm ci installed %s in %v", strings.Join(missing, ", "), time.Since(start).Round(time.Millisecond))
	return dir
}
