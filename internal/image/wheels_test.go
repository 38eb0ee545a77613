package image

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeWheel(t *testing.T, dir, name, data string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := hashFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestWheelsIn(t *testing.T) {
	dir := t.TempDir()
	b := writeWheel(t, dir, "b-1.0-py3-none-any.whl", "b")
	a := writeWheel(t, dir, "a-2.0-py3-none-any.whl", "a")
	writeWheel(t, dir, "c-1.0.tar.gz", "sdist: not installed")
	got, err := WheelsIn(dir)
	want := []Wheel{{"a-2.0-py3-none-any.whl", a}, {"b-1.0-py3-none-any.whl", b}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("WheelsIn() = %v, %v, want %v", got, err, want)
	}
	// "a" hashes to ca978112…, which every SHA-256 implementation agrees on.
	if !strings.HasPrefix(a, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb") {
		t.Errorf("hash of %q = %s", "a", a)
	}
	if _, err := WheelsIn(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.whl") {
		t.Errorf("WheelsIn(empty dir) = %v, want an error saying there is no wheel", err)
	}
	if _, err := WheelsIn(filepath.Join(dir, "missing")); err == nil {
		t.Error("WheelsIn(missing dir) = nil error")
	}
}

func TestCheckWheels(t *testing.T) {
	dir := t.TempDir()
	sum := writeWheel(t, dir, "a-1-py3-none-any.whl", "a")
	tests := []struct {
		name    string
		dir     string
		wheels  []Wheel
		wantErr string
	}{
		{"none", "", nil, ""},
		{"good", dir, []Wheel{{"a-1-py3-none-any.whl", sum}}, ""},
		{"no dir", "", []Wheel{{"a-1-py3-none-any.whl", sum}}, "no wheel dir"},
		{"missing file", dir, []Wheel{{"b-1-py3-none-any.whl", sum}}, "b-1-py3-none-any.whl"},
		{"changed file", dir, []Wheel{{"a-1-py3-none-any.whl", strings.Repeat("0", 64)}}, "the recipe wants 0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWheels(tt.dir, tt.wheels)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkWheels(%q, %v) = %v, want error containing %q", tt.dir, tt.wheels, err, tt.wantErr)
			}
		})
	}
}

func TestCopyWheel(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	sum := writeWheel(t, src, "a-1-py3-none-any.whl", "wheel bytes")
	if err := copyWheel(filepath.Join(src, "a-1-py3-none-any.whl"), filepath.Join(dst, "a.whl"), sum); err != nil {
		t.Fatalf("copyWheel() = %v", err)
	}
	if got := readFile(t, filepath.Join(dst, "a.whl")); got != "wheel bytes" {
		t.Errorf("copied %q", got)
	}
	// The hash is checked on the bytes copied.
	err := copyWheel(filepath.Join(src, "a-1-py3-none-any.whl"), filepath.Join(dst, "b.whl"), strings.Repeat("0", 64))
	if err == nil || !strings.Contains(err.Error(), "changed during the build") {
		t.Errorf("copyWheel() with another hash = %v, want a changed-wheel error", err)
	}
	// Never over an existing file.
	if err := copyWheel(filepath.Join(src, "a-1-py3-none-any.whl"), filepath.Join(dst, "a.whl"), sum); err == nil {
		t.Error("copyWheel() onto an existing file = nil error")
	}
}

func TestBootstrapPackages(t *testing.T) {
	w := []Wheel{{"a-1-py3-none-any.whl", strings.Repeat("0", 64)}}
	for _, tt := range []struct {
		r    Recipe
		want []string
	}{
		{Recipe{Packages: []string{"python3"}}, []string{"python3"}},
		{Recipe{Packages: []string{"python3"}, Wheels: w}, []string{"python3", pipWheelPackage}},
		{Recipe{Packages: []string{pipWheelPackage, "python3"}, Wheels: w}, []string{pipWheelPackage, "python3"}},
	} {
		if got := bootstrapPackages(tt.r); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("bootstrapPackages(%v, %d wheels) = %v, want %v", tt.r.Packages, len(tt.r.Wheels), got, tt.want)
		}
	}
}

func TestParseDependents(t *testing.T) {
	out := "python3-pip\tca-certificates, python3-pip-whl (= 25.1.1+dfsg-1), python3-setuptools, \n" +
		"python3-venv\tpython3.13-venv, python3-pip-whl:any | python3-pip, \n" +
		"python3-pip-whl-extra\tpython3-pip-whlx, \n" +
		"libc6\tlibgcc-s1, libc6 (>= 2.0)\n" +
		"python3-pip-whl\tca-certificates, \n" +
		"\n"
	if got, want := parseDependents(out, "python3-pip-whl"), []string{"python3-pip", "python3-venv"}; !reflect.DeepEqual(got, want) {
		t.Errorf("parseDependents() = %v, want %v", got, want)
	}
	if got := parseDependents(out, "nothing"); got != nil {
		t.Errorf("parseDependents(nothing) = %v", got)
	}
}

func TestPurgeEmptyExpressionPurgesNothing(t *testing.T) {
	// A nil runner: running any command would panic.
	if got, err := purgeCompilers(t.Context(), nil, t.TempDir(), ""); err != nil || got != nil {
		t.Errorf("purgeCompilers(\"\") = %v, %v, want nothing purged", got, err)
	}
}
