package replica

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// raftWALChildEnv makes the test binary a child process that fills a
// RaftWAL and waits to be killed (see TestRaftWALKeepsAppendsAcrossSIGKILL).
const raftWALChildEnv = "REPLICA_RAFTWAL_CHILD"

// raftWALChild opens a RaftWAL in dir with the sync interval given after
// the dir ("DIR|1h"), appends entries 1..300 in batches of 10, sets the
// stable key CurrentTerm to 3, prints "stored" and blocks until killed.
func raftWALChild(arg string) int {
	dir, every, _ := strings.Cut(arg, "|")
	d, err := time.ParseDuration(every)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	w, err := OpenRaftWAL(dir, RaftWALOptions{SegmentSize: 4096, SyncInterval: d})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := uint64(1); i <= 300; i += 10 {
		if err := w.StoreLogs(entries(i, i+9, 1)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if err := w.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("stored")
	select {} // until SIGKILL
}

func raftWALSyncIntervals() []time.Duration { return []time.Duration{0, time.Hour} }

// A RaftWAL behaves as raft's in-memory store under random raft-like
// operations (appends, suffix truncation after a term change, prefix
// compaction, reopen), with every append fsynced and with fsyncs deferred.
func TestRaftWALMatchesInmemStore(t *testing.T) {
	for _, every := range raftWALSyncIntervals() {
		t.Run(fmt.Sprintf("sync-interval=%v", every), func(t *testing.T) {
			for trial := range 6 {
				r := rand.New(rand.NewPCG(uint64(trial), 5))
				dir := t.TempDir()
				open := func() *RaftWAL {
					w, err := OpenRaftWAL(dir, RaftWALOptions{SegmentSize: 1024 + r.IntN(4096), SyncInterval: every})
					if err != nil {
						t.Fatal(err)
					}
					return w
				}
				w := open()
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
					case op < 7:
						last, _ := ref.LastIndex()
						first, _ := ref.FirstIndex()
						if last > first+2 {
							from := last - uint64(r.IntN(3))
							if err := w.DeleteRange(from, last); err != nil {
								t.Fatal(err)
							}
							_ = ref.DeleteRange(from, last)
							next, term = from, term+1
							if err := w.SetUint64([]byte("CurrentTerm"), term); err != nil {
								t.Fatal(err)
							}
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
						if err := w.Close(); err != nil {
							t.Fatal(err)
						}
						w = open()
						if got, err := w.GetUint64([]byte("CurrentTerm")); term > 1 && (err != nil || got != term) {
							t.Fatalf("trial %d: term after reopen %d (%v), want %d", trial, got, err, term)
						}
					}
					f1, _ := w.FirstIndex()
					f2, _ := ref.FirstIndex()
					l1, _ := w.LastIndex()
					l2, _ := ref.LastIndex()
					if f1 != f2 || l1 != l2 {
						t.Fatalf("trial %d: raft-wal %d..%d ref %d..%d", trial, f1, l1, f2, l2)
					}
					for i := f2; i <= l2 && i > 0; i++ {
						var a, b raft.Log
						if err := ref.GetLog(i, &b); err != nil {
							continue
						}
						if err := w.GetLog(i, &a); err != nil || string(a.Data) != string(b.Data) || a.Term != b.Term {
							t.Fatalf("trial %d: entry %d: %q/%d vs %q/%d (%v)", trial, i, a.Data, a.Term, b.Data, b.Term, err)
						}
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// With a sync interval, an append returns with its segment file dirty (not
// fsynced) and the background flush fsyncs it; without one, nothing is
// left to flush.
func TestRaftWALSyncIntervalDefersFsync(t *testing.T) {
	w, err := OpenRaftWAL(t.TempDir(), RaftWALOptions{SyncInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	w.lazy.mu.Lock()
	dirty := len(w.lazy.dirty)
	w.lazy.mu.Unlock()
	if dirty == 0 {
		t.Fatal("an append with a sync interval was fsynced before it returned")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.lazy.mu.Lock()
		dirty = len(w.lazy.dirty)
		w.lazy.mu.Unlock()
		if dirty == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files still dirty: the background flush never ran", dirty)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w0, err := OpenRaftWAL(t.TempDir(), RaftWALOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Close()
	if w0.lazy != nil {
		t.Fatal("sync interval 0 defers fsyncs")
	}
}

// A process killed with SIGKILL right after its appends returned leaves
// them readable — fsynced or only in the page cache — with the stable
// store's term, across segment rotations.
func TestRaftWALKeepsAppendsAcrossSIGKILL(t *testing.T) {
	for _, every := range raftWALSyncIntervals() {
		t.Run(fmt.Sprintf("sync-interval=%v", every), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "raft-wal")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), raftWALChildEnv+"="+dir+"|"+every.String())
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, rerr := bufio.NewReader(out).ReadString('\n')
			_ = cmd.Process.Kill() // SIGKILL, by pid
			_ = cmd.Wait()
			if rerr != nil || line != "stored\n" {
				t.Fatalf("child: %q %v", line, rerr)
			}
			w, err := OpenRaftWAL(dir, RaftWALOptions{SegmentSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if last, err := w.LastIndex(); err != nil || last != 300 {
				t.Fatalf("last index after SIGKILL %d (%v), want 300", last, err)
			}
			for i := uint64(1); i <= 300; i++ {
				var l raft.Log
				if err := w.GetLog(i, &l); err != nil || string(l.Data) != fmt.Sprintf("e%d-t1", i) {
					t.Fatalf("entry %d after SIGKILL: %q %v", i, l.Data, err)
				}
			}
			if term, err := w.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
				t.Fatalf("term after SIGKILL %d (%v), want 3", term, err)
			}
		})
	}
}

func TestRaftWALRejectsBadOptions(t *testing.T) {
	for _, o := range []RaftWALOptions{{SyncInterval: -time.Second}, {SegmentSize: -1}, {SegmentSize: 1 << 31}} {
		if w, err := OpenRaftWAL(t.TempDir(), o); err == nil {
			w.Close()
			t.Fatalf("%+v accepted", o)
		}
	}
}

// copyDir copies the regular files of src into dst (created).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A process that dies after raft-wal sealed its tail segment but before
// it recorded the seal in its segment list leaves a sealed tail that
// raft-wal itself reopens and then refuses to append to. The directory is
// built as such a crash leaves it — the segment list from before the
// sealing append, the tail segment from after — and OpenRaftWAL rotates
// the tail: every entry is still there and appends go on.
func TestRaftWALReopensASealedTail(t *testing.T) {
	live := t.TempDir()
	w, err := OpenRaftWAL(live, RaftWALOptions{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	segs := func(dir string) []string {
		names, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		return names
	}
	crashed := ""
	next := uint64(1)
	for range 400 {
		if err := w.awaitRotation(); err != nil {
			t.Fatal(err)
		}
		before := filepath.Join(t.TempDir(), "before")
		copyDir(t, live, before)
		n := len(segs(live))
		if err := w.StoreLogs(entries(next, next+4, 1)); err != nil {
			t.Fatal(err)
		}
		next += 5
		if err := w.awaitRotation(); err != nil {
			t.Fatal(err)
		}
		if len(segs(live)) > n { // that append sealed the tail
			tail := segs(before)[len(segs(before))-1]
			b, err := os.ReadFile(filepath.Join(live, filepath.Base(tail)))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tail, b, 0o644); err != nil {
				t.Fatal(err)
			}
			crashed = before
			break
		}
	}
	if crashed == "" {
		t.Fatal("no append sealed a segment")
	}
	last := next - 1
	r, err := OpenRaftWAL(crashed, RaftWALOptions{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.RepairedSealedTail {
		t.Fatal("the crash state was not reproduced: the reopened tail is not sealed")
	}
	if got, err := r.LastIndex(); err != nil || got != last {
		t.Fatalf("last index %d (%v), want %d", got, err, last)
	}
	if err := r.StoreLogs(entries(last+1, last+5, 1)); err != nil {
		t.Fatalf("append after reopening a sealed tail: %v", err)
	}
	for i := uint64(1); i <= last+5; i++ {
		var l raft.Log
		if err := r.GetLog(i, &l); err != nil || string(l.Data) != fmt.Sprintf("e%d-t1", i) {
			t.Fatalf("entry %d: %q %v", i, l.Data, err)
		}
	}
}
