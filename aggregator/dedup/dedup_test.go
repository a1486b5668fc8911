package dedup

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTTLAndBound(t *testing.T) {
	s := New(100, 3)
	s.Add("1", "a", 0)
	if !s.Contains("1", "a", 50) || s.Contains("1", "b", 50) {
		t.Fatal("pair identity")
	}
	if s.Contains("1", "a", 100) {
		t.Fatal("expired entry still present")
	}
	for i := range 10 {
		s.Add(fmt.Sprint(i+2), "x", 10)
	}
	if s.Len() != 3 {
		t.Fatalf("len %d > bound", s.Len())
	}
	if !s.Contains("11", "x", 10) || s.Contains("2", "x", 10) {
		t.Fatal("must evict oldest first")
	}
}

// Property against a naive model (a list scanned linearly).
func TestPropertyAgainstModel(t *testing.T) {
	for trial := range 200 {
		r := rand.New(rand.NewPCG(uint64(trial), 1))
		ttl, max := int64(1+r.IntN(50)), 1+r.IntN(20)
		s := New(ttl, max)
		type ent struct {
			k  string
			at int64
		}
		var model []ent
		var now int64
		for range 300 {
			now += int64(r.IntN(4))
			k := fmt.Sprint(r.IntN(40))
			present := false
			for _, e := range model {
				if e.k == k && e.at > now-ttl {
					present = true
				}
			}
			if got := s.Contains(k, "f", now); got != present {
				t.Fatalf("trial %d: contains(%s)=%v model %v", trial, k, got, present)
			}
			if !present {
				// model: drop the stale entry of k, append, evict
				kept := model[:0]
				for _, e := range model {
					if e.k != k {
						kept = append(kept, e)
					}
				}
				model = append(kept, ent{k, now})
			}
			s.Add(k, "f", now)
			for len(model) > 0 && (len(model) > max || model[0].at <= now-ttl) {
				model = model[1:]
			}
			if s.Len() > max {
				t.Fatalf("trial %d: len %d > %d", trial, s.Len(), max)
			}
		}
		c := New(ttl, max)
		c.Restore(s.Entries())
		for i := range 40 {
			k := fmt.Sprint(i)
			if c.Contains(k, "f", now) != s.Contains(k, "f", now) {
				t.Fatalf("trial %d: restore differs on %s", trial, k)
			}
		}
	}
}

// TestInsertAfterContainsMatchesAdd: Insert after a false Contains leaves
// the set exactly as Add would, expired entries included.
func TestInsertAfterContainsMatchesAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	a, b := New(20, 15), New(20, 15)
	var now int64
	for range 5000 {
		now += int64(r.IntN(3))
		k := fmt.Sprint(r.IntN(30))
		if !b.Contains(k, "f", now) {
			b.Insert(k, "f", now)
		}
		if !a.Contains(k, "f", now) { // as the state machine calls it
			a.Add(k, "f", now)
		}
		if a.Len() != b.Len() {
			t.Fatalf("len %d vs %d", a.Len(), b.Len())
		}
		for i := range 30 {
			key := fmt.Sprint(i)
			if a.Contains(key, "f", now) != b.Contains(key, "f", now) {
				t.Fatalf("differ on %s at %d", key, now)
			}
		}
	}
}

// TestRestoreFromStringEntries: snapshots written with the pairs' strings
// (before the set held digests) restore to the same membership, and a
// digest snapshot round-trips.
func TestRestoreFromStringEntries(t *testing.T) {
	old := []Entry{{MsgID: "1", Fingerprint: "a", At: 5}, {MsgID: "2", Fingerprint: "b", At: 6}, {MsgID: "", Fingerprint: "", At: 7}}
	s := New(100, 10)
	s.Restore(old)
	for _, e := range old {
		if !s.Contains(e.MsgID, e.Fingerprint, 8) {
			t.Fatalf("%+v lost in restore", e)
		}
	}
	if s.Contains("1", "b", 8) || s.Contains("3", "a", 8) {
		t.Fatal("pairs are exact: other combinations must not match")
	}
	c := New(100, 10)
	c.Restore(s.Entries())
	for _, e := range old {
		if !c.Contains(e.MsgID, e.Fingerprint, 8) {
			t.Fatalf("%+v lost in a digest round trip", e)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
}

// TestChurnAcrossIndexRebuilds drives enough inserts and evictions to
// rebuild the index many times and checks membership against a plain
// reference set with the same rules.
func TestChurnAcrossIndexRebuilds(t *testing.T) {
	type ent struct {
		k  string
		at int64
	}
	const ttl, max = 3000, 5000
	s := New(ttl, max)
	ref := map[string]int64{}
	var q []ent
	r := rand.New(rand.NewPCG(11, 13))
	var now int64
	for i := 0; i < 60000; i++ {
		now += int64(r.IntN(2))
		k := strconv.Itoa(r.IntN(20000))
		at, ok := ref[k]
		want := ok && at > now-ttl
		if got := s.Contains(k, "f", now); got != want {
			t.Fatalf("op %d: Contains(%s) = %v, reference %v", i, k, got, want)
		}
		if !want { // eviction runs when something is inserted, as in the set
			s.Insert(k, "f", now)
			ref[k] = now
			q = append(q, ent{k, now})
			for len(q) > 0 && (len(ref) > max || q[0].at <= now-ttl) {
				if ref[q[0].k] == q[0].at {
					delete(ref, q[0].k)
				}
				q = q[1:]
			}
		}
		if s.Len() != len(ref) {
			t.Fatalf("op %d: len %d, reference %d", i, s.Len(), len(ref))
		}
	}
}
