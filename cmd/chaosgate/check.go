package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/probe/consistency"
)

// newCheckCmd is `chaosgate check`: the offline consistency checker over a
// recorded history/v1 file.
func newCheckCmd() *cobra.Command {
	var (
		path      string
		output    string
		maxOffset time.Duration
		linBudget time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check --history FILE",
		Short: "Check a recorded operation history (history/v1 JSON lines) against invariants I1-I9",
		Long: `check reads a history/v1 file (one JSON object a line, as written by
chaosgate load and the consistency probe) and reports the invariants I1-I9:
lost, duplicated and unexpected messages, per-key order, HLC monotonicity,
caps under overload, crash safety, split brain (I8: two nodes committing or
acknowledging for one partition in one epoch, stale epochs, writes of a
deposed leader overwritten; the lost messages and disagreeing readers it
causes name it) and per-key linearizability. docs/history-v1.md says which
fields each invariant needs.

Exit codes: 0 every invariant holds, 1 an invariant is violated, 2 the input is
malformed (the error names the line, the field and a hint), unreadable or
empty (a history without operations proves nothing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return withExitCode(exitUsage, errors.New("--history FILE is required"))
			}
			if output != "json" && output != "table" {
				return withExitCode(exitUsage, fmt.Errorf("-o %q: want json or table", output))
			}
			if err := notEmpty(path); err != nil {
				return withExitCode(exitUsage, err)
			}
			rep, err := consistency.CheckFile(path, consistency.Config{MaxOffset: maxOffset, LinearizabilityTimeout: linBudget})
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if err := printCheckReport(cmd.OutOrStdout(), rep, output); err != nil {
				return withExitCode(exitUsage, err)
			}
			if !rep.OK {
				return withExitCode(exitBlock, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "history", "", "history/v1 file to check")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().DurationVar(&maxOffset, "max-offset", 500*time.Millisecond, "clock uncertainty tolerated between nodes (I5); a config node event overrides it")
	cmd.Flags().DurationVar(&linBudget, "linearizability-timeout", 10*time.Second, "porcupine search budget per key (I9); when it runs out the result is unknown")
	return cmd
}

func printCheckReport(w io.Writer, rep consistency.Report, output string) error {
	if output == "json" {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	verdict := "OK"
	if !rep.OK {
		verdict = "VIOLATED"
	}
	c := rep.Counts
	fmt.Fprintf(tw, "consistency\t%s\n", verdict)
	fmt.Fprintf(tw, "sent_ok\t%d\nreceived\t%d\nlost\t%d\nduplicated\t%d\nunexpected\t%d\norder_violations\t%d\nhlc_violations\t%d\nsplit_brain\t%d\nlinearizability\t%s\n",
		c.SentOK, c.Received, c.Lost, c.Duplicated, c.Unexpected, c.OrderViolations, c.HLCViolations, c.SplitBrain, c.Linearizability)
	if c.DeadLettered > 0 {
		fmt.Fprintf(tw, "dead_lettered\t%d\n", c.DeadLettered)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range rep.Violations {
		fmt.Fprintf(w, "\n%s  %s\n", v.Invariant, v.Detail)
		for _, ex := range v.Examples {
			fmt.Fprintf(w, "    %s\n", strings.TrimSpace(ex))
		}
	}
	return nil
}

// notEmpty refuses a history file that holds no operation at all: an empty
// file (a load generator that never ran, a truncated copy) is no evidence
// of consistency.
func notEmpty(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadByte()
		if err == io.EOF {
			return fmt.Errorf("%s: the history holds no operations (hint: record one with chaosgate load --history FILE)", path)
		}
		if err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			return nil
		}
	}
}
