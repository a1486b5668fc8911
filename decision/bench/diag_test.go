package bench

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
)

func TestDiag(t *testing.T) {
	want := os.Getenv("DIAG")
	if want == "" {
		t.Skip("set DIAG=good or DIAG=<label substring>")
	}
	opt := CorpusOptions{Seed: 42, Services: 40, Good: 400, BadPerKind: 40, Faults: 320}
	if os.Getenv("DIAGFULL") != "" {
		opt = CorpusOptions{Seed: 42, Services: 40, Good: 1000, BadPerKind: 80, Faults: 320}
	}
	c := Generate(opt)
	j := NewChaosgate(decision.Default(), c)
	counts := map[string]int{}
	for _, rel := range c.Releases {
		if !strings.Contains(rel.Label, want) {
			continue
		}
		if os.Getenv("DIAGRPS") != "" && rel.CanaryRPS < 100 {
			continue
		}
		res := j.Run(rel)
		if (res.Outcome == decision.Promote) == !rel.Bad && res.Outcome != decision.Hold && (res.Look <= 3 || !rel.Bad) {
			continue
		}
		v := decision.Evaluate(j.Config, j.Input(rel, res.Look))
		key := fmt.Sprintf("%s %s@%d %s", bucket(rel.CanaryRPS), res.Outcome, res.Look, v.HoldCause)
		for _, d := range v.Dimensions {
			if d.Outcome != decision.Pass || d.Name == decision.ErrorRate || d.Name == decision.LatencyP99 {
				key += fmt.Sprintf(" %s:%s:%s(z=%.1f,k=%.1f,c=%.2f)", d.Name, d.Outcome, d.Rule, d.Z, d.K, d.Confidence)
				if os.Getenv("DIAGV") != "" && d.Name == decision.LatencyP99 {
					key += fmt.Sprintf("\n     %s | %s | sigma=%.3f", d.Query, d.SigmaSource, d.Sigma)
				}
			}
		}
		counts[key]++
	}
	var ks []string
	for k := range counts {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(a, b int) bool { return ks[a] < ks[b] })
	for _, k := range ks {
		fmt.Println(counts[k], k)
	}
}
