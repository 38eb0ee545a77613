package image

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testManifest() *Manifest {
	r := DefaultRecipe()
	return &Manifest{
		Name:         r.Name,
		RecipeHash:   r.Hash(),
		Recipe:       r,
		Suite:        r.Suite,
		Mirror:       r.Mirror,
		Bootstrapper: "mmdebstrap",
		BuiltAt:      time.Date(2026, 11, 23, 18, 56, 0, 0, time.UTC),
		BuildSeconds: 92.5,
		SizeBytes:    783_000_000,
		Versions:     map[string]string{"python": "3.13.5", "numpy": "2.2.4"},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := testManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"built_at": "2026-11-23T18:56:00Z"`) {
		t.Errorf("Marshal() = %s, want built_at in RFC 3339", b)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("ParseManifest(%s) = %v", b, err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("ParseManifest(Marshal(m)) = %+v, want %+v", got, m)
	}
	if err := got.Validate(DefaultRecipe()); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestParseManifestRejects(t *testing.T) {
	b, err := testManifest().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	tests := []struct {
		name, json, want string
	}{
		{"unknown top-level field", strings.Replace(good, `"name":`, `"extra": 1, "name":`, 1), "unknown field"},
		{"unknown recipe field", strings.Replace(good, `"suite": "trixie",`, `"suite": "trixie", "arch": "arm64",`, 1), "unknown field"},
		{"trailing data", good + "{}", "after"},
		{"not json", "manifest", "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseManifest(%.60q…) = %v, want an error containing %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"other recipe", func(m *Manifest) { m.Recipe.Packages = []string{"python3"} }, "hashes to"},
		{"other hash", func(m *Manifest) { m.RecipeHash = "000000000000" }, "recipe hash"},
		{"no versions", func(m *Manifest) { m.Versions = nil }, "never verified"},
		{"bootstrapper", func(m *Manifest) { m.Bootstrapper = "docker" }, "bootstrapper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest()
			tt.change(m)
			err := m.Validate(DefaultRecipe())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestFindEmptyStore(t *testing.T) {
	store := t.TempDir()
	_, err := Find(store, DefaultRecipe())
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find(empty store) = %v, want ErrNotBuilt", err)
	}
	if !strings.Contains(err.Error(), "codeexec image build") {
		t.Errorf("Find(empty store) error %q does not say to run `codeexec image build`", err)
	}
}

// fakeImage writes a minimal image of r into store: a rootfs with usr/bin/python3 and m.
func fakeImage(t *testing.T, store string, r Recipe, m *Manifest) string {
	t.Helper()
	dir := filepath.Join(store, imagesDir, r.ID())
	if err := os.MkdirAll(filepath.Join(dir, rootfsDir, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rootfsDir, "usr/bin/python3"), []byte("#!"), 0o755); err != nil {
		t.Fatal(err)
	}
	if m != nil {
		if err := writeManifest(filepath.Join(dir, manifestFile), m); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFind(t *testing.T) {
	r := DefaultRecipe()
	t.Run("built", func(t *testing.T) {
		store := t.TempDir()
		dir := fakeImage(t, store, r, testManifest())
		img, err := Find(store, r)
		if err != nil {
			t.Fatalf("Find() = %v", err)
		}
		if img.Dir != dir || img.Rootfs != filepath.Join(dir, "rootfs") || img.Manifest.Versions["python"] != "3.13.5" {
			t.Errorf("Find() = %+v, want the image in %q", img, dir)
		}
	})
	t.Run("other mirror finds the same image", func(t *testing.T) {
		store := t.TempDir()
		fakeImage(t, store, r, testManifest())
		r2 := r
		r2.Mirror = "http://ftp.de.debian.org/debian"
		if _, err := Find(store, r2); err != nil {
			t.Errorf("Find() with another mirror = %v", err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		store := t.TempDir()
		fakeImage(t, store, r, nil)
		if _, err := Find(store, r); !errors.Is(err, ErrNotBuilt) {
			t.Errorf("Find() = %v, want ErrNotBuilt", err)
		}
	})
	t.Run("corrupt manifest", func(t *testing.T) {
		store := t.TempDir()
		dir := fakeImage(t, store, r, nil)
		if err := os.WriteFile(filepath.Join(dir, manifestFile), []byte(`{"name":`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Find(store, r); !errors.Is(err, ErrNotBuilt) {
			t.Errorf("Find() = %v, want ErrNotBuilt", err)
		}
	})
}

func TestRemoveStaleBuilds(t *testing.T) {
	images := filepath.Join(t.TempDir(), imagesDir)
	keep := filepath.Join(images, "python-0123456789ab", "rootfs", "etc")
	for _, d := range []string{
		filepath.Join(images, ".build-python-0123456789ab-111", "rootfs", "usr", "bin"),
		filepath.Join(images, ".build-python-0123456789ab-222"),
		keep,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(images, ".build-python-0123456789ab-111", "rootfs", "hostetc")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, ".build-python-0123456789ab-111", "rootfs", "usr", "bin", "python3"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeStaleBuilds(images); err != nil {
		t.Fatalf("removeStaleBuilds() = %v", err)
	}
	entries, err := os.ReadDir(images)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"python-0123456789ab"}; !reflect.DeepEqual(names, want) {
		t.Errorf("after removeStaleBuilds, images holds %v, want %v", names, want)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("removeStaleBuilds removed a built image: %v", err)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("removeStaleBuilds followed a symlink out of the tree: %v", err)
	}
}

// TestRemoveTreeDetachesMounts checks what an interrupted bootstrapper leaves behind: a
// bind mount of a host directory inside the chroot. Removing the build dir must detach
// it, not delete the host's files through it.
func TestRemoveTreeDetachesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "null"), []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(t.TempDir(), ".build-python-x-1")
	dev := filepath.Join(build, "rootfs", "dev")
	proc := filepath.Join(build, "rootfs", "proc")
	for _, d := range []string{dev, proc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(host, dev, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount not possible here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dev, unix.MNT_DETACH) })
	if err := unix.Mount("tmpfs", proc, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })

	if err := removeTree(build); err != nil {
		t.Fatalf("removeTree(%q) = %v", build, err)
	}
	if _, err := os.Lstat(build); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after removeTree, Lstat(%q) = %v, want not exist", build, err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "null")); err != nil || string(b) != "host file" {
		t.Errorf("the bind-mounted host file was touched: %q, %v", b, err)
	}
}

func TestInstall(t *testing.T) {
	images := t.TempDir()
	final := filepath.Join(images, "python-abc")
	write := func(dir, content string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "id"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "id"))
		return string(b)
	}
	// First install: a plain rename.
	b1 := filepath.Join(images, ".build-python-abc-1")
	write(b1, "first")
	if err := install(b1, final); err != nil {
		t.Fatalf("install() = %v", err)
	}
	if read(final) != "first" || read(b1) != "" {
		t.Errorf("after the first install: final=%q build=%q", read(final), read(b1))
	}
	// Forced rebuild: exchanged, the old image lands in the build dir.
	b2 := filepath.Join(images, ".build-python-abc-2")
	write(b2, "second")
	if err := install(b2, final); err != nil {
		t.Fatalf("install() over an existing image = %v", err)
	}
	if read(final) != "second" || read(b2) != "first" {
		t.Errorf("after the second install: final=%q build=%q, want second and first", read(final), read(b2))
	}
}

func TestTreeSize(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "a"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "d", "b"), make([]byte, 24), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink to a big file outside must count as nothing.
	if err := os.Symlink("/proc/kcore", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if got, err := treeSize(root); err != nil || got != 1024 {
		t.Errorf("treeSize() = %d, %v, want 1024", got, err)
	}
}

// storeImage puts a fake image of r, built at t, into store and returns its ID.
func storeImage(t *testing.T, store string, r Recipe, built time.Time) string {
	t.Helper()
	m := testManifest()
	m.Name, m.RecipeHash, m.Recipe, m.Suite, m.BuiltAt = r.Name, r.Hash(), r, r.Suite, built
	fakeImage(t, store, r, m)
	return r.ID()
}

func TestListLookupRemove(t *testing.T) {
	store := t.TempDir()
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	trixie := DefaultRecipe()
	bookworm := DefaultRecipe()
	bookworm.Suite = "bookworm"
	ml := DefaultRecipe()
	ml.Name, ml.Packages = "ml", append(ml.Packages, "python3-sklearn")
	ml2 := ml
	ml2.Preload = []string{"sklearn"}
	idTrixie := storeImage(t, store, trixie, day(20))
	idBookworm := storeImage(t, store, bookworm, day(10)) // older: not what "python" means
	idML := storeImage(t, store, ml, day(11))
	idML2 := storeImage(t, store, ml2, day(12))
	// Broken entries: no manifest, another recipe version, a manifest for another dir.
	fakeImage(t, store, Recipe{Name: "broken", Packages: []string{"x"}}, nil)
	old := DefaultRecipe()
	old.Name, old.Version = "old", RecipeVersion-1
	idOld := storeImage(t, store, old, day(1))
	if err := os.MkdirAll(filepath.Join(store, imagesDir, ".build-x-1"), 0o755); err != nil { // in progress
		t.Fatal(err)
	}

	entries, err := List(store)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		s := e.ID
		if e.Err != nil {
			s += " (broken)"
		}
		got = append(got, s)
	}
	want := []string{"broken-" + Recipe{Name: "broken", Packages: []string{"x"}}.Hash() + " (broken)", idML2, idML, idOld + " (broken)", idTrixie, idBookworm}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List() =\n%v\nwant\n%v", got, want)
	}

	for _, tt := range []struct {
		ref, want, wantErr string
	}{
		{"python", idTrixie, ""},
		{idBookworm, idBookworm, ""},
		{"ml", idML2, ""},
		{idML, idML, ""},
		{"nothing", "", "no image \"nothing\""},
		{"old", "", "other build steps"},
		{idOld, "", "other build steps"},
	} {
		img, err := Lookup(store, tt.ref)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Lookup(%q) = %v, want an error containing %q", tt.ref, err, tt.wantErr)
			}
		case err != nil || img.ID() != tt.want:
			t.Errorf("Lookup(%q) = %v, %v, want %q", tt.ref, img, err, tt.want)
		}
	}
	if _, err := Lookup(store, "nothing"); !errors.Is(err, ErrNoImage) {
		t.Errorf("Lookup(unknown) = %v, want ErrNoImage", err)
	}

	// Removing an ID removes that image only; a name removes all of its images.
	if ids, err := Remove(store, idML, func() {}); err != nil || !reflect.DeepEqual(ids, []string{idML}) {
		t.Errorf("Remove(%q) = %v, %v", idML, ids, err)
	}
	if img, err := Lookup(store, "ml"); err != nil || img.ID() != idML2 {
		t.Errorf("Lookup(ml) after removing the older = %v, %v", img, err)
	}
	if ids, err := Remove(store, "python", func() {}); err != nil || !reflect.DeepEqual(ids, []string{idTrixie, idBookworm}) {
		t.Errorf("Remove(python) = %v, %v", ids, err)
	}
	if _, err := Remove(store, "python", func() {}); !errors.Is(err, ErrNoImage) {
		t.Errorf("second Remove(python) = %v, want ErrNoImage", err)
	}
	if _, err := Remove(t.TempDir(), "python", func() {}); !errors.Is(err, ErrNoImage) {
		t.Errorf("Remove() in an empty store = %v, want ErrNoImage", err)
	}
	left, _ := os.ReadDir(filepath.Join(store, imagesDir))
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	// Removal leaves no .build-removed-* behind; the build in progress is not touched.
	for _, n := range names {
		if strings.HasPrefix(n, buildPrefix+"removed") || n == idTrixie || n == idBookworm || n == idML {
			t.Errorf("after Remove, %q is still in the store: %v", n, names)
		}
	}
	if !slices.Contains(names, ".build-x-1") || !slices.Contains(names, idML2) {
		t.Errorf("Remove took more than asked: %v", names)
	}
}
