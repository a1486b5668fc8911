package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the expected errors of testdata/bad/*.err")

func TestGoodFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no good fixtures")
	}
	for _, f := range files {
		cfg, err := LoadFile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !strings.HasPrefix(cfg.Hash, "sha256:") || cfg.Hash != cfg.ComputeHash() {
			t.Errorf("%s: hash %q", f, cfg.Hash)
		}
	}
}

// TestExampleIsTheDefaults keeps the documented example and Default() in step.
func TestExampleIsTheDefaults(t *testing.T) {
	cfg, err := LoadFile("../decision.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hash != decision.Default().Hash {
		t.Fatalf("decision.example.yaml (%s) differs from decision.Default() (%s)", cfg.Hash, decision.Default().Hash)
	}
}

func TestOverrides(t *testing.T) {
	cfg, err := LoadFile("testdata/good/override.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lat, _ := cfg.Dimension(decision.LatencyP99)
	mem, _ := cfg.Dimension(decision.MemoryGrowth)
	er, _ := cfg.Dimension(decision.ErrorRate)
	if lat.Weight != 5 || lat.MinEffect != 0.2 || mem.Enabled || er.Weight != 3 || er.Exposure != "" || len(cfg.Rules) != 0 ||
		cfg.Score.Promote != 0.95 || cfg.Hold.EscalateTo != decision.Hold {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
}

// TestBadFixtures checks every bad fixture against its expected error
// (testdata/bad/NAME.err, rewritten with -update).
func TestBadFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d bad fixtures", len(files))
	}
	for _, f := range files {
		_, err := LoadFile(f)
		if err == nil {
			t.Errorf("%s: accepted", f)
			continue
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 || es[0].Line == 0 {
			t.Errorf("%s: error without a position: %v", f, err)
		}
		got := []byte(err.Error() + "\n")
		want := strings.TrimSuffix(f, ".yaml") + ".err"
		if *update {
			if err := os.WriteFile(want, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		exp, rerr := os.ReadFile(want)
		if rerr != nil {
			t.Errorf("%s: %v (run with -update)", f, rerr)
			continue
		}
		if !bytes.Equal(got, exp) {
			t.Errorf("%s:\n got: %s want: %s", f, got, exp)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\ndimensions: {error_rate: {min_effect: 5}}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\nalpha: &a 0.1\nscore: {promote: *a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(data, "fuzz.yaml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error of the wrong type: %T %v", err, err)
			}
			for _, e := range es {
				if e.Kind == 0 || e.Msg == "" || !strings.HasPrefix(e.Error(), "fuzz.yaml") {
					t.Fatalf("bad error %+v", e)
				}
			}
			return
		}
		if cfg.Hash != cfg.ComputeHash() || cfg.Score.Block > cfg.Score.Promote {
			t.Fatalf("accepted an inconsistent config: %+v", cfg)
		}
		// Every accepted config must judge without panicking.
		_ = decision.Evaluate(cfg, decision.Input{})
	})
}
