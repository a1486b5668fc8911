package availability

import (
	"context"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

func binary(t *testing.T) string {
	t.Helper()
	bin, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestShareIsCappedAndWeightsValidated(t *testing.T) {
	p, err := New(Config{Generators: map[engine.Arm]*load.Generator{engine.ArmCanary: nil, engine.ArmControl: nil}})
	if err != nil {
		t.Fatal(err)
	}
	for w, want := range map[int]float64{0: 0, 5: 0.05, 50: 0.5, 100: 0.5} {
		if got := p.Share(w); math.Abs(got-want) > 1e-9 {
			t.Errorf("share(%d) = %g, want %g", w, got, want)
		}
	}
	if err := p.SetWeight(context.Background(), 101); err == nil || engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("weight 101: %v", err)
	}
	if _, err := p.Observe(context.Background(), engine.Window{Start: time.Now(), End: time.Now()}); err == nil {
		t.Fatal("observing a window without load must be an error")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("no generators must be an error")
	}
}

func TestLoadSplitsByWeightPerArm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two aggregator clusters")
	}
	ctx := context.Background()
	a, err := arms.Start(ctx, arms.Config{Binary: binary(t), Dir: t.TempDir(), Nodes: 1, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	gens := map[engine.Arm]*load.Generator{}
	for i, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		g, err := load.New(ctx, load.Config{Targets: load.StaticTargets(a.ClientAddrs(arm)...), Partitions: 2, Sources: 2, Name: arm.String(), IDNode: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		gens[arm] = g
	}
	p, err := New(Config{Generators: gens, Rate: 100, Chunk: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetWeight(ctx, 25); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p.Start(ctx)
	time.Sleep(2 * time.Second)
	p.Stop()
	t1 := time.Now()
	c, k := p.Summarize(engine.ArmCanary, Span{Start: t0, End: t1}), p.Summarize(engine.ArmControl, Span{Start: t0, End: t1})
	if c.Pending != 0 || k.Pending != 0 {
		t.Fatalf("chunks still pending after Stop: %d %d", c.Pending, k.Pending)
	}
	if c.Requests == 0 || k.Requests == 0 || c.SuccessRatio() != 1 || k.SuccessRatio() != 1 {
		t.Fatalf("canary %+v control %+v", c, k)
	}
	share := float64(c.Offered) / float64(c.Offered+k.Offered)
	if share < 0.15 || share > 0.35 {
		t.Fatalf("canary share %.2f at weight 25 (canary %d, control %d offered)", share, c.Offered, k.Offered)
	}
	if c.Hist == nil || c.P99 <= 0 || c.P50 > c.P99 {
		t.Fatalf("latency quantiles %+v", c)
	}
	o, err := p.Observe(ctx, engine.Window{Start: t0, End: t1})
	if err != nil || o.Arms[engine.ArmControl]["success_ratio"] != 1 || o.Arms[engine.ArmCanary]["p99_ms"] <= 0 {
		t.Fatalf("observe %+v %v", o, err)
	}
}

// Under faults one message can time out on every retry: the timeouts then
// outnumber the messages, never the attempts the judge divides them by.
func TestAttemptsCountRetriesAndDuplicates(t *testing.T) {
	t0 := time.Now()
	p := &Probe{}
	p.chunks = []*chunk{
		{arm: engine.ArmCanary, start: t0, end: t0.Add(time.Second), done: true,
			sum: load.Summary{Messages: 10, Duplicates: 2, Retries: 30, Timeouts: 31, OK: 9, Failed: 1}},
		{arm: engine.ArmCanary, start: t0.Add(time.Second), end: t0.Add(2 * time.Second), done: true,
			sum: load.Summary{Messages: 5, Retries: 1, Timeouts: 1, OK: 5}},
		{arm: engine.ArmControl, start: t0, end: t0.Add(time.Second), done: true, sum: load.Summary{Messages: 100, OK: 100}},
	}
	st := p.Summarize(engine.ArmCanary, Span{Start: t0, End: t0.Add(2 * time.Second)})
	if st.Offered != 15 || st.Attempts != 48 || st.Timeouts != 32 {
		t.Fatalf("offered %d attempts %d timeouts %d, want 15, 48, 32", st.Offered, st.Attempts, st.Timeouts)
	}
	if st.Timeouts <= st.Offered || st.Timeouts > st.Attempts {
		t.Fatal("the case this guards: more timeouts than messages, fewer than attempts")
	}
	if m := st.Metrics(); m["attempts"] != 48 {
		t.Fatalf("metrics %v", m)
	}
}

// TestRecoveredWaitsForACleanChunk: after a recovery at t, an arm has
// recovered once its latest chunk since t served without a timeout or a
// failure, or once it has finished three chunks since t either way.
func TestRecoveredWaitsForACleanChunk(t *testing.T) {
	p, err := New(Config{Generators: map[engine.Arm]*load.Generator{engine.ArmCanary: nil, engine.ArmControl: nil}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	add := func(arm engine.Arm, i int, done bool, timeouts int64) {
		start := t0.Add(time.Duration(i) * time.Second)
		p.chunks = append(p.chunks, &chunk{arm: arm, start: start, end: start.Add(time.Second), done: done, sum: load.Summary{Timeouts: timeouts}})
	}
	add(engine.ArmCanary, -1, true, 0) // before the recovery: does not count
	add(engine.ArmControl, -1, true, 0)
	if p.Recovered(t0) {
		t.Fatal("recovered with no chunk since the recovery")
	}
	add(engine.ArmCanary, 0, true, 4)
	add(engine.ArmControl, 0, true, 0)
	if p.Recovered(t0) {
		t.Fatal("recovered while the canary's latest chunk timed out")
	}
	add(engine.ArmCanary, 1, false, 0) // still running: not yet evidence
	if p.Recovered(t0) {
		t.Fatal("recovered on a chunk still running")
	}
	p.chunks[len(p.chunks)-1].done = true
	if !p.Recovered(t0) {
		t.Fatal("not recovered after a clean canary chunk")
	}
	// An arm that keeps timing out is judged after three chunks.
	p.chunks = nil
	for i := 0; i < 3; i++ {
		add(engine.ArmCanary, i, true, 2)
		add(engine.ArmControl, i, true, 0)
		if got, want := p.Recovered(t0), i == 2; got != want {
			t.Fatalf("after %d timing-out canary chunks: recovered %v, want %v", i+1, got, want)
		}
	}
}

// TestSettledLeavesOutChunksStillRetryingAfterTheSpan: a chunk scheduled
// inside a steady span whose stragglers were still retrying when a fault
// struck after it (the span's SettleBy) counts in Summarize (its schedule
// lies in the span) but not in SummarizeSettled, which a judge's steady
// window reads.
func TestSettledLeavesOutChunksStillRetryingAfterTheSpan(t *testing.T) {
	t0 := time.Now()
	span := Span{Start: t0, End: t0.Add(2 * time.Second), SettleBy: t0.Add(2 * time.Second)}
	p := &Probe{}
	p.chunks = []*chunk{
		{arm: engine.ArmCanary, start: t0, end: t0.Add(time.Second), done: true, finished: t0.Add(1100 * time.Millisecond),
			sum: load.Summary{Messages: 10, OK: 10}},
		// Scheduled inside the span, finished after the fault that followed it.
		{arm: engine.ArmCanary, start: t0.Add(time.Second), end: t0.Add(2 * time.Second), done: true, finished: t0.Add(3500 * time.Millisecond),
			sum: load.Summary{Messages: 10, OK: 5, Retries: 5, Timeouts: 5, Failed: 5}},
	}
	if all := p.Summarize(engine.ArmCanary, span); all.Timeouts != 5 || all.Chunks != 2 {
		t.Fatalf("summarize: %+v", all)
	}
	if st := p.SummarizeSettled(engine.ArmCanary, span); st.Timeouts != 0 || st.Chunks != 1 || st.Offered != 10 {
		t.Fatalf("settled: %+v", st)
	}
	// With no fault after the span, a slow arm's late chunk is its steady
	// state and counts.
	span.SettleBy = time.Time{}
	if st := p.SummarizeSettled(engine.ArmCanary, span); st.Timeouts != 5 || st.Chunks != 2 {
		t.Fatalf("no fault after the span: %+v", st)
	}
}

// Fault counts the load of the chunks that overlap a fault and finds the
// first clean chunk after its removal.
func TestFaultWindowCountsLoadAndRecovery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	chunkAt := func(arm engine.Arm, s float64, ok, failed, timeouts, retries int64) *chunk {
		return &chunk{arm: arm, start: at(s), end: at(s + 1), done: true,
			sum: load.Summary{OK: ok, Failed: failed, Timeouts: timeouts, Retries: retries}}
	}
	p := &Probe{}
	p.chunks = []*chunk{
		chunkAt(engine.ArmCanary, 0, 100, 0, 0, 0),        // before the fault
		chunkAt(engine.ArmCanary, 1, 80, 20, 5, 30),       // fault from 1.5 s …
		chunkAt(engine.ArmCanary, 2, 50, 50, 9, 60),       // … to 3 s
		chunkAt(engine.ArmCanary, 3, 90, 10, 2, 10),       // after removal, not clean yet
		chunkAt(engine.ArmCanary, 4, 99, 0, 1, 1),         // a timeout: not clean
		chunkAt(engine.ArmCanary, 5, 100, 0, 0, 0),        // clean: recovered 2 s after the removal
		chunkAt(engine.ArmControl, 3, 100, 0, 0, 0),       // the control: clean at once
		{arm: engine.ArmCanary, start: at(6), end: at(7)}, // not finished: ignored
	}
	fw := p.Fault(engine.ArmCanary, at(1.5), at(3))
	if fw.Requests != 200 || fw.Failed != 70 || fw.Timeouts != 14 || fw.Retries != 90 || !fw.Recovered || fw.RecoveryS != 2 {
		t.Fatalf("canary: %+v", fw)
	}
	// Latency counts too: with a steady p99 of 20 ms before the fault, a
	// clean chunk whose p99 is 900 ms is not the steady state back.
	ms := func(v, n int64) bar { return bar{v: v * 1000, n: n} }
	p.chunks[0].bars = []bar{ms(10, 90), ms(20, 10)}
	p.chunks[5].bars = []bar{ms(10, 50), ms(900, 50)}
	p.chunks = append(p.chunks, chunkAt(engine.ArmCanary, 7, 100, 0, 0, 0))
	p.chunks[len(p.chunks)-1].bars = []bar{ms(15, 100)}
	if fw := p.Fault(engine.ArmCanary, at(1.5), at(3)); fw.SteadyP99MS != 20 || !fw.Recovered || fw.RecoveryS != 4 {
		t.Fatalf("slow after the fault: %+v", fw)
	}
	if SteadyP99Bound(20) != 70 || SteadyP99Bound(200) != 400 {
		t.Fatalf("bound %g %g", SteadyP99Bound(20), SteadyP99Bound(200))
	}
	if fw := p.Fault(engine.ArmControl, at(1.5), at(3)); !fw.Recovered || fw.RecoveryS != 0 || fw.Requests != 0 {
		t.Fatalf("control: %+v", fw)
	}
	if fw := p.Fault(engine.ArmCanary, at(7.5), at(8)); fw.Recovered {
		t.Fatalf("no clean chunk after the removal, yet recovered: %+v", fw)
	}
}
