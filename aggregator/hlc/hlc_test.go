package hlc

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/quick"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) now() int64 { return f.ns.Load() }

func TestNowMonotoneWhenPhysicalStandsStillOrGoesBack(t *testing.T) {
	fc := &fakeClock{}
	fc.ns.Store(1000)
	c, err := New(Options{Physical: fc.now})
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := c.Now()
	for i := range 100 {
		if i%10 == 0 {
			fc.ns.Add(-50) // clock steps back
		}
		ts, err := c.Now()
		if err != nil {
			t.Fatal(err)
		}
		if !prev.Less(ts) {
			t.Fatalf("not monotone: %s then %s", prev, ts)
		}
		prev = ts
	}
}

// Property: for any interleaving of local ticks, physical jumps and received
// timestamps within the offset, every timestamp is after everything the clock
// returned or accepted before.
func TestPropertyMonotoneAndCausal(t *testing.T) {
	f := func(steps []int16, remotes []uint16) bool {
		fc := &fakeClock{}
		fc.ns.Store(1_000_000)
		c, _ := New(Options{Physical: fc.now, MaxOffset: time.Duration(1 << 14)})
		var prev Timestamp
		for i, s := range steps {
			fc.ns.Add(int64(s))
			var ts Timestamp
			var err error
			if i < len(remotes) && remotes[i]%3 == 0 {
				r := Timestamp{Wall: fc.now() + int64(remotes[i]%(1<<13)), Logical: uint32(remotes[i] % 7)}
				ts, err = c.Update(r)
				if err != nil || !r.Less(ts) {
					return false
				}
			} else {
				ts, err = c.Now()
				if err != nil {
					return false
				}
			}
			if !prev.Less(ts) {
				return false
			}
			prev = ts
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func TestMaxOffsetRefused(t *testing.T) {
	fc := &fakeClock{}
	fc.ns.Store(int64(time.Second))
	c, _ := New(Options{Physical: fc.now, MaxOffset: 100 * time.Millisecond})
	before := c.Last()
	_, err := c.Update(Timestamp{Wall: int64(2 * time.Second)})
	if !IsKind(err, KindOffset) {
		t.Fatalf("want offset error, got %v", err)
	}
	if c.Last() != before {
		t.Fatal("refused timestamp was merged")
	}
	if _, err := c.Update(Timestamp{Wall: int64(time.Second + 50*time.Millisecond)}); err != nil {
		t.Fatalf("within offset refused: %v", err)
	}
}

func TestPersistedBoundSurvivesRestart(t *testing.T) {
	p := FilePersister{Path: filepath.Join(t.TempDir(), "hlc")}
	fc := &fakeClock{}
	fc.ns.Store(int64(10 * time.Second))
	c, err := New(Options{Physical: fc.now, Persist: p, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var last Timestamp
	for range 5 {
		fc.ns.Add(int64(300 * time.Millisecond))
		last, _ = c.Now()
	}
	c.Close() // the process stops
	// Restart with a physical clock that went back an hour.
	fc.ns.Store(int64(time.Second))
	c2, err := New(Options{Physical: fc.now, Persist: p, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := c2.Now()
	if !last.Less(ts) {
		t.Fatalf("clock went back across restart: %s then %s", last, ts)
	}
}

// The hlc-no-update defect: a clock that ignores received timestamps hands
// out a timestamp before one it has seen (a causality regression).
func TestIgnoreUpdatesRegresses(t *testing.T) {
	fc := &fakeClock{}
	fc.ns.Store(1000)
	good, _ := New(Options{Physical: fc.now, MaxOffset: time.Second})
	bad, _ := New(Options{Physical: fc.now, MaxOffset: time.Second, IgnoreUpdates: true})
	remote := Timestamp{Wall: 5000}
	if _, err := good.Update(remote); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Update(remote); err != nil {
		t.Fatal(err)
	}
	g, _ := good.Now()
	b, _ := bad.Now()
	if !remote.Less(g) {
		t.Fatalf("good clock %s not after received %s", g, remote)
	}
	if !b.Less(remote) {
		t.Fatalf("defective clock %s should regress below received %s", b, remote)
	}
}

func TestParse(t *testing.T) {
	ts, err := Parse("1763805600123456789.2")
	if err != nil || ts.Wall != 1763805600123456789 || ts.Logical != 2 || ts.String() != "1763805600123456789.2" {
		t.Fatalf("%v %v", ts, err)
	}
	for _, bad := range []string{"", "x.1", "1.x", "-5.0", "1.99999999999"} {
		if _, err := Parse(bad); !IsKind(err, KindInvalid) {
			t.Errorf("Parse(%q) err=%v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.2", "0.0", "1763805600123456789.2", "abc", "1."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(ts.String())
		if err != nil || back != ts {
			t.Fatalf("round trip %q -> %s -> %v %v", s, ts, back, err)
		}
	})
}

// gatedPersister stores a bound only when the test lets it (one receive on
// gate per store) and remembers the highest bound durably stored.
type gatedPersister struct {
	gate    chan struct{}
	fail    atomic.Bool
	durable atomic.Int64
}

func (p *gatedPersister) Load() (int64, error) { return p.durable.Load(), nil }

func (p *gatedPersister) Store(b int64) error {
	<-p.gate
	if p.fail.Load() {
		return errors.New("disk full")
	}
	if b > p.durable.Load() {
		p.durable.Store(b)
	}
	return nil
}

// TestBoundStoredAheadInBackground: while the durable bound is ahead of
// the clock, a reading does not wait for the next bound being stored; a
// reading that reaches the bound waits for it; every reading handed out is
// below a bound already durable (so a restart never goes back); a failed
// store is reported to the reading that needed it.
func TestBoundStoredAheadInBackground(t *testing.T) {
	p := &gatedPersister{gate: make(chan struct{})}
	fc := &fakeClock{}
	fc.ns.Store(int64(10 * time.Second))
	c, err := New(Options{Physical: fc.now, Persist: p, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := func() (Timestamp, error) {
		type out struct {
			ts  Timestamp
			err error
		}
		done := make(chan out, 1)
		go func() {
			ts, err := c.Now()
			done <- out{ts, err} // read durable after Now returned
			if err == nil && ts.Wall >= p.durable.Load() {
				t.Errorf("reading %s handed out at or above the durable bound %d", ts, p.durable.Load())
			}
		}()
		for {
			select {
			case o := <-done:
				return o.ts, o.err
			case p.gate <- struct{}{}: // the reading waits for a store: let it through
			}
		}
	}
	if _, err := now(); err != nil { // no bound yet: waits for the first store
		t.Fatal(err)
	}
	fc.ns.Store(int64(10*time.Second + 600*time.Millisecond))
	// Less than half a window left: the next store starts, and this reading
	// returns without it (the gate stays shut).
	if ts, err := c.Now(); err != nil || ts.Wall != fc.now() {
		t.Fatalf("reading with headroom: %s %v", ts, err)
	}
	p.gate <- struct{}{}                                      // taken by the store running in the background
	fc.ns.Store(int64(11*time.Second + 200*time.Millisecond)) // past the durable bound
	ts, err := now()
	if err != nil || ts.Wall != fc.now() {
		t.Fatalf("reading past the bound: %s %v", ts, err)
	}
	p.fail.Store(true)
	fc.ns.Store(int64(20 * time.Second))
	if _, err := now(); !IsKind(err, KindStorage) {
		t.Fatalf("failed store: %v", err)
	}
}
