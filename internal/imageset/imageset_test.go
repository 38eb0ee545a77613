package imageset

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

func TestPreload(t *testing.T) {
	img := func(preload ...string) *image.Image {
		return &image.Image{Manifest: image.Manifest{Recipe: image.Recipe{Preload: preload}}}
	}
	for _, tt := range []struct {
		base []string
		img  *image.Image
		want []string
	}{
		{nil, img(), sandbox.DefaultPreload()},
		{nil, img("sklearn", "numpy"), append(sandbox.DefaultPreload(), "sklearn")},
		{[]string{}, img("tabulate"), []string{"tabulate"}},
		{[]string{"a", "b"}, img("c", "a"), []string{"a", "b", "c"}},
	} {
		if got := Preload(tt.base, tt.img); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Preload(%v, preload %v) = %v, want %v", tt.base, tt.img.Manifest.Recipe.Preload, got, tt.want)
		}
	}
}

// fakeStore writes images of the given names (a manifest and an executable
// usr/bin/python3) into a new store.
func fakeStore(t *testing.T, names ...string) string {
	t.Helper()
	store, err := os.MkdirTemp("", "codeexec-imageset-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(store) })
	os.Chmod(store, 0o755)
	for i, name := range names {
		r := image.DefaultRecipe()
		r.Name = name
		m := &image.Manifest{Name: name, RecipeHash: r.Hash(), Recipe: r, Suite: r.Suite, Mirror: r.Mirror,
			Bootstrapper: "mmdebstrap", BuiltAt: time.Date(2026, 11, 1+i, 0, 0, 0, 0, time.UTC), Versions: map[string]string{"python": "3.13.5"}}
		dir := filepath.Join(store, "images", r.ID())
		if err := os.MkdirAll(filepath.Join(dir, "rootfs/usr/bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rootfs/usr/bin/python3"), nil, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func testConfig(store string) Config {
	return Config{Store: store, Default: "python",
		Sandbox: sandbox.Config{StateDir: filepath.Join(store, "run"), CgroupParent: "codeexec-test-imageset", HostUID: sandbox.DefaultHostUID}}
}

// TestOpen resolves names against a store of fake images; runners are cold, so
// opening one starts nothing.
func TestOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sandbox runners need root")
	}
	store := fakeStore(t, "python", "ml", "tools")
	t.Run("every image in the store", func(t *testing.T) {
		s, err := Open(testConfig(store))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, want := s.Names(), []string{"ml", "python", "tools"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Names() = %v, want %v", got, want)
		}
		if s.Default() != "python" {
			t.Errorf("Default() = %q", s.Default())
		}
		r1, err := s.Runner("ml")
		if err != nil {
			t.Fatal(err)
		}
		if r2, _ := s.Runner("ml"); r2 != r1 {
			t.Error("Runner() opened a second runner for the same image")
		}
		if _, err := s.Runner("nothing"); err == nil || !strings.Contains(err.Error(), `no image "nothing"`) {
			t.Errorf("Runner(unknown) = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if _, err := s.Runner("ml"); err == nil {
			t.Error("Runner() after Close = nil error")
		}
	})
	t.Run("named images and the default", func(t *testing.T) {
		cfg := testConfig(store)
		cfg.Names = []string{"tools"}
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, want := s.Names(), []string{"python", "tools"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Names() = %v, want %v", got, want)
		}
		if img, ok := s.Image("tools"); !ok || img.Manifest.Name != "tools" {
			t.Errorf("Image(tools) = %v, %v", img, ok)
		}
	})
	t.Run("a named image the store lacks", func(t *testing.T) {
		cfg := testConfig(store)
		cfg.Names = []string{"tools", "nothing"}
		if s, err := Open(cfg); err == nil || !strings.Contains(err.Error(), `no image "nothing"`) {
			t.Errorf("Open() = %v, want an error naming the missing image", err)
			if s != nil {
				s.Close()
			}
		}
	})
	t.Run("no default image", func(t *testing.T) {
		cfg := testConfig(fakeStore(t, "ml"))
		if s, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "codeexec image build") {
			t.Errorf("Open() = %v, want an error saying how to build the default image", err)
			if s != nil {
				s.Close()
			}
		}
	})
}
