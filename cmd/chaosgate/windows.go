package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
)

// newWindowsCmd is `chaosgate windows`: build a windows/v1 judge input for
// a canary and its control from a user's Prometheus.
func newWindowsCmd() *cobra.Command {
	var (
		address, queriesPath, canarySel, controlSel, atText, output string
		window, every                                               time.Duration
		history                                                     int
	)
	cmd := &cobra.Command{
		Use:   "windows --prometheus URL --canary SELECTOR --control SELECTOR [--queries FILE] [--window 5m] [--at TIME] [--history N --history-every DURATION] [-o FILE]",
		Short: "Query Prometheus for a canary and its control and write the judge's input (windows/v1)",
		Long: `windows fills one window per arm from a Prometheus with the PromQL templates of a queries
file (queries/v1; default: the reference aggregator's), and writes a windows/v1 document for
chaosgate decide:

  chaosgate windows --prometheus http://prometheus:9090 --queries queries.yaml \
      --canary 'app="checkout",track="canary"' --control 'app="checkout",track="stable"' \
      --history 24 --history-every 5m | chaosgate decide --input -

A selector is the arm's label matchers (braces optional). --history N adds N earlier windows,
every --history-every before --at: the caller asserts that both arms ran the same build then
(A/A windows), which is what the judge learns its noise from. A field whose query returns no
data is left out (missing: the judge holds, never a zero); NaN is written as "NaN"; a failed
query goes to the arm's query_errors with the resolved query. Each is also named on stderr.
Exit 2 on bad flags, a bad queries file, or a Prometheus that does not answer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(format string, a ...any) error {
				return withExitCode(exitUsage, fmt.Errorf("windows: "+format, a...))
			}
			if address == "" {
				return usage("--prometheus is required (the server's URL, e.g. http://prometheus:9090)")
			}
			canary, control := selector(canarySel), selector(controlSel)
			if canary == "" || control == "" {
				return usage(`--canary and --control are required: each arm's label matchers, e.g. --canary 'app="checkout",track="canary"'`)
			}
			if window < time.Second {
				return usage("--window %s: want at least 1s", window)
			}
			if history < 0 || history > 1000 {
				return usage("--history %d: want 0 to 1000 windows", history)
			}
			if every == 0 {
				every = window
			}
			if every < time.Second {
				return usage("--history-every %s: want at least 1s", every)
			}
			at := time.Now()
			if atText != "" {
				t, err := time.Parse(time.RFC3339Nano, atText)
				if err != nil {
					return usage("--at %q: want an RFC 3339 time such as 2026-11-22T10:00:00Z", atText)
				}
				at = t
			}
			queries := promql.Default()
			if queriesPath != "" {
				q, err := promql.LoadFile(queriesPath)
				if err != nil {
					return usage("queries file:\n%w", err)
				}
				queries = q
			}
			src, err := promql.New(address, queries)
			if err != nil {
				return usage("%w", err)
			}
			defer src.Close()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if err := src.Ping(ctx); err != nil {
				return withExitCode(exitUsage, fmt.Errorf("windows: %s: %w", address, err))
			}
			stderr := cmd.ErrOrStderr()
			collect := func(arm, sel string) ([]promql.ArmWindow, error) {
				rs := src.Arms(ctx, arm, sel, window, at, every, history+1)
				now := rs[len(rs)-1]
				if len(now.Queries) > 0 && allFailed(now.Arm, func(s string) bool { return strings.Contains(s, "bad_data") && strings.Contains(s, "parse error") }) {
					return nil, fmt.Errorf("--%s %q: every query fails to parse: a bad selector or queries file (%s)", arm, sel, firstNote(now))
				}
				for _, n := range now.Notes {
					fmt.Fprintf(stderr, "chaosgate windows: %s: %s\n", arm, n)
				}
				bad := 0
				for _, r := range rs[:len(rs)-1] {
					if len(r.Notes) > 0 {
						bad++
					}
				}
				if bad > 0 {
					fmt.Fprintf(stderr, "chaosgate windows: %s: %d of %d history windows lack some data (first: %s)\n", arm, bad, history, firstHistoryNote(rs))
				}
				return rs, nil
			}
			cs, err := collect("canary", canary)
			if err != nil {
				return usage("%w", err)
			}
			ks, err := collect("control", control)
			if err != nil {
				return usage("%w", err)
			}
			in := decision.Input{At: at, Canary: cs[history].Arm, Control: ks[history].Arm}
			for i := 0; i < history; i++ {
				in.History = append(in.History, decision.HistoryWindow{At: cs[i].At, Canary: cs[i].Arm, Control: ks[i].Arm})
			}
			data, err := windows.Encode(in)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			data = append(data, '\n')
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(data)
			} else {
				err = os.WriteFile(output, data, 0o644)
			}
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("windows: writing %s: %w", output, err))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "prometheus", "", "Prometheus base URL, e.g. http://prometheus:9090")
	f.StringVar(&queriesPath, "queries", "", "queries file (queries/v1; default: the reference aggregator's)")
	f.StringVar(&canarySel, "canary", "", `the canary's label matchers, e.g. 'app="checkout",track="canary"'`)
	f.StringVar(&controlSel, "control", "", "the control's label matchers")
	f.DurationVar(&window, "window", 5*time.Minute, "the window each query covers, ending at --at")
	f.StringVar(&atText, "at", "", "end of the judged window, RFC 3339 (default: now)")
	f.IntVar(&history, "history", 0, "earlier A/A windows to add as baseline history (both arms ran the same build then)")
	f.DurationVar(&every, "history-every", 0, "spacing of the history windows before --at (default: --window)")
	f.StringVarP(&output, "output", "o", "", "write the windows/v1 JSON to this file (default: stdout)")
	return cmd
}

// selector trims an arm's label matchers and the braces around them.
func selector(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

// allFailed reports whether every value of the arm that failed did so
// with an error err matches, and at least one did.
func allFailed(a decision.ArmInput, match func(string) bool) bool {
	n := 0
	for _, v := range []decision.Value{a.Requests, a.Errors, a.LatencyP50, a.LatencyP99, a.LatencySamples, a.Sessions, a.SessionInterruptions,
		a.DependencyCalls, a.DependencyFailures, a.ConsistencyViolations, a.MemoryGrowthMBPerMin} {
		switch {
		case v.State == decision.QueryError && match(v.Err):
			n++
		case v.State != decision.Missing:
			return false
		}
	}
	return n > 0
}

func firstNote(r promql.ArmWindow) string {
	if len(r.Notes) == 0 {
		return ""
	}
	return r.Notes[0]
}

func firstHistoryNote(rs []promql.ArmWindow) string {
	for _, r := range rs[:len(rs)-1] {
		if len(r.Notes) > 0 {
			return r.At.UTC().Format(time.RFC3339) + " " + r.Notes[0]
		}
	}
	return ""
}
