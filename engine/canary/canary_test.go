package canary

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func arm(n, p, p99 float64) decision.ArmInput {
	return decision.ArmInput{
		Requests: decision.Num(n), Errors: decision.Num(math.Round(n * p)),
		LatencyP50: decision.Num(p99 / 8), LatencyP99: decision.Num(p99),
		GCPausesMS: decision.Series([]float64{0.5}), WindowS: decision.Num(60),
		Sessions: decision.Num(n / 10), SessionInterruptions: decision.Num(0),
		DependencyCalls: decision.Num(n), DependencyFailures: decision.Num(0),
		ConsistencyViolations: decision.Num(0), MemoryGrowthMBPerMin: decision.Num(0),
	}
}

func good(w Window) decision.Input {
	return decision.Input{At: t0.Add(time.Duration(w.Step*10+w.Extension) * time.Minute), Canary: arm(5000, 0.001, 100), Control: arm(50000, 0.001, 100)}
}

func TestPromotesThroughEveryStep(t *testing.T) {
	var weights []int
	c := &Controller{
		Observe:   func(_ context.Context, w Window) (decision.Input, error) { return good(w), nil },
		SetWeight: func(_ context.Context, w int) error { weights = append(weights, w); return nil },
	}
	res, err := c.Run(context.Background())
	if err != nil || res.Decision != decision.Promote || len(res.Steps) != 5 || res.RolledBack {
		t.Fatalf("%+v %v", res, err)
	}
	if len(weights) != 5 || weights[0] != 5 || weights[4] != 100 {
		t.Fatalf("weights %v", weights)
	}
	if rs := res.ReportSteps(); len(rs) != 5 || rs[2].Weight != 25 || rs[2].Verdict != "promote" || len(rs[2].Dimensions) == 0 {
		t.Fatalf("report steps %+v", rs)
	}
}

func TestBlockRollsBack(t *testing.T) {
	rolledBack := false
	c := &Controller{
		Observe: func(_ context.Context, w Window) (decision.Input, error) {
			in := good(w)
			if w.Weight == 25 {
				in.Canary.ConsistencyViolations = decision.Num(1)
			}
			return in, nil
		},
		Rollback: func(context.Context) error { rolledBack = true; return nil },
	}
	res, err := c.Run(context.Background())
	if err != nil || res.Decision != decision.Block || !rolledBack || len(res.Steps) != 3 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestHoldExtendsThenEscalates(t *testing.T) {
	var windows []Window
	c := &Controller{Observe: func(_ context.Context, w Window) (decision.Input, error) {
		windows = append(windows, w)
		in := good(w)
		if w.Weight == 10 {
			// Memory growth just over k (z 3.5 < √2·k), weight 1: a
			// failure too light to block, so HOLD.
			in.Canary.MemoryGrowthMBPerMin = decision.Num(1.75)
		}
		return in, nil
	}}
	res, err := c.Run(context.Background())
	if err != nil || res.Decision != decision.Block || res.Steps[1].Windows != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	if n := len(windows); n != 4 || windows[3].Extension != 2 {
		t.Fatalf("windows %+v", windows)
	}
	// The same hold escalates only to hold when the config says so.
	cfg := decision.Default()
	cfg.Hold.EscalateTo = decision.Hold
	c.Config = func() *decision.Config { return cfg }
	res, err = c.Run(context.Background())
	if err != nil || res.Decision != decision.Hold || res.RolledBack {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestRepeatedFailureEscalatesWithoutWaiting: a memory-growth failure
// just over k is held (not decisive), but when the next window shows it
// again with more evidence the gate blocks at once instead of extending
// the window to its limit.
func TestRepeatedFailureEscalatesWithoutWaiting(t *testing.T) {
	var windows []Window
	c := &Controller{Observe: func(_ context.Context, w Window) (decision.Input, error) {
		windows = append(windows, w)
		in := good(w)
		if w.Weight == 10 {
			in.Canary.MemoryGrowthMBPerMin = decision.Num(1.6 + 0.2*float64(w.Extension)) // z 3.2, 3.6, 4.0
		}
		return in, nil
	}}
	res, err := c.Run(context.Background())
	if err != nil || res.Decision != decision.Block || !res.RolledBack || len(res.Steps) != 2 || res.Steps[1].Windows != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if first := res.Steps[1].Verdict; first.Decision != decision.Hold || first.HoldCause != decision.CauseScore {
		t.Fatalf("the escalated verdict: %s (%s)", first.Decision, first.Reason)
	}
	if n := len(windows); n != 3 || windows[2].Extension != 1 {
		t.Fatalf("windows %+v", windows)
	}
	// Without escalate_repeated the same canary waits out both extensions.
	cfg := decision.Default()
	cfg.Hold.EscalateRepeated = false
	c.Config = func() *decision.Config { return cfg }
	windows = nil
	res, err = c.Run(context.Background())
	if err != nil || res.Decision != decision.Block || res.Steps[1].Windows != 3 {
		t.Fatalf("escalate_repeated off: %+v %v", res, err)
	}
}

func TestMissingDataHoldsNeverBlocks(t *testing.T) {
	c := &Controller{Observe: func(_ context.Context, w Window) (decision.Input, error) {
		in := good(w)
		in.Canary.LatencyP99 = decision.Value{}
		return in, nil
	}}
	res, err := c.Run(context.Background())
	if err != nil || res.Decision != decision.Hold || res.RolledBack || res.Steps[0].Windows != 3 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestObserveErrorIsNotAVerdict(t *testing.T) {
	boom := errors.New("prometheus unreachable")
	c := &Controller{Observe: func(context.Context, Window) (decision.Input, error) { return decision.Input{}, boom }}
	_, err := c.Run(context.Background())
	if !errors.Is(err, ErrObserve) || !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
}

func TestConfigReadEveryWindow(t *testing.T) {
	var calls atomic.Int32
	cfg2 := decision.Default()
	cfg2.Dimensions[0].Weight = 9
	cfg2.Hash = cfg2.ComputeHash()
	c := &Controller{
		Observe: func(_ context.Context, w Window) (decision.Input, error) { return good(w), nil },
		Config: func() *decision.Config {
			if calls.Add(1) > 2 {
				return cfg2
			}
			return decision.Default()
		},
	}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps[0].Verdict.ConfigHash != decision.Default().Hash || res.Steps[4].Verdict.ConfigHash != cfg2.Hash {
		t.Fatal("a reloaded config did not apply to the next window")
	}
}
