package decision

import (
	"encoding/json"
	"testing"
)

func TestDecisionAndOutcomeRoundTripThroughJSON(t *testing.T) {
	type rec struct {
		D Decision `json:"d"`
		O Outcome  `json:"o"`
	}
	for _, in := range []rec{{Promote, Pass}, {Hold, Inconclusive}, {Block, Fail}} {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out rec
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if out != in {
			t.Fatalf("%s decoded as %+v", b, out)
		}
	}
	var r rec
	if err := json.Unmarshal([]byte(`{"d":"maybe"}`), &r); err == nil {
		t.Fatal("an unknown decision name decoded without error")
	}
}

// TestDecisionExitCodes: the one mapping from verdict to exit code
// (docs/exit-codes.md); no decision is "could not judge".
func TestDecisionExitCodes(t *testing.T) {
	for d, want := range map[Decision]int{Promote: 0, Block: 1, Hold: 3, 0: 2} {
		if got := d.ExitCode(); got != want {
			t.Errorf("%v.ExitCode() = %d, want %d", d, got, want)
		}
	}
}
