package replica

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("e%d-t%d", i, term))})
	}
	return out
}

func mustGet(t *testing.T, w *WAL, i uint64) string {
	t.Helper()
	var l raft.Log
	if err := w.GetLog(i, &l); err != nil {
		t.Fatalf("get %d: %v", i, err)
	}
	if l.Index != i {
		t.Fatalf("got index %d want %d", l.Index, i)
	}
	return string(l.Data)
}

func TestWALAppendTrimTruncateReopen(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWAL(dir, 512) // small segments: rotation is exercised
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(entries(1, 100, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(entries(50, 60, 2)); err == nil {
		t.Fatal("overwrite without delete must fail")
	}
	if err := w.DeleteRange(90, 100); err != nil { // conflicting suffix
		t.Fatal(err)
	}
	if err := w.StoreLogs(entries(90, 120, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(1, 40); err != nil { // compaction
		t.Fatal(err)
	}
	if err := w.DeleteRange(50, 60); err == nil {
		t.Fatal("middle delete must fail")
	}
	check := func(w *WAL) {
		t.Helper()
		if f, _ := w.FirstIndex(); f != 41 {
			t.Fatalf("first %d", f)
		}
		if l, _ := w.LastIndex(); l != 120 {
			t.Fatalf("last %d", l)
		}
		if got := mustGet(t, w, 89); got != "e89-t1" {
			t.Fatal(got)
		}
		if got := mustGet(t, w, 95); got != "e95-t2" {
			t.Fatal(got)
		}
		var l raft.Log
		if err := w.GetLog(40, &l); err != raft.ErrLogNotFound {
			t.Fatalf("trimmed entry: %v", err)
		}
	}
	check(w)
	w.Close()
	w, err = OpenWAL(dir, 512)
	if err != nil {
		t.Fatal(err)
	}
	check(w)
	// a jump after a snapshot install starts a new segment
	if err := w.StoreLogs(entries(500, 510, 3)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, w, 505); got != "e505-t3" {
		t.Fatal(got)
	}
	w.Close()
}

func TestWALTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	w, _ := OpenWAL(dir, 0)
	if err := w.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	f, _ := os.OpenFile(names[0], os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write([]byte{0, 0, 0, 40, 1, 2, 3}) // a torn record
	f.Close()
	w, err := OpenWAL(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if l, _ := w.LastIndex(); l != 10 {
		t.Fatalf("last %d after torn tail", l)
	}
	if err := w.StoreLogs(entries(11, 12, 1)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, w, 12); got != "e12-t1" {
		t.Fatal(got)
	}
}

// Property against an in-memory reference store under random raft-like
// operations (appends, suffix truncation, prefix compaction, reopen).
func TestWALMatchesInmemStore(t *testing.T) {
	for trial := range 12 {
		r := rand.New(rand.NewPCG(uint64(trial), 3))
		dir := t.TempDir()
		w, _ := OpenWAL(dir, int64(200+r.IntN(2000)))
		ref := raft.NewInmemStore()
		next, term := uint64(1), uint64(1)
		for range 200 {
			switch op := r.IntN(10); {
			case op < 6:
				n := uint64(1 + r.IntN(8))
				es := entries(next, next+n-1, term)
				if err := w.StoreLogs(es); err != nil {
					t.Fatal(err)
				}
				_ = ref.StoreLogs(es)
				next += n
			case op < 8:
				last, _ := ref.LastIndex()
				first, _ := ref.FirstIndex()
				if last > first+2 {
					from := last - uint64(r.IntN(3))
					_ = w.DeleteRange(from, last)
					_ = ref.DeleteRange(from, last)
					next, term = from, term+1
				}
			case op < 9:
				first, _ := ref.FirstIndex()
				last, _ := ref.LastIndex()
				if last > first+4 {
					upto := first + uint64(r.IntN(int(last-first-2)))
					if err := w.DeleteRange(first, upto); err != nil {
						t.Fatal(err)
					}
					_ = ref.DeleteRange(first, upto)
				}
			default:
				w.Close()
				w, _ = OpenWAL(dir, int64(200+r.IntN(2000)))
			}
			f1, _ := w.FirstIndex()
			f2, _ := ref.FirstIndex()
			l1, _ := w.LastIndex()
			l2, _ := ref.LastIndex()
			if f1 != f2 || l1 != l2 {
				t.Fatalf("trial %d: wal %d..%d ref %d..%d", trial, f1, l1, f2, l2)
			}
			for i := f2; i <= l2 && i > 0; i++ {
				var a, b raft.Log
				if err := ref.GetLog(i, &b); err != nil {
					continue
				}
				if err := w.GetLog(i, &a); err != nil || string(a.Data) != string(b.Data) {
					t.Fatalf("trial %d: entry %d: %q vs %q (%v)", trial, i, a.Data, b.Data, err)
				}
			}
		}
		w.Close()
	}
}

// TestWALSyncIntervalKeepsEntriesAcrossProcessCrash: with a sync interval,
// appends return before any fsync, yet everything appended is read back by a
// WAL reopened without Close (what a SIGKILLed process leaves: the page
// cache still holds the writes), and Close flushes.
func TestWALSyncIntervalKeepsEntriesAcrossProcessCrash(t *testing.T) {
	for _, name := range []string{"partition", "shared"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			opts := WALOptions{MaxSize: 2048, SyncInterval: 20 * time.Millisecond}
			var store raft.LogStore
			var closeFn func() error
			if name == "partition" {
				w, err := OpenWALWithOptions(dir, opts)
				if err != nil {
					t.Fatal(err)
				}
				store, closeFn = w, w.Close
			} else {
				w, err := OpenSharedWALWithOptions(dir, opts)
				if err != nil {
					t.Fatal(err)
				}
				store, closeFn = w.Group(7), w.Close
			}
			for i := uint64(1); i <= 300; i += 10 {
				if err := store.StoreLogs(entries(i, i+9, 1)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(60 * time.Millisecond) // at least one background flush
			// Reopen while the first instance still runs (as after a crash:
			// nothing was closed or flushed on purpose).
			var again raft.LogStore
			if name == "partition" {
				w2, err := OpenWALWithOptions(dir, WALOptions{MaxSize: 2048})
				if err != nil {
					t.Fatal(err)
				}
				defer w2.Close()
				again = w2
			} else {
				w2, err := OpenSharedWALWithOptions(dir, WALOptions{MaxSize: 2048})
				if err != nil {
					t.Fatal(err)
				}
				defer w2.Close()
				again = w2.Group(7)
			}
			last, err := again.LastIndex()
			if err != nil || last != 300 {
				t.Fatalf("reopened last index %d (%v), want 300", last, err)
			}
			var l raft.Log
			if err := again.GetLog(157, &l); err != nil || string(l.Data) != "e157-t1" {
				t.Fatalf("entry 157: %q %v", l.Data, err)
			}
			if err := closeFn(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWALRejectsNegativeSyncInterval(t *testing.T) {
	if _, err := OpenWALWithOptions(t.TempDir(), WALOptions{SyncInterval: -time.Second}); err == nil {
		t.Fatal("negative sync interval accepted")
	}
	if _, err := OpenSharedWALWithOptions(t.TempDir(), WALOptions{SyncInterval: -time.Second}); err == nil {
		t.Fatal("negative sync interval accepted by the shared log")
	}
}
