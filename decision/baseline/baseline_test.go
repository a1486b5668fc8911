package baseline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func window(at time.Time, p99 float64) decision.HistoryWindow {
	arm := decision.ArmInput{Requests: decision.Num(1000), Errors: decision.Num(2), LatencyMS: decision.Series([]float64{1, 2, 3, p99}),
		GCPausesMS: decision.Series([]float64{0.5}), WindowS: decision.Num(60)}
	w := decision.HistoryWindow{At: at, Canary: arm, Control: arm}
	if at.Hour()%2 == 0 {
		w.Context = decision.NewContext(0.5, "partition", "networkDelay")
	}
	return w
}

func TestRecordHistoryBucketsAndRetention(t *testing.T) {
	clock := &fixedClock{t: t0}
	path := filepath.Join(t.TempDir(), "baseline.db")
	s, err := Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	// 9 days of hourly A/A windows for two services.
	for h := 9 * 24; h >= 1; h-- {
		at := t0.Add(-time.Duration(h) * time.Hour)
		clock.t = at
		for _, svc := range []string{"checkout", "search"} {
			if err := s.Record(svc, window(at, 100+float64(h))); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.t = t0
	h, err := s.History("checkout", t0, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 7*24-1 {
		// Windows at exactly t0−7d are outside (at−window, at].
		t.Fatalf("history has %d windows, want %d", len(h), 7*24-1)
	}
	for i := 1; i < len(h); i++ {
		if !h[i].At.After(h[i-1].At) {
			t.Fatal("history not oldest first")
		}
	}
	w := h[len(h)-1]
	if !w.Canary.LatencyP99.OK() || w.Canary.LatencyP99.V != 101 || w.Canary.Requests.V != 1000 || !w.Control.GCPausesMS.OK() {
		t.Fatalf("round trip lost data: %+v", w.Canary)
	}
	if w.Canary.Sessions.State != decision.Missing {
		t.Fatal("a field never recorded must come back missing")
	}
	// The window's context round-trips: faulted windows keep their faults
	// and intensity, the others come back without a context.
	for _, x := range h {
		want := window(x.At, 0).Context
		if (want == nil) != (x.Context == nil) || (want != nil && (x.Context.String() != want.String() || x.Context.String() != "networkDelay+partition@0.5")) {
			t.Fatalf("window at %s: context %v, want %v", x.At, x.Context, want)
		}
	}
	b, err := s.Bucket("checkout", t0, 7*24*time.Hour, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range b {
		if d := todDistance(x.At, t0); d > time.Hour {
			t.Fatalf("window at %s is %s away in time of day", x.At, d)
		}
	}
	if len(b) < 7*3-1 || len(b) > 7*3 {
		t.Fatalf("bucket has %d windows", len(b))
	}
	// Retention: recording pruned what was older than 7 days at the time.
	clock.t = t0.Add(24 * time.Hour)
	n, err := s.Prune()
	if err != nil || n == 0 {
		t.Fatalf("prune removed %d: %v", n, err)
	}
	all, _ := s.History("checkout", t0, 30*24*time.Hour)
	for _, x := range all {
		if clock.t.Sub(x.At) > DefaultRetention {
			t.Fatalf("window at %s survived retention", x.At)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the data is on disk.
	s, err = Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	again, _ := s.History("search", t0, 7*24*time.Hour)
	if len(again) == 0 {
		t.Fatal("nothing after reopening")
	}
	if err := s.Record("", window(t0, 1)); err == nil {
		t.Fatal("recorded a window without a service")
	}
	// The history feeds the judge.
	in := decision.Input{At: t0, Canary: again[0].Canary, Control: again[0].Control, History: again}
	v := decision.Evaluate(decision.Default(), in)
	if d, _ := v.Dimension(decision.LatencyP99); d.SigmaSource == "" || d.Data != "ok" {
		t.Fatalf("history not used: %+v", d)
	}
}
