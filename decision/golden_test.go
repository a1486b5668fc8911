package decision_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/windows"
)

var update = flag.Bool("update", false, "rewrite the golden explanations under testdata/")

// TestGoldenExplanations judges every testdata/judge/*.json input with the
// defaults and compares the full explanation with its .golden file.
func TestGoldenExplanations(t *testing.T) {
	want := map[string]decision.Decision{
		"good":                  decision.Promote,
		"error-regression":      decision.Block,
		"latency-retries":       decision.Block,
		"consistency":           decision.Block,
		"missing-latency":       decision.Hold,
		"query-error-nan-stale": decision.Hold,
		"system-breach":         decision.Promote,
		"traffic-collapse":      decision.Hold,
		"gc-churn":              decision.Block, // pauses over 120 ms, control clean: an SLO breach
		"fault-exposure":        decision.Hold,  // errors explained by exposure; dependency failures still lean worse
		"tail-only":             decision.Block, // p99 ×1.25, median unchanged, tight 28-window history
		"not-collected":         decision.Promote,
		"context":               decision.Promote, // p99 +30% under a partition whose A/A tails wander
	}
	files, err := filepath.Glob("testdata/judge/*.json")
	if err != nil || len(files) != len(want) {
		t.Fatalf("inputs: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, err := windows.Decode(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			v := decision.Evaluate(decision.Default(), in)
			if v.Decision != want[name] {
				t.Errorf("verdict %s, want %s: %s", v.Decision, want[name], v.Reason)
			}
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("explanation differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}
