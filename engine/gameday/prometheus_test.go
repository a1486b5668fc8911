package gameday

import (
	"testing"

	"github.com/chaosgate/chaosgate/decision"
)

// TestPromSpansNeverSumToZero: a span PromQL left without data makes the
// arm's count or pause list not present, keeping the worst state and its
// explanation — never a sum that reads as fewer requests or no pauses.
func TestPromSpansNeverSumToZero(t *testing.T) {
	miss := decision.Value{State: decision.Missing, Err: "requests: no series"}
	nan := decision.Value{State: decision.NaN, Err: "requests: NaN"}
	qe := decision.Value{State: decision.QueryError, Err: "requests: bad_data"}
	for name, tc := range map[string]struct {
		in   []decision.Value
		want decision.Value
	}{
		"all present":         {[]decision.Value{decision.Num(3), decision.Num(4)}, decision.Num(7)},
		"one missing":         {[]decision.Value{decision.Num(3), miss}, miss},
		"nan over missing":    {[]decision.Value{miss, nan, decision.Num(1)}, nan},
		"error over the rest": {[]decision.Value{nan, qe, miss}, qe},
		"no span":             {nil, decision.Value{}},
	} {
		if got := sumValues(tc.in); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", name, got, tc.want)
		}
	}
	parts := []decision.ArmInput{{GCPausesMS: decision.Series([]float64{2, 1})}, {GCPausesMS: decision.Samples{State: decision.QueryError, Err: "gc: timeout"}}}
	if got := joinSamples(parts); got.State != decision.QueryError || got.Err != "gc: timeout" || len(got.V) != 0 {
		t.Errorf("pauses with a failed span: %+v", got)
	}
	parts[1].GCPausesMS = decision.Series([]float64{0.5})
	if got := joinSamples(parts); got.State != decision.Present || len(got.V) != 3 || got.V[0] != 0.5 {
		t.Errorf("pauses of two spans: %+v", got)
	}
}
