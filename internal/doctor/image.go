package doctor

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/codeexec/codeexec/internal/container"
	"github.com/codeexec/codeexec/internal/image"
)

// checkImage looks in store for the image a server uses by default: the newest image
// named image.DefaultName. image.Lookup also checks that the rootfs has usr/bin/python3.
// An image that is not the default recipe's (built on another suite, or by an older
// recipe) works, and is a warning.
func checkImage(store string) Check {
	c := Check{Name: "image"}
	fix := "codeexec image build"
	if store != "" {
		fix += " --store " + shellQuote(store)
	}
	img, err := image.Lookup(store, image.DefaultName)
	if err != nil {
		// Lookup's error names the image, the store and what is wrong with it.
		c.Status, c.Detail, c.Fix = Fail, err.Error(), fix
		return c
	}
	c.Status = OK
	c.Detail = imageDetail(img)
	if want := image.DefaultRecipe().ID(); img.ID() != want {
		c.Status, c.Fix = Warn, fix
		c.Detail += fmt.Sprintf("; it is not the default recipe's image %s (Debian %s)", want, image.DefaultSuite)
	}
	return c
}

func imageDetail(img *image.Image) string {
	m := img.Manifest
	d := fmt.Sprintf("%s (%s, built %s with %s)", img.Dir, formatBytes(m.SizeBytes),
		m.BuiltAt.UTC().Format("2006-01-02"), m.Bootstrapper)
	if len(m.Versions) > 0 {
		d += ": " + formatVersions(m.Versions)
	}
	return d
}

// formatVersions lists versions as "python 3.13.5, numpy 2.2.4, …": python first, then
// the rest by name.
func formatVersions(v map[string]string) string {
	var names []string
	for n := range v {
		if n != "python" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if _, ok := v["python"]; ok {
		names = append([]string{"python"}, names...)
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " " + v[n]
	}
	return strings.Join(parts, ", ")
}

// formatBytes writes n in the largest binary unit that keeps it ≥ 1: "812 MiB", "1.2 GiB".
func formatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f >= 10 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// shellQuote quotes s for a POSIX shell if it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// bootstrappers build an image's Debian base, in order of preference.
var bootstrappers = []string{"mmdebstrap", "debootstrap"}

// checkImageBuilder looks for a bootstrapper; in a container (rt is not None) none is
// needed, since scripts/container.sh builds the images into the container image.
func checkImageBuilder(rt container.Runtime) Check {
	c := Check{Name: "image builder"}
	var found []string
	for _, b := range bootstrappers {
		if p, err := exec.LookPath(b); err == nil {
			found = append(found, filepath.Clean(p))
		}
	}
	if len(found) == 0 && rt != container.None {
		c.Status, c.Detail = OK, "none, and none needed in a container: its images are built into the container image (scripts/container.sh)"
		return c
	}
	if len(found) == 0 {
		c.Status = Warn
		c.Detail = "neither mmdebstrap nor debootstrap is on $PATH; they are needed only to build the image"
		c.Fix = "apt-get install mmdebstrap"
		return c
	}
	c.Status, c.Detail = OK, strings.Join(found, ", ")
	return c
}
