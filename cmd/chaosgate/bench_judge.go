package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/bench"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/spf13/cobra"
)

// newBenchJudgeCmd is `chaosgate bench judge`: the canary judge against
// Flagger-, Argo- and Kayenta-style judges on one seeded corpus.
func newBenchJudgeCmd() *cobra.Command {
	opt := bench.DefaultCorpus
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "judge [--seed N] [-c decision.yaml] [-o table|json]",
		Short: "Judge a seeded corpus of good, bad and faulty-data canaries with chaosgate and three baseline judges",
		Long: `judge generates a seeded corpus of canary releases — good ones (A/A, both arms under the
same chaos, 1–1000 rps, canary weight 1–20%, all times of day), bad ones (error rate, p99,
GC pauses, session interruptions, consistency violations, latency variance, memory growth)
and good ones with data faults (gaps, NaN, stale, empty) — and judges every release with
the chaosgate judge and with Flagger-style, Argo-style and Kayenta-style judges side by side.
It reports false-positive rate, detection by effect and traffic, hold rate, intervals to a
correct verdict and a NAB-style score (false positive 0.11, false negative 1.0).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("bench judge: -o %q: want table or json", output))
			}
			cfg := decision.Default()
			if cfgPath != "" {
				c, err := config.LoadFile(cfgPath)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("bench judge: config:\n%w", err))
				}
				cfg = c
			}
			start := time.Now()
			corpus := bench.Generate(opt)
			// The trade-off sweep (the chaosgate judge at other alphas) runs
			// beside the four judges.
			var alphas []float64
			for _, a := range bench.TradeoffAlphas {
				if a != cfg.Alpha {
					alphas = append(alphas, a)
				}
			}
			swept := make(chan []bench.OperatingPoint, 1)
			go func() { swept <- bench.Tradeoff(corpus, cfg, alphas) }()
			rep := bench.Run(corpus, []bench.Judge{bench.NewChaosgate(cfg, corpus), bench.NewFlagger(), bench.NewArgo(), bench.NewKayenta()})
			tradeoff := append([]bench.OperatingPoint{bench.PointOf(cfg.Alpha, rep.Judges[0])}, <-swept...)
			goals := bench.Goals(rep)

			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					bench.Report
					Goals     []bench.Goal           `json:"goals"`
					Tradeoff  []bench.OperatingPoint `json:"chaosgate_tradeoff"`
					ElapsedS  float64                `json:"elapsed_s"`
					ConfigSHA string                 `json:"config_hash"`
				}{rep, goals, tradeoff, time.Since(start).Seconds(), cfg.Hash})
			}
			bench.WriteTable(out, rep)
			bench.WriteTradeoff(out, rep, tradeoff)
			bench.WriteGoals(out, goals)
			fmt.Fprintf(out, "\nconfig %s; generated and judged in %s\n", cfg.Hash, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&opt.Seed, "seed", opt.Seed, "corpus seed (the defaults were tuned on seeds 1–3; 4 and 5 are held out)")
	f.IntVar(&opt.Services, "services", opt.Services, "services in the corpus, each with 7 days of A/A history")
	f.IntVar(&opt.Good, "good", opt.Good, "good releases")
	f.IntVar(&opt.BadPerKind, "bad-per-kind", opt.BadPerKind, "bad releases per defect kind and size")
	f.IntVar(&opt.Faults, "faults", opt.Faults, "good releases with a data fault")
	f.StringVarP(&cfgPath, "config", "c", "", "decision.yaml for the chaosgate judge (default: built-in defaults)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
