package main

import "github.com/spf13/cobra"

// newBenchCmd groups the reproducible benchmarks; each runs chaosgate side by
// side with a real peer in one run and prints both. The evidence ledger's
// benchmark against tessera is `chaosgate-bench ledger` (cmd/chaosgate-bench),
// so that the shipped binary does not link tessera.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Reproducible benchmarks, each side by side with a real peer",
	}
	cmd.AddCommand(newBenchProxyCmd(), newBenchJudgeCmd(), newBenchAggregatorCmd())
	return cmd
}
