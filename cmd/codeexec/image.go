package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/spf13/cobra"
)

// verifyImage checks a freshly built root file system by running a program in the real
// sandbox that imports every library of the recipe and returns their versions (and
// "python"'s). run.go sets it; while it is nil, image.Build falls back to a weaker check
// in a chroot.
var verifyImage func(ctx context.Context, rootfs string, modules []string) (map[string]string, error)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build or inspect the sandbox's root file system image",
	}
	cmd.AddCommand(newImageBuildCmd(), newImageInfoCmd())
	return cmd
}

func newImageBuildCmd() *cobra.Command {
	var store, mirror string
	var force bool
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the default Python image (Debian + numpy, pandas, matplotlib, scipy, sympy, requests)",
		Long: `Build the default Python image into the store, showing progress.

The image is Debian with Python and its scientific stack from Debian's packages,
bootstrapped with mmdebstrap (or debootstrap), slimmed, hardened and verified. It is
identified by a hash of its recipe: if that image is already built, nothing is done
unless --force is given. Needs root and network access to a Debian mirror (by default
the one in /etc/apt/sources*).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := image.DefaultRecipe()
			if mirror != "" {
				r.Mirror = mirror
			}
			// Ctrl-C stops the bootstrapper and removes the half-built image.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir := storeDir(store)
			img, err := image.Build(ctx, dir, r, image.BuildOptions{
				Force:    force,
				Progress: os.Stderr,
				Verify:   verifyImage,
			})
			if err != nil {
				return fmt.Errorf("building image in store %q: %w", dir, err)
			}
			m := img.Manifest
			fmt.Fprintf(cmd.OutOrStdout(), "image %s-%s: %s (%.0f MiB, Python %s)\n",
				m.Name, m.RecipeHash, img.Rootfs, float64(m.SizeBytes)/(1<<20), m.Versions["python"])
			return nil
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	cmd.Flags().StringVar(&mirror, "mirror", "", "Debian mirror URL (default: the host's apt sources, else "+image.FallbackMirror+")")
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even if the image is already built")
	return cmd
}

func newImageInfoCmd() *cobra.Command {
	var store string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Print the manifest of the built image as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := image.Find(storeDir(store), image.DefaultRecipe())
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
