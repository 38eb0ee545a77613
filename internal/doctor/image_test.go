package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/container"
	"github.com/codeexec/codeexec/internal/image"
)

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1536, "1.5 KiB"},
		{812 << 20, "812 MiB"},
		{1288490189, "1.2 GiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatVersions(t *testing.T) {
	v := map[string]string{"scipy": "1.10.1", "numpy": "1.24.2", "python": "3.11.2"}
	want := "python 3.11.2, numpy 1.24.2, scipy 1.10.1"
	if got := formatVersions(v); got != want {
		t.Errorf("formatVersions(%v) = %q, want %q", v, got, want)
	}
	v = map[string]string{"sympy": "1.11.1", "numpy": "1.24.2"}
	want = "numpy 1.24.2, sympy 1.11.1"
	if got := formatVersions(v); got != want {
		t.Errorf("formatVersions(%v) = %q, want %q", v, got, want)
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/var/lib/codeexec", "/var/lib/codeexec"},
		{"/tmp/my store", "'/tmp/my store'"},
		{"/tmp/it's", `'/tmp/it'\''s'`},
		{"", "''"},
	}
	for _, tt := range tests {
		if got := shellQuote(tt.in); got != tt.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckImageNotBuilt(t *testing.T) {
	store := filepath.Join(t.TempDir(), "my store")
	c := checkImage(store)
	if c.Status != Fail || !strings.Contains(c.Detail, image.ErrNoImage.Error()) {
		t.Errorf("checkImage(empty store) = %+v, want fail saying the image is not built", c)
	}
	if want := "codeexec image build --store '" + store + "'"; c.Fix != want {
		t.Errorf("checkImage(empty store).Fix = %q, want %q", c.Fix, want)
	}
}

// writeImage puts a minimal image of the default recipe into store, laid out as
// internal/image/store.go documents: images/<name>-<hash>/{manifest.json,rootfs/}.
func writeImage(t *testing.T, store string) string {
	t.Helper()
	return writeImageOf(t, store, image.DefaultRecipe())
}

// writeImageOf puts a minimal image of r into store.
func writeImageOf(t *testing.T, store string, r image.Recipe) string {
	t.Helper()
	dir := filepath.Join(store, "images", r.ID())
	python := filepath.Join(dir, "rootfs", "usr", "bin", "python3")
	if err := os.MkdirAll(filepath.Dir(python), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(python, []byte("#!\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := image.Manifest{
		Name: r.Name, RecipeHash: r.Hash(), Recipe: r, Suite: r.Suite, Mirror: r.Mirror,
		Bootstrapper: "mmdebstrap",
		BuiltAt:      time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		SizeBytes:    812 << 20,
		Versions:     map[string]string{"python": "3.11.2", "numpy": "1.24.2"},
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckImageBuilt(t *testing.T) {
	store := t.TempDir()
	dir := writeImage(t, store)
	c := checkImage(store)
	want := dir + " (812 MiB, built 2025-03-04 with mmdebstrap): python 3.11.2, numpy 1.24.2"
	if c.Status != OK || c.Detail != want || c.Fix != "" {
		t.Errorf("checkImage(store with image) = %+v, want ok with detail %q", c, want)
	}
	// Without python3 the image is unusable, and doctor says so.
	if err := os.Remove(filepath.Join(dir, "rootfs", "usr", "bin", "python3")); err != nil {
		t.Fatal(err)
	}
	if c := checkImage(store); c.Status != Fail || !strings.Contains(c.Detail, "python3") {
		t.Errorf("checkImage(image without python3) = %+v, want fail naming python3", c)
	}
}

func TestCheckImageBuilder(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if c := checkImageBuilder(container.None); c.Status != Warn || c.Fix != "apt-get install mmdebstrap" {
		t.Errorf("checkImageBuilder() with an empty PATH = %+v, want warn with fix apt-get install mmdebstrap", c)
	}
	// A container's images come built in it.
	if c := checkImageBuilder(container.Kubernetes); c.Status != OK || !strings.Contains(c.Detail, "none needed in a container") {
		t.Errorf("checkImageBuilder(in a pod) with an empty PATH = %+v, want ok: none needed", c)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "debootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if c := checkImageBuilder(container.None); c.Status != OK || c.Detail != filepath.Join(bin, "debootstrap") {
		t.Errorf("checkImageBuilder() with debootstrap on PATH = %+v, want ok naming it", c)
	}
}

// TestCheckImageNotDefault: a server runs in the newest "python" image, which may be
// another recipe's (bookworm); doctor warns and says how to build the default one.
func TestCheckImageNotDefault(t *testing.T) {
	store := t.TempDir()
	r := image.DefaultRecipe()
	r.Suite = "bookworm"
	writeImageOf(t, store, r)
	c := checkImage(store)
	if c.Status != Warn || !strings.Contains(c.Detail, r.ID()) || !strings.Contains(c.Detail, image.DefaultRecipe().ID()) ||
		!strings.HasPrefix(c.Fix, "codeexec image build") {
		t.Errorf("checkImage(store with a bookworm image) = %+v, want a warning naming both images and how to build", c)
	}
}
