package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/gameday"
)

// newDemoCmd is `chaosgate demo`: the main job on the embedded default. It
// runs the built-in default game day (pod kill, network delay, partition and
// split brain at every canary step, on a control and a canary cluster) and
// ends with the verdict, the evidence index and a ledger verification.
func newDemoCmd() *cobra.Command {
	var o gamedayOpts
	var quick, ui bool
	var defect string
	cmd := &cobra.Command{
		Use:   "demo [--quick] [--canary-defect NAME] [-o json]",
		Short: "Run the default game day on local control and canary clusters: faults, probes, judge, evidence",
		Long: `demo starts a local control (stable) cluster and a canary cluster of the
reference aggregator, every edge behind a fault proxy, drives load split by
the canary weight, runs the default game day (pod kill, network delay,
partition and split brain on both arms) at the canary steps, judges the
canary against the control at every step, promotes or blocks, appends a
signed evidence record to the ledger under --data-dir and verifies the
ledger. --quick runs the short game day (two steps, under a minute).
--canary-defect NAME makes the canary a known-bad build (see chaosgate
aggregator --help for the defect zoo): the gate must block it.

A terminal gets a live view redrawn in place (phase, active faults, per-arm
success ratio and p99, step verdicts); other outputs get plain lines. The
report goes to stdout (report/v1 JSON with -o json). Leftovers of a crashed
run are reaped first.

Exit codes: 0 promote, 1 block, 3 hold, 2 error or interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ui {
				fmt.Fprintln(cmd.ErrOrStderr(), "--ui: demo shows its live view in this terminal; the web dashboard and block explorer are served by chaosgate serve (run it with the same --data-dir to browse this run and its evidence)")
			}
			doc, err := gameday.Quick(quick)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			o.doc = doc
			if defect != "" {
				o.defects = strings.Split(defect, ",")
			}
			o.verifyLedger = true
			_, err = runGameday(cmd, o)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "run the short game day (two canary steps, under a minute)")
	f.StringVar(&defect, "canary-defect", "", "make the canary a known-bad build: ack-before-commit, no-dedup, stale-read, slow-path, error-rate, gc-churn, ...")
	f.BoolVar(&ui, "ui", false, "the web dashboard: served by chaosgate serve (demo keeps its terminal view)")
	f.StringVar(&o.revision, "revision", "", "revision recorded as the evidence subject (default local:good or local:defect-NAME)")
	o.flags(cmd)
	return cmd
}
