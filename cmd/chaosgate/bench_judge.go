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

// benchCorpusResult is one corpus's figures in `bench judge -o json`.
type benchCorpusResult struct {
	bench.Report
	Goals    []bench.Goal           `json:"goals"`
	Tradeoff []bench.OperatingPoint `json:"chaosgate_tradeoff"`
	ElapsedS float64                `json:"elapsed_s"`
}

// newBenchJudgeCmd is `chaosgate bench judge`: the canary judge against
// Flagger-, Argo- and Kayenta-style judges on two seeded corpora made by
// different models: the one the defaults were tuned on, and an independent
// one that was never used for tuning.
func newBenchJudgeCmd() *cobra.Command {
	var seed uint64
	var services, good, badPerKind, faults int
	var cfgPath, output, corpus string
	cmd := &cobra.Command{
		Use:   "judge [--corpus tuning|independent|both] [--seed N] [-c decision.yaml] [-o table|json]",
		Short: "Judge seeded corpora of good, bad and faulty-data canaries with chaosgate and three baseline judges",
		Long: `judge generates seeded corpora of canary releases and judges every release with the chaosgate
judge and with Flagger-style, Argo-style and Kayenta-style judges side by side.

Two generators with different models make the corpora:
  tuning       the corpus the defaults were tuned on: log-normal latency, hourly A/A history
               (7 days, or 12–72 hours for a third of the services) under random chaos,
               canary weight 1–20 %, 1–1000 rps;
  independent  held out, never used for tuning: a log-logistic fast path plus a slow path,
               per-service A/A spreads from 0.5 % to 30 %, 28 A/A windows over 7 days for
               most services (some thin), faults with contexts in history and in the judged
               windows, canary weights from 1 % to 50 %, sources that omit memory, GC,
               sessions or dependency calls or give latency as quantiles only, and tail-only
               p99 regressions.
Both hold good releases, canary-only regressions of several classes and sizes, and good
releases with data faults (gaps, NaN, stale, empty). It reports per corpus and judge the
false-positive rate, detection by effect, class and traffic, hold rate, intervals to a correct
verdict and a NAB-style score (false positive 0.11, false negative 1.0), and checks the
chaosgate judge's goals on each corpus.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("bench judge: -o %q: want table, json or yaml", output))
			}
			type gen struct {
				name string
				opt  bench.CorpusOptions
				make func(bench.CorpusOptions) *bench.Corpus
			}
			var gens []gen
			switch corpus {
			case "tuning", "independent", "both":
			default:
				return withExitCode(exitUsage, fmt.Errorf("bench judge: --corpus %q: want tuning, independent or both", corpus))
			}
			if corpus != "independent" {
				gens = append(gens, gen{"tuning", bench.DefaultCorpus, bench.Generate})
			}
			if corpus != "tuning" {
				gens = append(gens, gen{"independent", bench.DefaultIndependentCorpus, bench.GenerateIndependent})
			}
			f := cmd.Flags()
			for i := range gens {
				o := &gens[i].opt
				if f.Changed("seed") {
					o.Seed = seed
				}
				if f.Changed("services") {
					o.Services = services
				}
				if f.Changed("good") {
					o.Good = good
				}
				if f.Changed("bad-per-kind") {
					o.BadPerKind = badPerKind
				}
				if f.Changed("faults") {
					o.Faults = faults
				}
			}
			cfg := decision.Default()
			if cfgPath != "" {
				c, err := config.LoadFile(cfgPath)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("bench judge: config:\n%w", err))
				}
				cfg = c
			}
			out := cmd.OutOrStdout()
			var results []benchCorpusResult
			for _, g := range gens {
				start := time.Now()
				c := g.make(g.opt)
				// The trade-off sweep (the chaosgate judge at other alphas)
				// runs beside the four judges.
				var alphas []float64
				for _, a := range bench.TradeoffAlphas {
					if a != cfg.Alpha {
						alphas = append(alphas, a)
					}
				}
				swept := make(chan []bench.OperatingPoint, 1)
				go func() { swept <- bench.Tradeoff(c, cfg, alphas) }()
				rep := bench.Run(c, []bench.Judge{bench.NewChaosgate(cfg, c), bench.NewFlagger(), bench.NewArgo(), bench.NewKayenta()})
				tradeoff := append([]bench.OperatingPoint{bench.PointOf(cfg.Alpha, rep.Judges[0])}, <-swept...)
				res := benchCorpusResult{Report: rep, Goals: bench.Goals(rep), Tradeoff: tradeoff, ElapsedS: time.Since(start).Seconds()}
				results = append(results, res)
				if output == "table" {
					bench.WriteTable(out, rep)
					bench.WriteTradeoff(out, rep, tradeoff)
					bench.WriteGoals(out, res.Goals)
					fmt.Fprintf(out, "\n%s corpus generated and judged in %s\n\n", g.name, time.Since(start).Round(time.Millisecond))
				}
			}
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Corpora   []benchCorpusResult `json:"corpora"`
					ConfigSHA string              `json:"config_hash"`
				}{results, cfg.Hash})
			}
			fmt.Fprintf(out, "config %s\n", cfg.Hash)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&corpus, "corpus", "both", "which corpora: tuning (the defaults were tuned on it), independent (never tuned on) or both")
	f.Uint64Var(&seed, "seed", 1, "corpus seed (the defaults were tuned on the tuning corpus, seeds 1–3)")
	f.IntVar(&services, "services", 0, "services per corpus, each with its A/A history (default: the corpus's own size)")
	f.IntVar(&good, "good", 0, "good releases per corpus (default: the corpus's own size)")
	f.IntVar(&badPerKind, "bad-per-kind", 0, "bad releases per regression kind and size (default: the corpus's own size)")
	f.IntVar(&faults, "faults", 0, "good releases with a data fault (default: the corpus's own size)")
	f.StringVarP(&cfgPath, "config", "c", "", "decision.yaml for the chaosgate judge (default: built-in defaults)")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}
