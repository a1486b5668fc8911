package gameday

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/chaosgate/chaosgate/engine/report"
)

func TestFaultsBlobCarriesRecoveryPerFault(t *testing.T) {
	applied := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	removed := applied.Add(2300 * time.Millisecond)
	rec := 1.2
	rep := report.Report{Faults: []report.Fault{
		{Kind: "podKill", Arm: "canary", Target: "n2", AppliedAt: applied, RecoveredAt: &removed, Confirmed: "confirmed",
			Availability: &report.FaultAvailability{Requests: 100, Timeouts: 3, RecoveryS: &rec}},
		{Kind: "podKill", Arm: "calibration", Target: "n2", AppliedAt: applied, Confirmed: "inconclusive"},
	}}
	rep.Resilience = report.ResilienceOf(rep.Faults)
	b, err := FaultsBlobOf(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got FaultsBlob
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Faults) != 2 || len(got.Resilience) == 0 {
		t.Fatalf("faults.json: %s", b)
	}
	f := got.Faults[0]
	if !f.Applied || !f.Recovered || f.RecoveryS == nil || *f.RecoveryS != 1.2 || f.DurationS == nil || *f.DurationS != 2.3 || f.Availability.Timeouts != 3 {
		t.Fatalf("canary fault: %+v", f)
	}
	// Not removed and without measured load: said so, never a zero.
	if g := got.Faults[1]; g.Recovered || g.RecoveryS != nil || g.DurationS != nil || g.Confirmed != "inconclusive" {
		t.Fatalf("calibration fault: %+v", g)
	}
}

func TestThinKeepsFirstLastAndBound(t *testing.T) {
	for _, n := range []int{0, 1, 5, 600, 601, 5000} {
		xs := make([]int, n)
		for i := range xs {
			xs[i] = i
		}
		got := thin(xs, 600)
		if len(got) != min(n, 600) {
			t.Fatalf("n=%d: kept %d", n, len(got))
		}
		if n > 0 && (got[0] != 0 || got[len(got)-1] != n-1) {
			t.Fatalf("n=%d: kept %d..%d", n, got[0], got[len(got)-1])
		}
	}
}

// windows.json keeps the newest history windows when there are more than
// its cap, says how many there were, and each window stays windows/v1.
func TestWindowsBlobCapsHistory(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	arm := decision.ArmInput{Requests: decision.Num(1000), Errors: decision.Num(1), LatencyP50: decision.Num(3), LatencyP99: decision.Num(math.Pi)}
	in := decision.Input{At: at, Canary: arm, Control: arm}
	for i := 0; i < MaxHistoryWindows+5; i++ {
		in.History = append(in.History, decision.HistoryWindow{At: at.Add(-time.Duration(i+1) * time.Minute), Canary: arm, Control: arm})
	}
	r := &Run{runID: "r1", judged: []judgedWindow{{Weight: 50, Input: in}}}
	b, err := r.windowsBlob()
	if err != nil {
		t.Fatal(err)
	}
	var wb WindowsBlob
	if err := json.Unmarshal(b, &wb); err != nil || len(wb.Steps) != 1 {
		t.Fatalf("%v %s", err, b)
	}
	st := wb.Steps[0]
	if st.HistoryTotal != MaxHistoryWindows+5 || st.HistoryKept != MaxHistoryWindows || st.Window != 1 || st.Weight != 50 {
		t.Fatalf("step %+v", st)
	}
	got, err := windows.Decode(st.Input)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.History) != MaxHistoryWindows {
		t.Fatalf("%d history windows", len(got.History))
	}
	oldest := got.History[0].At
	for _, h := range got.History {
		if h.At.Before(oldest) {
			oldest = h.At
		}
	}
	if want := at.Add(-MaxHistoryWindows * time.Minute); !oldest.Equal(want) {
		t.Fatalf("oldest kept window %s, want %s (the newest are kept)", oldest, want)
	}
}
