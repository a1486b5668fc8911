package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/inject/local"
)

// newAbortCmd builds `chaosgate abort`: it asks the live runs in a data
// directory to stop. The request is the control file DATA/journal/RUN.abort
// (holding the reason), which a run polls every 100 ms in every phase; the
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

// localReapers are the injectors the reaper uses for faults a crashed local
// run left behind, one for every local fault kind: they work from the
// journal alone (SIGCONT to a paused pid that is still the same process;
// a clock skew removed through the node's admin API, or from its data
// directory when the node died too; toxics on proxies, brokers, bursts and
// nodes that died with the crashed run need nothing).
func localReapers() map[engine.FaultKind]engine.Injector {
	in := local.New(local.Config{})
	return map[engine.FaultKind]engine.Injector{
		engine.PodKill: in, engine.PodPause: in, engine.NetworkDelay: in, engine.Partition: in, engine.SplitBrain: in,
		engine.BrokerOutage: in, engine.ConsumerRebalance: in, engine.Backlog: in, engine.SlowDependency: in,
		engine.ClockSkew: in, engine.Overload: in, engine.CPUStress: in, engine.MemoryStress: in, engine.Bandwidth: in, engine.PacketLoss: in, engine.Corrupt: in, engine.ZoneOutage: in,
	}
}

// reapLeftovers recovers what crashed runs left in dataDir (faults and
// orphaned child processes) and prints one line per reaped item on w.
// `run`, `gate`, `demo` and `serve` call it before they start; injectors
// nil means localReapers. A failed recovery is an infrastructure error
// (exit code 2): the journal stays for the next attempt.
func reapLeftovers(ctx context.Context, w io.Writer, dataDir string, injectors map[engine.FaultKind]engine.Injector, log *slog.Logger) error {
	if injectors == nil {
		injectors = localReapers()
	}
	reaped, err := engine.Reap(ctx, dataDir, injectors, log)
	for _, r := range reaped {
		fmt.Fprintln(w, "reaped:", r)
	}
	if err != nil {
		return withExitCode(exitUsage, fmt.Errorf("reaping what a crashed run left behind: %w", err))
	}
	return nil
}
