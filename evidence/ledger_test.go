package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"golang.org/x/mod/sumdb/tlog"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	goleak.VerifyTestMain(m)
}

// stepClock advances by one millisecond on every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func newClock() *stepClock {
	return &stepClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func newKeys(t testing.TB, origin string) *Keys {
	t.Helper()
	k, err := GenerateKeys(filepath.Join(t.TempDir(), "keys"), origin)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLedger(t testing.TB, dir string, k *Keys) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), dir, Options{Keys: k, Clock: newClock(), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func samplePredicate(i int) *Predicate {
	return &Predicate{
		RunID:      fmt.Sprintf("run-%d", i),
		Experiment: Experiment{Name: fmt.Sprintf("exp-%d", i%7), ScenarioHash: string(DigestOf([]byte("scenario"))), Kind: "gameday"},
		Targets:    []Target{{Arm: "canary", Name: "n1", Address: "127.0.0.1:1"}},
		Injections: []Injection{{Kind: "podKill", Arm: "canary", Target: "n1", Confirmed: "confirmed"}},
		Probes:     []ProbeSummary{{Probe: "availability", Arm: "canary", Summary: json.RawMessage(`{"success_ratio":0.999}`)}},
		Decision:   &Decision{Verdict: "promote", Score: 0.97, Coverage: 0.9, ConfigHash: "sha256:abc"},
		Versions:   map[string]string{"chaosgate": "test"},
		TraceIDs:   []string{fmt.Sprintf("trace-%d", i), "trace-shared"},
	}
}

func revisionFor(i int) string { return fmt.Sprintf("v1.%d", i%13) }

// appendN records n statements from 16 concurrent writers.
func appendN(t testing.TB, l *Ledger, n int) []Receipt {
	t.Helper()
	out := make([]Receipt, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := l.Record(context.Background(), revisionFor(i), samplePredicate(i))
				if err != nil {
					errs <- err
					return
				}
				out[i] = r
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

func TestRoundTripThousandEntries(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	dir := t.TempDir()
	l := openLedger(t, dir, k)
	receipts := appendN(t, l, 1000)
	if l.Size() != 1000 {
		t.Fatalf("size %d, want 1000", l.Size())
	}
	if l.BlockCount() >= 1000 {
		t.Logf("no batching happened: %d blocks", l.BlockCount())
	}
	seen := map[uint64]bool{}
	for _, r := range receipts {
		if seen[r.Index] {
			t.Fatalf("index %d handed out twice", r.Index)
		}
		seen[r.Index] = true
		// The receipt's proof verifies against its own checkpoint.
		hs, _ := BytesToHashes(r.Proof)
		if err := tlog.CheckRecord(hs, int64(r.TreeSize), r.Checkpoint.Root, int64(r.Index), r.LeafHash); err != nil {
			t.Fatalf("receipt %d: %v", r.Index, err)
		}
	}
	for _, fs := range []bool{false, true} {
		rep, err := l.Verify(ctx, fs)
		if err != nil {
			t.Fatalf("verify(fromScratch=%v): %v", fs, err)
		}
		if !rep.OK || rep.Entries != 1000 || rep.TreeSize != 1000 {
			t.Fatalf("report %+v", rep)
		}
		if fs && rep.Envelopes != 1000 {
			t.Fatalf("from scratch checked %d envelope signatures", rep.Envelopes)
		}
	}
	cp, _ := l.Checkpoint(ctx)
	// Every entry's proof against the latest checkpoint, with both libraries.
	for i := uint64(0); i < 1000; i++ {
		tp, err := l.TlogProof(ctx, i, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseTlogProof(tp.Marshal())
		if err != nil {
			t.Fatalf("proof %d does not parse: %v", i, err)
		}
		e, err := l.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(parsed.Checkpoint, cp.Note) {
			t.Fatalf("proof %d is not against the latest checkpoint", i)
		}
		if err := tlog.CheckRecord(parsed.Hashes, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(e.Leaf)); err != nil {
			t.Fatalf("tlog: entry %d: %v", i, err)
		}
		if i%100 == 0 { // the whole offline check, signature included, on a sample
			if _, err := VerifyTlogProof(parsed, e.Leaf, k.CheckpointVerifier()); err != nil {
				t.Fatalf("tlog-proof: entry %d: %v", i, err)
			}
		}
		lh := rfc6962.DefaultHasher.HashLeaf(e.Leaf)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, lh, hashesToBytes(parsed.Hashes), cp.Root[:]); err != nil {
			t.Fatalf("transparency-dev/merkle: entry %d: %v", i, err)
		}
	}
	// Close and reopen: the root is recomputed and matches.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(ctx, dir, Options{Keys: k})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if c2, _ := l2.Checkpoint(ctx); c2.Root != cp.Root || c2.Size != 1000 {
		t.Fatalf("reopened checkpoint %v", c2.Checkpoint)
	}
}

func TestProofsCrossCheckRandomSizes(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	// Sequential single appends give a checkpoint at every size.
	const n = 300
	for i := 0; i < n; i++ {
		if _, err := l.Record(ctx, revisionFor(i), samplePredicate(i)); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 400; trial++ {
		size := uint64(rng.IntN(n)) + 1
		i := uint64(rng.IntN(int(size)))
		cp, err := l.CheckpointAt(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.InclusionProof(ctx, i, size)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := l.Entry(ctx, i)
		hs, _ := BytesToHashes(p)
		errA := tlog.CheckRecord(hs, int64(size), cp.Root, int64(i), tlog.RecordHash(e.Leaf))
		errB := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, rfc6962.DefaultHasher.HashLeaf(e.Leaf), p, cp.Root[:])
		if errA != nil || errB != nil {
			t.Fatalf("inclusion %d in %d: tlog=%v merkle=%v", i, size, errA, errB)
		}
		// A wrong leaf must fail in both.
		bad := tlog.RecordHash([]byte("not the leaf"))
		if tlog.CheckRecord(hs, int64(size), cp.Root, int64(i), bad) == nil || proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, bad[:], p, cp.Root[:]) == nil {
			t.Fatalf("a wrong leaf verified at %d/%d", i, size)
		}
		// Proof length is O(log n).
		if maxLen := bitsLen(size) + 1; len(p) > maxLen {
			t.Fatalf("inclusion proof of %d hashes for size %d", len(p), size)
		}
		from := uint64(rng.IntN(int(size))) + 1
		cp1, err := l.CheckpointAt(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := l.ConsistencyProof(ctx, from, size)
		if err != nil {
			t.Fatal(err)
		}
		chs, _ := BytesToHashes(cons)
		errA = tlog.CheckTree(chs, int64(size), cp.Root, int64(from), cp1.Root)
		errB = proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, cons, cp1.Root[:], cp.Root[:])
		if errA != nil || errB != nil {
			t.Fatalf("consistency %d→%d: tlog=%v merkle=%v", from, size, errA, errB)
		}
	}
}

func bitsLen(n uint64) int {
	b := 0
	for n > 0 {
		b++
		n >>= 1
	}
	return b
}

func TestSearchAndBlocks(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	for i := 0; i < 30; i++ {
		if _, err := l.Record(ctx, revisionFor(i), samplePredicate(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Search(ctx, Query{Revision: "v1.2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Index != 2 || got[1].Index != 15 || got[2].Index != 28 {
		t.Fatalf("search by revision: %v", indexes(got))
	}
	got, _ = l.Search(ctx, Query{Experiment: "exp-3"})
	if len(got) != 4 {
		t.Fatalf("search by experiment: %v", indexes(got))
	}
	got, _ = l.Search(ctx, Query{TraceID: "trace-17"})
	if len(got) != 1 || got[0].Index != 17 {
		t.Fatalf("search by trace id: %v", indexes(got))
	}
	got, _ = l.Search(ctx, Query{TraceID: "trace-shared", Experiment: "exp-0"})
	if len(got) != 5 {
		t.Fatalf("search by trace id and experiment: %v", indexes(got))
	}
	e10, _ := l.Entry(ctx, 10)
	e20, _ := l.Entry(ctx, 20)
	got, _ = l.Search(ctx, Query{Since: e10.Record.Time, Until: e20.Record.Time})
	if len(got) != 10 || got[0].Index != 10 {
		t.Fatalf("search by time: %v", indexes(got))
	}
	bs, err := l.Blocks(ctx, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 5 || bs[0].Height != 29 || bs[0].Size != 30 || bs[1].Hash != bs[0].Prev {
		t.Fatalf("blocks: %+v", bs)
	}
}

func indexes(es []Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

func TestBlobsReferencedAndVerified(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	dir := t.TempDir()
	l := openLedger(t, dir, k)
	ref, err := l.PutBlob("samples", "application/json", []byte(`[1,2,3]`))
	if err != nil {
		t.Fatal(err)
	}
	p := samplePredicate(1)
	p.Blobs = []BlobRef{ref}
	if _, err := l.Record(ctx, "v1", p); err != nil {
		t.Fatal(err)
	}
	// A record referencing a missing blob is refused and nothing is written.
	p2 := samplePredicate(2)
	p2.Blobs = []BlobRef{{Name: "x", Digest: DigestOf([]byte("absent"))}}
	if _, err := l.Record(ctx, "v1", p2); KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "blob") {
		t.Fatalf("missing blob: %v", err)
	}
	if l.Size() != 1 {
		t.Fatalf("size %d after a refused append", l.Size())
	}
	if _, err := l.Verify(ctx, true); err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestOpenDataDirCreatesKeysOnce(t *testing.T) {
	ctx := context.Background()
	dd := t.TempDir()
	l, err := OpenDataDir(ctx, dd, newClock())
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Record(ctx, "sha256:"+strings.Repeat("ab", 32), samplePredicate(1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 0 || r.TreeSize != 1 || len(r.EnvelopeSHA256) != 64 {
		t.Fatalf("receipt %+v", r)
	}
	l.Close()
	fi, err := os.Stat(filepath.Join(dd, KeysSubdir, EvidenceKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	l, err = OpenDataDir(ctx, dd, newClock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 1 {
		t.Fatalf("reopened size %d", l.Size())
	}
}

func TestConcurrentReadersDuringAppends(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			cp, _ := l.Checkpoint(ctx)
			if cp.Size > 0 {
				if _, err := l.InclusionProof(ctx, cp.Size-1, cp.Size); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	appendN(t, l, 200)
	close(done)
	wg.Wait()
}

func TestErrorKinds(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &Error{Kind: KindNotFound, Op: "x"})
	if KindOf(err) != KindNotFound || KindOf(errors.New("plain")) != KindInternal || KindOf(nil) != 0 {
		t.Fatal("KindOf")
	}
}

func TestAppendsRacingCloseAlwaysReturn(t *testing.T) {
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	st, _ := BuildStatement("v1", samplePredicate(1))
	env, _ := k.SignStatement(context.Background(), st)
	var wg sync.WaitGroup
	var ok, closed sync.Map
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				r, err := l.Append(context.Background(), env)
				if err != nil {
					if KindOf(err) != KindUnavailable {
						t.Errorf("append during close: %v", err)
					}
					closed.Store(w, true)
					return
				}
				ok.Store(r.Index, true)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every caller returned: none is left waiting for an answer
	l2, err := Open(context.Background(), l.Dir(), Options{Keys: k})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ok.Range(func(key, _ any) bool {
		if _, err := l2.Entry(context.Background(), key.(uint64)); err != nil {
			t.Errorf("acknowledged entry %d missing after close: %v", key, err)
		}
		return true
	})
}

// TestIndexTail: with IndexBatch 8 the revision, experiment and trace-id
// indexes lag behind the log by up to 8 entries. Search finds every entry
// whether it waits in the tail or is indexed; Verify passes at every
// stage; a writer stopped without Close (a crash) leaves a tail that the
// next Open reloads and a later commit writes; Close writes what waits.
func TestIndexTail(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	dir := t.TempDir()
	clock := newClock()
	open := func(readOnly bool) *Ledger {
		t.Helper()
		opts := Options{Keys: k, Clock: clock, Create: true, IndexBatch: 8}
		if readOnly {
			opts = Options{Public: k.Verifier(), ReadOnly: true}
		}
		l, err := Open(ctx, dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	record := func(l *Ledger, from, to int) {
		t.Helper()
		for i := from; i < to; i++ { // one entry per commit
			if _, err := l.Record(ctx, revisionFor(i), samplePredicate(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(l *Ledger, n int, wantThrough uint64) {
		t.Helper()
		l.mu.RLock()
		through := l.indexedThrough
		l.mu.RUnlock()
		if through != wantThrough {
			t.Fatalf("%d entries: indexed through %d, want %d", n, through, wantThrough)
		}
		var keys int
		if err := l.view(func(tx *bolt.Tx) error {
			return l.ixf.forEachIndexKey(tx.Bucket(bIxTrace), bIxTrace, func(_, _ []byte) error { keys++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		if keys != 2*int(wantThrough) { // trace-i and trace-shared
			t.Fatalf("%d entries indexed: %d trace-id keys, want %d", wantThrough, keys, 2*wantThrough)
		}
		for i := 0; i < n; i++ {
			got, err := l.Search(ctx, Query{TraceID: fmt.Sprintf("trace-%d", i)})
			if err != nil || len(got) != 1 || got[0].Index != uint64(i) {
				t.Fatalf("%d entries: search trace-%d: %v %v", n, i, indexes(got), err)
			}
		}
		for _, q := range []struct {
			q    Query
			want func(i int) bool
		}{
			{Query{Revision: "v1.3"}, func(i int) bool { return revisionFor(i) == "v1.3" }},
			{Query{Experiment: "exp-2"}, func(i int) bool { return i%7 == 2 }},
			{Query{TraceID: "trace-shared"}, func(int) bool { return true }},
		} {
			var want []uint64
			for i := 0; i < n; i++ {
				if q.want(i) {
					want = append(want, uint64(i))
				}
			}
			got, err := l.Search(ctx, q.q)
			if err != nil || !slices.Equal(indexes(got), want) {
				t.Fatalf("%d entries: search %+v: %v, want %v (%v)", n, q.q, indexes(got), want, err)
			}
		}
		if _, err := l.Verify(ctx, false); err != nil {
			t.Fatalf("%d entries: verify: %v", n, err)
		}
	}

	l := open(false)
	record(l, 0, 5)
	check(l, 5, 0)
	record(l, 5, 12) // the commit of entry 7 writes entries 0–7
	check(l, 12, 8)
	// A crash: the writer stops, nothing writes the tail.
	close(l.stop)
	<-l.stopped
	l.once.Do(func() {})
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(false)
	check(l, 12, 8)
	record(l, 12, 16) // the commit of entry 15 writes the reloaded tail with its own
	check(l, 16, 16)
	record(l, 16, 19)
	check(l, 19, 16)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(true)
	check(l, 19, 19)
	l.Close()
	// Close wrote batch 2 in part; the commit that completes it merges.
	l = open(false)
	record(l, 19, 24)
	check(l, 24, 24)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// indexed_through is checked like the rest of the metadata.
	setThrough := func(n uint64) {
		db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kIndexedThrough, u64(n)) }); err != nil {
			t.Fatal(err)
		}
	}
	setThrough(25)
	if _, err := Open(ctx, dir, Options{Public: k.Verifier(), ReadOnly: true}); KindOf(err) != KindTampered || !strings.Contains(err.Error(), "beyond the tree size 24") {
		t.Fatalf("indexed_through past the log: %v", err)
	}
	// Lowered: the indexes hold keys of entries said to wait in the tail.
	setThrough(10)
	l = open(true)
	defer l.Close()
	_, err := l.Verify(ctx, false)
	if KindOf(err) != KindTampered || !strings.Contains(err.Error(), "index ix_revision key") {
		t.Fatalf("indexed_through lowered: %v", err)
	}
}

// TestLedgerWrittenBeforeTraceBatches: a ledger written before the trace
// index was kept in batches and before the indexes could lag (no meta
// trace_index, index_batch or indexed_through; trace keys are the trace id
// ‖ 0x00 ‖ the index) opens,
// verifies, is searched by trace id, and takes new entries in its own
// format.
func TestLedgerWrittenBeforeTraceBatches(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	dir := t.TempDir()
	l := openLedger(t, dir, k)
	for i := 0; i < 10; i++ {
		if _, err := l.Record(ctx, revisionFor(i), samplePredicate(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewrite it as the earlier format had it.
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if string(m.Get(kTraceIndex)) != traceIndexBatched {
			t.Fatalf("a new ledger's trace_index is %q", m.Get(kTraceIndex))
		}
		for _, key := range [][]byte{kTraceIndex, kIndexBatch, kIndexedThrough} {
			if err := m.Delete(key); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bIxTrace); err != nil {
			return err
		}
		ix, err := tx.CreateBucket(bIxTrace)
		if err != nil {
			return err
		}
		for i := 0; i < 10; i++ {
			for _, tr := range samplePredicate(i).TraceIDs {
				if err := ix.Put(ixKey(tr, uint64(i)), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err = Open(ctx, dir, Options{Keys: k, Clock: newClock(), IndexBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.ixf.batchedTraces || l.indexedThrough != 10 {
		t.Fatalf("format %+v, indexed through %d: want plain trace keys, all 10 indexed", l.ixf, l.indexedThrough)
	}
	for i := 10; i < 14; i++ {
		if _, err := l.Record(ctx, revisionFor(i), samplePredicate(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []uint64{3, 12} {
		got, err := l.Search(ctx, Query{TraceID: fmt.Sprintf("trace-%d", i)})
		if err != nil || len(got) != 1 || got[0].Index != i {
			t.Fatalf("search trace-%d: %v %v", i, indexes(got), err)
		}
	}
	if err := l.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bIxTrace).Get(ixKey("trace-12", 12)); v == nil {
			t.Fatal("entry 12's trace key is not in the earlier format")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(ctx, true); err != nil {
		t.Fatal(err)
	}
}
