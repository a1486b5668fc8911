package reorder

import (
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func seqs(evs []Release[int]) (msgs []uint64, gaps [][2]uint64) {
	for _, e := range evs {
		if e.Kind == EventMessage {
			msgs = append(msgs, e.Seq)
		} else {
			gaps = append(gaps, [2]uint64{e.FromSeq, e.ToSeq})
		}
	}
	return
}

func TestInOrderAndReordered(t *testing.T) {
	b := New[int](Config{})
	var all []Release[int]
	for _, s := range []uint64{1, 3, 2, 5, 4} {
		o, ev := b.Offer("s", s, 0, int(s))
		if o != Accepted {
			t.Fatalf("seq %d: %v", s, o)
		}
		all = append(all, ev...)
	}
	m, g := seqs(all)
	if len(g) != 0 || len(m) != 5 {
		t.Fatalf("msgs %v gaps %v", m, g)
	}
	for i, s := range m {
		if s != uint64(i+1) {
			t.Fatalf("order %v", m)
		}
	}
	if o, _ := b.Offer("s", 3, 0, 3); o != Duplicate {
		t.Fatal("released seq must be duplicate")
	}
	if b.Depth() != 0 {
		t.Fatal(b.Depth())
	}
}

func TestTimeoutDeclaresGapThenLate(t *testing.T) {
	b := New[int](Config{Timeout: 100})
	b.Offer("s", 1, 0, 1)
	b.Offer("s", 4, 10, 4)
	if o, _ := b.Offer("s", 4, 11, 4); o != Duplicate {
		t.Fatal("held seq must be duplicate")
	}
	if ev := b.Expire(109); len(ev) != 0 {
		t.Fatalf("expired early: %v", ev)
	}
	m, g := seqs(b.Expire(110))
	if len(g) != 1 || g[0] != [2]uint64{2, 3} || len(m) != 1 || m[0] != 4 {
		t.Fatalf("msgs %v gaps %v", m, g)
	}
	if o, _ := b.Offer("s", 2, 200, 2); o != Late {
		t.Fatalf("late arrival: %v", o)
	}
}

func TestCountAndDistanceBounds(t *testing.T) {
	b := New[int](Config{MaxCount: 3, MaxDistance: 10})
	b.Offer("s", 1, 0, 0)
	for _, s := range []uint64{3, 5, 7, 9} {
		b.Offer("s", s, 0, 0)
	}
	// 4 held > 3: the front hole (2) is declared, 3 released.
	if b.Depth() != 3 || b.Next("s") != 4 {
		t.Fatalf("depth %d next %d", b.Depth(), b.Next("s"))
	}
	_, ev := b.Offer("s", 30, 0, 0)
	_, g := seqs(ev)
	if len(g) == 0 || b.Next("s") < 20 {
		t.Fatalf("distance bound not enforced: gaps %v next %d", g, b.Next("s"))
	}
}

// Property against a naive model: whatever the arrival order, every sequence
// 1..N is either released exactly once or covered by exactly one gap,
// releases are in increasing order, and the bounds always hold.
func TestPropertyAgainstModel(t *testing.T) {
	for trial := range 300 {
		r := rand.New(rand.NewPCG(uint64(trial), 7))
		cfg := Config{MaxCount: 1 + r.IntN(8), MaxDistance: uint64(1 + r.IntN(16)), Timeout: int64(1 + r.IntN(50))}
		b := New[int](cfg)
		n := 1 + r.IntN(200)
		order := make([]uint64, 0, n)
		for i := 1; i <= n; i++ {
			if r.IntN(10) != 0 { // 10% never arrive
				order = append(order, uint64(i))
			}
		}
		for i := range order { // local shuffles: reordering
			j := min(len(order)-1, i+r.IntN(4))
			order[i], order[j] = order[j], order[i]
		}
		covered := map[uint64]int{}
		var last uint64
		var now int64
		check := func(evs []Release[int]) {
			for _, e := range evs {
				lo, hi := e.Seq, e.Seq
				if e.Kind == EventGap {
					lo, hi = e.FromSeq, e.ToSeq
				}
				if lo <= last || hi < lo {
					t.Fatalf("trial %d: out of order event %+v after %d", trial, e, last)
				}
				last = hi
				for s := lo; s <= hi; s++ {
					covered[s]++
				}
			}
			if b.Depth() > cfg.MaxCount {
				t.Fatalf("trial %d: depth %d > %d", trial, b.Depth(), cfg.MaxCount)
			}
		}
		for _, s := range order {
			now += int64(r.IntN(5))
			_, ev := b.Offer("s", s, now, 0)
			check(ev)
			// duplicates are refused
			if r.IntN(5) == 0 {
				if o, ev := b.Offer("s", s, now, 0); o == Accepted || len(ev) > 0 {
					t.Fatalf("trial %d: duplicate of %d accepted", trial, s)
				}
			}
			check(b.Expire(now))
		}
		check(b.Expire(now + cfg.Timeout + 1))
		if b.Depth() != 0 {
			t.Fatalf("trial %d: depth %d after final expiry", trial, b.Depth())
		}
		for s, c := range covered {
			if c != 1 {
				t.Fatalf("trial %d: seq %d covered %d times", trial, s, c)
			}
		}
		// everything that arrived below the final next was covered
		for _, s := range order {
			if covered[s] != 1 {
				t.Fatalf("trial %d: arrived seq %d not released", trial, s)
			}
		}
	}
}

func TestStateRestore(t *testing.T) {
	b := New[int](Config{})
	b.Offer("a", 1, 0, 1)
	b.Offer("a", 3, 0, 3)
	b.Offer("b", 2, 0, 2)
	c := New[int](Config{})
	c.Restore(b.State())
	if c.Depth() != 2 || c.Next("a") != 2 {
		t.Fatalf("depth %d next %d", c.Depth(), c.Next("a"))
	}
	_, ev := c.Offer("a", 2, 0, 2)
	if m, _ := seqs(ev); len(m) != 2 {
		t.Fatalf("restored buffer did not drain: %v", m)
	}
}

// TestForgottenGapIsNeverADuplicate: once a gap falls out of the
// remembered ones, a sequence that may lie in it is Forgotten (not
// acknowledged as a duplicate of a message that was never stored), while
// sequences released after the newest forgotten gap stay Duplicate — also
// after a snapshot restore.
func TestForgottenGapIsNeverADuplicate(t *testing.T) {
	b := New[int](Config{Timeout: 10, RecentGaps: 2})
	now := int64(0)
	// Gaps 2, 5, 8, 11: seq 1, then every third seq is skipped.
	for _, s := range []uint64{1, 3, 4, 6, 7, 9, 10, 12, 13} {
		now++
		b.Offer("s", s, now, int(s))
		b.Expire(now + 100) // declare the hole at once
		now += 100
	}
	if o, _ := b.Offer("s", 2, now, 2); o != Forgotten {
		t.Fatalf("seq 2 (forgotten gap): %v", o)
	}
	if o, _ := b.Offer("s", 4, now, 4); o != Forgotten {
		t.Fatalf("seq 4 (released, at or below the forgotten gaps): %v", o)
	}
	if o, _ := b.Offer("s", 8, now, 8); o != Late {
		t.Fatalf("seq 8 (remembered gap): %v", o)
	}
	if o, _ := b.Offer("s", 10, now, 10); o != Duplicate {
		t.Fatalf("seq 10 (released after the forgotten gaps): %v", o)
	}
	c := New[int](Config{Timeout: 10, RecentGaps: 2})
	c.Restore(b.State())
	for s, want := range map[uint64]OfferOutcome{2: Forgotten, 8: Late, 10: Duplicate, 13: Duplicate} {
		if o, _ := c.Offer("s", s, now, int(s)); o != want {
			t.Fatalf("after restore, seq %d: %v want %v", s, o, want)
		}
	}
}
