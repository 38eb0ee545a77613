package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/codeexec/codeexec/internal/container"
	"github.com/spf13/cobra"
)

func newContainerInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "container-init -- PROGRAM [ARGS…]",
		Short: "Fit a container for nesting sandboxes, then run PROGRAM in its place",
		Long: `The container image's entrypoint: it detaches the runtime's masks on /proc, makes the
container's cgroup subtree writable (and on cgroup v2 delegates memory, pids and cpu
to it), then executes PROGRAM, which keeps its process id. It needs CAP_SYS_ADMIN;
without it, it says so and runs PROGRAM all the same, so that codeexec's own error
and codeexec doctor say what is missing.`,
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			steps, err := container.Prepare()
			for _, s := range steps {
				fmt.Fprintln(os.Stderr, "codeexec container-init:", s)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "codeexec container-init: %v; run `codeexec doctor` in the container for what its security context lacks\n", err)
			}
			prog, err := exec.LookPath(args[0])
			if err != nil {
				return fmt.Errorf("container-init: %w", err)
			}
			err = syscall.Exec(prog, args, os.Environ())
			return fmt.Errorf("container-init: exec %q: %w", prog, err)
		},
	}
}
