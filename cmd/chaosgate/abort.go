package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine"
)

// newAbortCmd builds `chaosgate abort`: it asks the live runs in a data
// directory to stop. The request is the control file DATA/journal/RUN.abort
// (holding the reason), which a run polls every 200 ms in every phase; the
// run then recovers every applied fault and ends with an aborted result.
func newAbortCmd() *cobra.Command {
	var dataDir, runID, reason string
	cmd := &cobra.Command{
		Use:   "abort",
		Short: "Abort the live runs in the data dir: every applied fault is recovered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			runs, err := engine.RequestAbort(dataDir, runID, reason)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if len(runs) == 0 {
				return withExitCode(exitUsage, fmt.Errorf("no live run in %s", dataDir))
			}
			for _, r := range runs {
				fmt.Fprintf(cmd.OutOrStdout(), "abort requested: run %s (%s, pid %d)\n", r.Run, r.Name, r.Owner.Pid)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".chaosgate", "data directory of the run")
	cmd.Flags().StringVar(&runID, "run", "", "abort only this run id (default: every live run)")
	cmd.Flags().StringVar(&reason, "reason", "aborted with chaosgate abort", "reason recorded in the run's result")
	return cmd
}
