package decision

import (
	"testing"
	"time"
)

// TestQueriedButEmptyNeverReadsNotCollected: a field a source queried and
// got no data for (missing with a reason) is missing data — the verdict
// holds — while the same field never asked for is "not collected".
func TestQueriedButEmptyNeverReadsNotCollected(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	arm := func(reason string) ArmInput {
		return ArmInput{Requests: Value{State: Missing, Err: reason}, Errors: Value{State: Missing, Err: reason},
			MemoryGrowthMBPerMin: Num(0)}
	}
	for reason, want := range map[string]DataState{"": DataNotCollected, "requests: no series (no data); query: sum(x)": DataMissing} {
		v := Evaluate(Default(), Input{At: at, Canary: arm(reason), Control: arm(reason)})
		for _, d := range v.Dimensions {
			if d.Name == ErrorRate && d.Data != want {
				t.Errorf("reason %q: error_rate data %s, want %s", reason, d.Data, want)
			}
		}
		if reason != "" && v.Decision == Promote {
			t.Errorf("queried but empty promoted: %s", v.Reason)
		}
	}
}
