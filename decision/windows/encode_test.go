package windows

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// TestEncodeRoundTrips: what Encode writes, Decode reads back — present
// values, NaN, query errors with their text, missing left out, history and
// contexts.
func TestEncodeRoundTrips(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	canary := decision.ArmInput{
		Requests: decision.Num(6000), Errors: decision.Num(6), LatencyP50: decision.Num(20.5), LatencyP99: decision.Value{State: decision.NaN},
		LatencySamples: decision.Num(5000), GCPausesMS: decision.Series([]float64{0.5, 1, 50}), WindowS: decision.Num(60),
		Sessions:             decision.Value{State: decision.QueryError, Err: `sessions: bad_data: parse error; query: sum(x{arm="canary"})`},
		DependencyCalls:      decision.Num(100),
		MemoryGrowthMBPerMin: decision.Num(-0.25), CollectedAt: at.Add(-time.Second),
	}
	control := decision.ArmInput{Requests: decision.Num(6000), Errors: decision.Num(0), LatencyMS: decision.Series([]float64{1, 2}),
		MemoryGrowthMBPerMin: decision.Value{State: decision.Missing, Err: "no data"}, GCPausesMS: decision.Samples{State: decision.Missing, Err: "gc: no series"},
		LatencyP50: decision.Value{State: decision.QueryError, Err: "p50 failed"}, LatencyP99: decision.Value{State: decision.QueryError, Err: "p50 failed"},
		DependencyCalls: decision.Value{State: decision.QueryError, Err: "deps failed"}}
	in := decision.Input{At: at, Canary: canary, Control: control, Context: decision.NewContext(0.5, "partition"),
		History: []decision.HistoryWindow{{At: at.Add(-time.Hour), Canary: control, Control: control, Context: decision.NewContext(0)}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(in)): %v\n%s", err, b)
	}
	// NaN values carry no text in windows/v1.
	in.Canary.LatencyP99.Err = ""
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v\n%s", got, in, b)
	}
}

// TestNoDataIsMissingNotAbsent: a field a source queried and got nothing
// for reads back missing with its reason, and a no_data entry for a field
// that has a value is refused.
func TestNoDataIsMissingNotAbsent(t *testing.T) {
	in, err := Decode([]byte(`{"at":"2026-11-22T10:00:00Z","canary":{"no_data":{"errors":"errors: no series; query: q"}},"control":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v := in.Canary.Errors; v.State != decision.Missing || v.Err != "errors: no series; query: q" {
		t.Fatalf("errors = %+v", v)
	}
	_, err = Decode([]byte(`{"at":"2026-11-22T10:00:00Z","canary":{"errors":1,"no_data":{"errors":"x"}},"control":{}}`))
	if err == nil || !strings.Contains(err.Error(), "$.canary.no_data.errors: the field also has a value") {
		t.Fatalf("error %v", err)
	}
}
