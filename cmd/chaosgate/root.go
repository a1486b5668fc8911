package main

import (
	"github.com/spf13/cobra"
)

// newRootCmd builds the chaosgate command tree. Every sub-command lives in
// its own file and is added here with a plain constructor call.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "chaosgate",
		Short:         "Chaos engineering and canary verification with signed evidence",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var logFormat, logLevel string
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format on stderr: text or json")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "", "log level: debug, info, warn or error (default: the command's own — info for serve and aggregator, warn for demo and load, error for run and gate)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := parseLogFlags(logFormat, logLevel); err != nil {
			return withExitCode(exitUsage, err)
		}
		return captureYAML(cmd)
	}
	root.AddCommand(
		newVersionCmd(),
		newBenchCmd(),
		newCheckCmd(),
		newLoadCmd(),
		runAnchoring(newDemoCmd()),
		runAnchoring(newRunCmd()),
		runAnchoring(newGateCmd()),
		newDecideCmd(),
		newWindowsCmd(),
		newKeygenCmd(),
		newLedgerCmd(),
		newScenariosCmd(),
		newAbortCmd(),
		newServeCmd(),
		newRouterCmd(),
		withSubcommands(newAggregatorCmd(), newAggregatorClusterCmd()),
	)
	return root
}

// withSubcommands attaches sub-commands that live in other files to parent.
func withSubcommands(parent *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	parent.AddCommand(subs...)
	return parent
}
