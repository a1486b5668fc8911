package replica

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// Property against raft's in-memory store: several groups doing raft-like
// operations (appends, suffix cuts, prefix trims) on one shared log, with
// reopens, read back identically.
func TestSharedWALMatchesInmemStores(t *testing.T) {
	for trial := range 6 {
		r := rand.New(rand.NewPCG(uint64(trial), 9))
		dir := t.TempDir()
		size := int64(300 + r.IntN(3000))
		w, err := OpenSharedWAL(dir, size)
		if err != nil {
			t.Fatal(err)
		}
		const groups = 3
		refs := make([]*raft.InmemStore, groups)
		next := make([]uint64, groups)
		term := make([]uint64, groups)
		for g := range groups {
			refs[g] = raft.NewInmemStore()
			next[g], term[g] = 1, 1
		}
		for range 150 {
			g := r.IntN(groups)
			st, ref := w.Group(uint32(g)), refs[g]
			switch op := r.IntN(10); {
			case op < 6:
				n := uint64(1 + r.IntN(6))
				es := entries(next[g], next[g]+n-1, term[g])
				if err := st.StoreLogs(es); err != nil {
					t.Fatal(err)
				}
				_ = ref.StoreLogs(es)
				next[g] += n
			case op < 8:
				last, _ := ref.LastIndex()
				first, _ := ref.FirstIndex()
				if last > first+2 {
					from := last - uint64(r.IntN(3))
					if err := st.DeleteRange(from, last); err != nil {
						t.Fatal(err)
					}
					_ = ref.DeleteRange(from, last)
					next[g], term[g] = from, term[g]+1
				}
			case op < 9:
				first, _ := ref.FirstIndex()
				last, _ := ref.LastIndex()
				if last > first+4 {
					upto := first + uint64(r.IntN(int(last-first-2)))
					if err := st.DeleteRange(first, upto); err != nil {
						t.Fatal(err)
					}
					_ = ref.DeleteRange(first, upto)
				}
			default:
				w.Close()
				if w, err = OpenSharedWAL(dir, size); err != nil {
					t.Fatal(err)
				}
			}
			for gg := range groups {
				st, ref := w.Group(uint32(gg)), refs[gg]
				f1, _ := st.FirstIndex()
				f2, _ := ref.FirstIndex()
				l1, _ := st.LastIndex()
				l2, _ := ref.LastIndex()
				if f1 != f2 || l1 != l2 {
					t.Fatalf("trial %d group %d: shared %d..%d ref %d..%d", trial, gg, f1, l1, f2, l2)
				}
				for i := f2; i <= l2 && i > 0; i++ {
					var a, b raft.Log
					_ = ref.GetLog(i, &b)
					if err := st.GetLog(i, &a); err != nil || string(a.Data) != string(b.Data) {
						t.Fatalf("trial %d group %d entry %d: %q vs %q (%v)", trial, gg, i, a.Data, b.Data, err)
					}
				}
			}
		}
		w.Close()
	}
}

// Concurrent appends of many groups are committed together.
func TestSharedWALConcurrentGroups(t *testing.T) {
	w, err := OpenSharedWAL(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := w.Group(uint32(g))
			for i := uint64(1); i <= 20; i++ {
				if err := st.StoreLogs(entries(i, i, 1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for g := range 16 {
		if got := mustGetShared(t, w.Group(uint32(g)), 20); got != "e20-t1" {
			t.Fatal(got)
		}
	}
}

func mustGetShared(t *testing.T, st raft.LogStore, i uint64) string {
	t.Helper()
	var l raft.Log
	if err := st.GetLog(i, &l); err != nil {
		t.Fatal(err)
	}
	return string(l.Data)
}
