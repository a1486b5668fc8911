package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/spf13/cobra"
)

// newDecideCmd is `chaosgate decide`: the offline judge over recorded
// windows/v1 canary and control windows.
func newDecideCmd() *cobra.Command {
	var input, cfgPath, output, consulTokenFile string
	cmd := &cobra.Command{
		Use:   "decide --input FILE [-c decision.yaml] [-o table|json]",
		Short: "Judge recorded canary/control windows offline and explain the verdict",
		Long: `decide reads canary and control windows with their baseline history (windows/v1),
judges them with the decision matrix (decision.yaml, or the defaults) and prints the
verdict with the explanation of every dimension. Exit codes: 0 promote, 3 hold, 1 block,
2 malformed input or config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return withExitCode(exitUsage, fmt.Errorf("decide: --input is required (a windows/v1 JSON file, or - for stdin)"))
			}
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("decide: -o %q: want table, json or yaml", output))
			}
			cfg := decision.Default()
			if cfgPath != "" {
				src, err := config.ParseSource(cfgPath)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("decide: -c: %w", err))
				}
				src.ConsulTokenFile = consulTokenFile
				ctx := cmd.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				c, err := config.LoadSource(ctx, src)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("decide: config:\n%w", err))
				}
				cfg = c
			}
			var data []byte
			var err error
			if input == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(input)
			}
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("decide: reading input: %w", err))
			}
			in, err := windows.Decode(data)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("decide: %s: %w", input, err))
			}
			v := decision.Evaluate(cfg, in)
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return withExitCode(exitUsage, err)
				}
			} else {
				writeVerdictTable(out, v)
			}
			return verdictExit(v.Decision)
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "windows/v1 JSON file (- for stdin)")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "decision matrix: decision.yaml or consul://HOST:PORT/KEY (default: built-in defaults)")
	cmd.Flags().StringVar(&consulTokenFile, "consul-token-file", "", "file holding the Consul ACL token for a consul:// -c (default: CONSUL_HTTP_TOKEN)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// verdictExit maps a decision to the process exit code (nil for promote).
func verdictExit(d decision.Decision) error {
	switch code := d.ExitCode(); code {
	case decision.ExitPromote:
		return nil
	case decision.ExitNoVerdict:
		return withExitCode(code, fmt.Errorf("no verdict"))
	default:
		return withExitCode(code, nil)
	}
}

// writeVerdictTable prints a verdict for a person at a terminal.
func writeVerdictTable(w io.Writer, v decision.Verdict) {
	fmt.Fprintf(w, "VERDICT %s   score %.3f   coverage %.3f   config %s\n", strings.ToUpper(v.Decision.String()), v.Score, v.Coverage, v.ConfigHash)
	fmt.Fprintf(w, "reason: %s\n", v.Reason)
	if v.TrafficRatio != nil {
		fmt.Fprintf(w, "canary traffic share vs history: %.2f\n", *v.TrafficRatio)
	}
	for _, r := range v.Rules {
		fmt.Fprintf(w, "rule %s (%s): %s\n", r.Name, r.Action, r.Diagnosis)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIMENSION\tOUTCOME\tCANARY\tCONTROL\tEFFECT\tσ̂\tZ\tK\tCONF\tWEIGHT\tCONTRIB\tRULE")
	for _, d := range v.Dimensions {
		name := string(d.Name)
		if d.Critical {
			name += "*"
		}
		if d.Data != "ok" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t%.2f\t%g\t%.3f\t%s (%s)\n", name, strings.ToUpper(d.Outcome.String()), d.Confidence, d.Weight, d.Contribution, d.Rule, d.Data)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3g\t%.2f\t%.2f\t%.2f\t%g\t%.3f\t%s\n", name, strings.ToUpper(d.Outcome.String()),
			fmtUnit(d.Canary, d.Unit), fmtUnit(d.Control, d.Unit), fmtEffect(d), d.Sigma, d.Z, d.K, d.Confidence, d.Weight, d.Contribution, d.Rule)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(* critical)  explanation:")
	for _, d := range v.Dimensions {
		fmt.Fprintf(w, "  %s [%s, data %s, %s test]\n", d.Name, d.Outcome, d.Data, d.Test)
		fmt.Fprintf(w, "      %s\n", d.Reason)
		fmt.Fprintf(w, "      inputs: %s\n", d.Query)
		if d.SigmaSource != "" {
			fmt.Fprintf(w, "      σ̂ %.4g from %s\n", d.Sigma, d.SigmaSource)
		}
		for _, g := range d.Diagnosis {
			fmt.Fprintf(w, "      diagnosis: %s\n", g)
		}
	}
}

func fmtUnit(x float64, unit string) string {
	switch unit {
	case "ratio":
		return fmt.Sprintf("%.3f%%", 100*x)
	case "ms":
		return fmt.Sprintf("%.1fms", x)
	case "":
		return "-"
	}
	return fmt.Sprintf("%.3g", x)
}

func fmtEffect(d decision.DimensionResult) string {
	switch d.Unit {
	case "ratio":
		return fmt.Sprintf("%+.3fpp", 100*d.Effect)
	case "ms":
		return fmt.Sprintf("%+.1f%%", 100*d.Effect)
	}
	return fmt.Sprintf("%+.3g", d.Effect)
}
