package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/spf13/cobra"
)

// verifyImage checks a freshly built root file system by running a program in the real
// sandbox that imports the given modules and returns their versions (and "python"'s).
// runner.go sets it; while it is nil, image.Build falls back to a weaker check in a
// chroot.
var verifyImage func(ctx context.Context, rootfs string, modules []string) (map[string]string, error)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, list, inspect or remove the sandbox's root file system images",
	}
	cmd.AddCommand(newImageBuildCmd(), newImageListCmd(), newImageInfoCmd(), newImageRmCmd())
	return cmd
}

// buildFlags are the flags of `image build` that make the recipe.
type buildFlags struct {
	recipeFile string
	name       string
	suite      string
	mirror     string
	packages   []string
	preload    []string
	wheels     string
}

// recipe returns the recipe the flags ask for: the recipe file's or the default
// image's, changed by the other flags. Packages and preload modules are added to the
// recipe's; they, and wheels, make a custom image, which needs a name of its own unless
// the recipe file gives one.
func (f buildFlags) recipe() (image.Recipe, error) {
	r := image.DefaultRecipe()
	if f.recipeFile != "" {
		var err error
		if r, err = image.LoadRecipe(f.recipeFile); err != nil {
			return image.Recipe{}, err
		}
	} else if f.name == "" && (len(f.packages) > 0 || len(f.preload) > 0 || f.wheels != "") {
		return image.Recipe{}, fmt.Errorf("--packages, --preload and --wheels make a custom image: name it with --name NAME (the default image %q stays as it is)", image.DefaultName)
	}
	if f.name != "" {
		r.Name = f.name
	}
	if f.suite != "" {
		r.Suite = f.suite
	}
	if f.mirror != "" {
		r.Mirror = f.mirror
	}
	r.Packages = appendNew(r.Packages, f.packages)
	r.Preload = appendNew(r.Preload, f.preload)
	if f.wheels != "" && len(r.Wheels) == 0 {
		ws, err := image.WheelsIn(f.wheels)
		if err != nil {
			return image.Recipe{}, err
		}
		r.Wheels = ws
	}
	if err := r.Validate(); err != nil {
		return image.Recipe{}, err
	}
	return r, nil
}

// appendNew appends the trimmed, non-empty items of add that list lacks.
func appendNew(list, add []string) []string {
	for _, a := range add {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

func newImageBuildCmd() *cobra.Command {
	var store, bootstrapper string
	var f buildFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build an image: the default Python image, or a custom one with more packages",
		Long: `Build an image into the store, showing progress.

Without flags it builds the default image "python": Debian 13 (trixie) with Python and
its scientific stack (numpy, pandas, matplotlib, scipy, sympy, requests) from Debian's
packages, bootstrapped with mmdebstrap (or debootstrap), slimmed, hardened and verified.
--suite bookworm builds the same stack on Debian 12.

A custom image adds Debian packages (--packages, resolved and installed by apt at build
time) and Python wheels from a local directory (--wheels, installed with pip without an
index: on a host that reaches PyPI, fill it with ` + "`pip download --only-binary=:all: -d DIR PKG`" + `)
to the default recipe, under a name of its own (--name). --recipe FILE builds from a
JSON recipe file instead (the "recipe" of ` + "`codeexec image info`" + ` is one), for
reproducible builds; the other flags then change it.

An image is identified by its name and a hash of its recipe: if that image is already
built, nothing is done unless --force is given. A name means its most recently built
image. Needs root and network access to a Debian mirror (by default the one in
/etc/apt/sources*).`,
		Example: `  codeexec image build
  codeexec image build --name ml --packages python3-sklearn,python3-statsmodels --preload sklearn
  codeexec image build --name tools --wheels ./wheels
  codeexec image build --recipe ml.json --wheels ./wheels`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.recipe()
			if err != nil {
				return usageError{err}
			}
			// Ctrl-C stops the bootstrapper and removes the half-built image.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir := storeDir(store)
			img, err := image.Build(ctx, dir, r, image.BuildOptions{
				Force:        force,
				Bootstrapper: bootstrapper,
				Progress:     os.Stderr,
				Verify:       verifyImage,
				WheelDir:     f.wheels,
			})
			if err != nil {
				return fmt.Errorf("building image in store %q: %w", dir, err)
			}
			m := img.Manifest
			fmt.Fprintf(cmd.OutOrStdout(), "image %s: %s (%.0f MiB, Debian %s, Python %s)\n",
				img.ID(), img.Rootfs, float64(m.SizeBytes)/(1<<20), m.Suite, m.Versions["python"])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	fl.StringVar(&f.recipeFile, "recipe", "", "build from this JSON recipe file instead of the default recipe")
	fl.StringVar(&f.name, "name", "", "the image's name (default: the recipe's, "+image.DefaultName+" for the default recipe)")
	fl.StringVar(&f.suite, "suite", "", "Debian release to bootstrap (default: the recipe's, "+image.DefaultSuite+" for the default recipe)")
	fl.StringVar(&f.mirror, "mirror", "", "Debian mirror URL (default: the host's apt sources, else "+image.FallbackMirror+")")
	fl.StringSliceVar(&f.packages, "packages", nil, "more Debian packages to install, e.g. python3-sklearn,python3-statsmodels")
	fl.StringSliceVar(&f.preload, "preload", nil, "more Python modules the warm interpreter imports, e.g. sklearn (verified at build time)")
	fl.StringVar(&f.wheels, "wheels", "", "directory of Python wheels to install (all of its *.whl, or those the recipe file lists)")
	fl.StringVar(&bootstrapper, "bootstrapper", "", "mmdebstrap or debootstrap (default: mmdebstrap if installed)")
	fl.BoolVar(&force, "force", false, "rebuild even if the image is already built")
	return cmd
}

func newImageListCmd() *cobra.Command {
	var store string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the images in the store",
		Long: `List the images in the store, newest first within a name. A name means its newest
image; older builds of a name are marked and can be removed by ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, err := image.List(storeDir(store))
			if err != nil {
				return fmt.Errorf("listing images: %w", err)
			}
			return writeImageList(cmd.OutOrStdout(), entries)
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	return cmd
}

// writeImageList prints entries (sorted as image.List sorts them) as a table.
func writeImageList(w io.Writer, entries []image.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSUITE\tPYTHON\tSIZE\tBUILT\t")
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Err != nil {
			fmt.Fprintf(tw, "-\t%s\t\t\t\t\tunusable: %v\n", e.ID, e.Err)
			continue
		}
		m := e.Image.Manifest
		note := ""
		if seen[m.Name] {
			note = "(older build)"
		}
		seen[m.Name] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f MiB\t%s\t%s\n", m.Name, e.ID, m.Suite, m.Versions["python"],
			float64(m.SizeBytes)/(1<<20), m.BuiltAt.Format("2006-01-02 15:04"), note)
	}
	return tw.Flush()
}

func newImageInfoCmd() *cobra.Command {
	var store string
	cmd := &cobra.Command{
		Use:   "info [NAME|ID]",
		Short: "Print an image's manifest as JSON (default: the python image)",
		Long: `Print an image's manifest as JSON: its recipe, the versions it was verified with,
its size and build time. Its "recipe" object is a recipe file: ` + "`codeexec image build --recipe FILE`" + `
builds the same image again.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := image.DefaultName
			if len(args) == 1 {
				ref = args[0]
			}
			img, err := image.Lookup(storeDir(store), ref)
			if err != nil {
				return err
			}
			b, err := img.Manifest.Marshal()
			if err != nil {
				return fmt.Errorf("encoding manifest: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	return cmd
}

func newImageRmCmd() *cobra.Command {
	var store string
	cmd := &cobra.Command{
		Use:   "rm NAME|ID…",
		Short: "Remove images from the store",
		Long: `Remove images from the store: an ID (from ` + "`codeexec image list`" + `) removes that
build, a name every build of that name. Stop the servers that use an image first: its
sandboxes lose their files.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := storeDir(store)
			var errs []error
			for _, ref := range args {
				ids, err := image.Remove(dir, ref, func() {
					fmt.Fprintf(cmd.ErrOrStderr(), "waiting for a build in %q to finish…\n", dir)
				})
				for _, id := range ids {
					fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", id)
				}
				if err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	return cmd
}
