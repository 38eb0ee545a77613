// Command codeexec runs untrusted Python in a secure sandbox, directly or for LLM agents.
package main

import (
	"fmt"
	"os"

	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/spf13/cobra"
)

func main() {
	// A sandbox's init stage re-executes this binary; it must run before anything else.
	sandbox.MaybeInit()

	root := &cobra.Command{
		Use:           "codeexec",
		Short:         "Secure code execution for LLM agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newImageCmd(), newRunCmd(), newServeCmd(), newMCPCmd(), newChatCmd(), newDoctorCmd(), newContainerInitCmd())
	if err := root.Execute(); err != nil {
		// An exitError carries the program's own exit code; its output said it all.
		if _, quiet := err.(exitError); !quiet {
			fmt.Fprintln(os.Stderr, "codeexec:", err)
		}
		os.Exit(exitCode(err))
	}
}
