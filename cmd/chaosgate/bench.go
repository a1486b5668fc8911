package main

import "github.com/spf13/cobra"

// newBenchCmd groups the reproducible benchmarks; each runs chaosgate side by
// side with a real peer in one run and prints both.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Reproducible benchmarks, each side by side with a real peer",
	}
	cmd.AddCommand(newBenchProxyCmd(), newBenchLedgerCmd(), newBenchJudgeCmd(), newBenchAggregatorCmd())
	return cmd
}
