// Package images_test builds a small custom image — a Debian package and a wheel made
// here — and runs code in it through the API, beside the default image.
package images_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/imageset"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/session"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

// probeWheel is a pure-Python wheel made by hand (PEP 427): a package, its metadata and
// a RECORD of hashes. Stored, not deflated, with fixed times, so that its bytes — and
// so the recipe's hash, and the image in the store — are the same on every run.
func probeWheel(t *testing.T) (name string, data []byte) {
	t.Helper()
	const dist = "codeexec_probe-1.0"
	files := []struct{ path, body string }{
		{"codeexec_probe/__init__.py", "VALUE = \"probe-ok\"\n\n\ndef greet(name):\n    return \"hello \" + name\n"},
		{dist + ".dist-info/METADATA", "Metadata-Version: 2.1\nName: codeexec-probe\nVersion: 1.0\nSummary: a wheel the codeexec tests make\n"},
		{dist + ".dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: codeexec-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(path, body string) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: path, Method: zip.Store, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, body); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.path, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
		add(f.path, f.body)
	}
	record.WriteString(dist + ".dist-info/RECORD,,\n")
	add(dist+".dist-info/RECORD", record.String())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return dist + "-py3-none-any.whl", buf.Bytes()
}

// tinyRecipe is the smallest image that exercises a custom build: python3, one small
// pure-Python Debian package and the probe wheel, no scientific stack (≈ 30 s to build).
func tinyRecipe(wheel, sum string) image.Recipe {
	return image.Recipe{
		Name:     "codeexec-test-tiny",
		Version:  image.RecipeVersion,
		Suite:    image.DefaultSuite,
		Mirror:   image.DefaultMirror(),
		Packages: []string{"python3", "python3-tabulate"},
		Purge:    image.DefaultPurge,
		Modules:  []string{"tabulate", "codeexec_probe"},
		Preload:  []string{"tabulate", "codeexec_probe"},
		Wheels:   []image.Wheel{{File: wheel, SHA256: sum}},
	}
}

func testStore() string {
	if s := os.Getenv("CODEEXEC_STORE"); s != "" {
		return s
	}
	return "/var/lib/codeexec"
}

// reachable reports whether the mirror's host accepts a TCP connection.
func reachable(mirror string) bool {
	u, err := url.Parse(mirror)
	if err != nil || u.Scheme == "file" {
		return err == nil
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(u.Hostname(), port), 5*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// tinyImage builds the tiny image into the store, or finds it there from an earlier
// run, and returns its name.
func tinyImage(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		sandboxtest.Skip(t, "building an image and sandboxes need root")
	}
	wheel, data := probeWheel(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, wheel), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	r := tinyRecipe(wheel, fmt.Sprintf("%x", sum))
	store := testStore()
	if _, err := image.Find(store, r); err != nil && !reachable(r.Mirror) {
		sandboxtest.Skip(t, fmt.Sprintf("image %s is not built and the mirror %s is unreachable", r.ID(), r.Mirror))
	}
	var progress bytes.Buffer
	img, err := image.Build(context.Background(), store, r, image.BuildOptions{Progress: &progress, WheelDir: dir})
	t.Logf("building %s:\n%s", r.ID(), progress.String())
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if v := img.Manifest.Versions; v["tabulate"] == "" || v["codeexec_probe"] == "" {
		t.Errorf("the manifest has no versions of the image's modules: %v", v)
	}
	for _, gone := range []string{"usr/share/python-wheels", "usr/bin/pip", "usr/lib/python3/dist-packages/numpy"} {
		if _, err := os.Lstat(filepath.Join(img.Rootfs, gone)); err == nil {
			t.Errorf("%s is in the image: pip's wheel is for the build only, and numpy was not asked for", gone)
		}
	}
	return r.Name
}

// apiImages is an imageset.Set as the API sees it (cmd/codeexec has the same).
type apiImages struct{ *imageset.Set }

func (a apiImages) Runner(name string) (api.ImageRunner, error) {
	r, err := a.Set.Runner(name)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("POST %s %s: decoding the reply: %v", url, body, err)
	}
	return resp.StatusCode, v
}

// TestCustomImage runs code in a custom image through the API: its Debian package and
// its wheel import, its zygote preloaded what the recipe names and skipped the default
// stack it lacks, the default image serves requests that name none, and an image the
// server was not started with is refused.
func TestCustomImage(t *testing.T) {
	tiny := tinyImage(t)
	state, err := os.MkdirTemp("", "codeexec-test-images-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(state, 0o711) // the sandbox's init traverses it unprivileged
	t.Cleanup(func() { os.RemoveAll(state) })
	set, err := imageset.Open(imageset.Config{
		Store:   testStore(),
		Default: image.DefaultName,
		Names:   []string{tiny},
		Sandbox: sandbox.Config{StateDir: filepath.Join(state, "run"), CgroupParent: "codeexec-test-images",
			HostUID: sandbox.DefaultHostUID, Warm: true, Prefork: 1},
	})
	if err != nil {
		sandboxtest.Skip(t, "no default image: "+err.Error())
	}
	t.Cleanup(func() { set.Close() })
	r, err := set.Runner(tiny)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Warm(); err != nil {
		t.Fatalf("the tiny image's zygote did not start: %v", err)
	}
	def, err := set.Runner(set.Default())
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, def)
	t.Cleanup(sessions.Close)
	srv := api.New(api.DefaultConfig(), def, sessions, func() error { return nil }, slog.New(slog.DiscardHandler))
	srv.SetImages(apiImages{set})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	const probe = `import sys
print("preloaded", "tabulate" in sys.modules, "codeexec_probe" in sys.modules, "numpy" in sys.modules)
import tabulate, codeexec_probe
print(codeexec_probe.greet("image"), codeexec_probe.VALUE)
print(tabulate.tabulate([[1, 2]], tablefmt="plain"))
import importlib.util
print("numpy", importlib.util.find_spec("numpy") is not None)`
	code, _ := json.Marshal(probe)
	for _, tt := range []struct {
		name, body string
		status     int
		want       string // in stdout, or the error code
	}{
		{"custom image", `{"code": ` + string(code) + `, "image": "` + tiny + `"}`, 200,
			"preloaded True True False\nhello image probe-ok\n1  2\nnumpy False\n"},
		{"default image", `{"code": "import numpy; print(numpy.__version__ >= '2')"}`, 200, "True\n"},
		{"default image by name", `{"code": "import pandas; print('ok')", "image": "python"}`, 200, "ok\n"},
		{"unknown image", `{"code": "print(1)", "image": "codeexec-test-nothing"}`, 400, "unknown_image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, v := post(t, hs.URL+"/v1/execute", tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, v)
			}
			if status != 200 {
				if e, _ := v["error"].(map[string]any); e["code"] != tt.want {
					t.Errorf("error %v, want code %q", v["error"], tt.want)
				}
				return
			}
			if v["status"] != "ok" || v["stdout"] != tt.want {
				t.Errorf("status %v stdout %q stderr %q, want ok %q", v["status"], v["stdout"], v["stderr"], tt.want)
			}
		})
	}

	t.Run("session", func(t *testing.T) {
		status, v := post(t, hs.URL+"/v1/sessions", `{"image": "`+tiny+`"}`)
		if status != 201 || v["image"] != tiny {
			t.Fatalf("creating a session in %q: %d %v", tiny, status, v)
		}
		base := hs.URL + "/v1/sessions/" + v["id"].(string)
		if status, v := post(t, base+"/execute", `{"code": "import codeexec_probe\nx = codeexec_probe.VALUE"}`); status != 200 || v["status"] != "ok" {
			t.Fatalf("first execution: %d %v", status, v)
		}
		if status, v := post(t, base+"/execute", `{"code": "x", "image": "`+tiny+`"}`); status != 200 || v["result"] != "'probe-ok'" {
			t.Errorf("second execution: %d %v, want the result 'probe-ok'", status, v)
		}
		status, v = post(t, base+"/execute", `{"code": "x", "image": "python"}`)
		if e, _ := v["error"].(map[string]any); status != 400 || e["code"] != "image_mismatch" {
			t.Errorf("naming another image in the session: %d %v, want 400 image_mismatch", status, v)
		}
		resp, err := http.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var info session.Info
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.Image != tiny {
			t.Errorf("GET session: %+v, %v, want image %q", info, err, tiny)
		}
	})
	if status, v := post(t, hs.URL+"/v1/sessions", `{"image": "codeexec-test-nothing"}`); status != 400 {
		t.Errorf("a session in an unknown image: %d %v, want 400", status, v)
	}
}
