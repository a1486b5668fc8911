package bench

import (
	"os"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBenchSmoke(t *testing.T) {
	opt := CorpusOptions{Seed: 42, Services: 40, Good: 1000, BadPerKind: 80, Faults: 320}
	if testing.Short() {
		opt = CorpusOptions{Seed: 42, Services: 8, Good: 60, BadPerKind: 6, Faults: 24}
	}
	c := Generate(opt)
	rep := Run(c, []Judge{NewChaosgate(decision.Default(), c), NewFlagger(), NewArgo(), NewKayenta()})
	WriteTable(os.Stdout, rep)
}
