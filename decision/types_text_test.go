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
