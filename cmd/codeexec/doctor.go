package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/codeexec/codeexec/internal/doctor"
	"github.com/spf13/cobra"
)

func newDoctorCmd() *cobra.Command {
	var store string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the host for what sandboxes need",
		Long: `Check the host for what sandboxes need: root, namespaces, cgroups, seccomp,
Landlock, tmpfs and a built image. Each problem comes with a fix. The exit status is 1
if any check failed; warnings alone do not fail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			checks := doctor.Run(cmd.Context(), doctor.Options{Store: storeDir(store)})
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(checks); err != nil {
					return fmt.Errorf("writing report: %w", err)
				}
			} else if err := doctor.Write(os.Stdout, checks); err != nil {
				return fmt.Errorf("writing report: %w", err)
			}
			if n := doctor.Count(checks, doctor.Fail); n > 0 {
				return fmt.Errorf("%d of %d checks failed", n, len(checks))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "store directory (default $CODEEXEC_STORE or "+defaultStore+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as a JSON array")
	return cmd
}
