package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyReport summarises a successful verification.
type VerifyReport struct {
	OK          bool          `json:"ok"`
	FromScratch bool          `json:"from_scratch"`
	Origin      string        `json:"origin"`
	TreeSize    uint64        `json:"tree_size"`
	Root        tlog.Hash     `json:"root"`
	Entries     uint64        `json:"entries"`
	Envelopes   uint64        `json:"envelopes_signature_checked"`
	Blobs       uint64        `json:"blobs"`
	Blocks      uint64        `json:"blocks"`
	Checkpoints uint64        `json:"checkpoints"`
	Keys        string        `json:"keys"`
	Duration    time.Duration `json:"duration_ns"`
	Failure     string        `json:"failure,omitempty"`
}

// Verify checks the whole ledger and returns a *Error of KindTampered whose
// Op names the first entry, envelope, blob, tree hash, block, checkpoint or
// index key that does not verify.
//
// Every run checks: each entry's index, its leaf hash, the SHA-256 of its
// envelope, every referenced blob's digest, every stored tree hash (all of
// them are recomputed from the entries: a damaged interior hash would
// otherwise hand out proofs that do not verify), every block header's
// signature, chain link, data hash, size and root, every checkpoint's
// signature and root, and the search indexes (revision, experiment, trace
// id, time): they are rebuilt from the entries and every key deleted, added
// or edited is named. With fromScratch it also re-verifies every DSSE
// envelope signature (verified once already at append time and bound since
// by its SHA-256 in the signed tree) and that each entry's indexed fields
// match its signed statement.
func (l *Ledger) Verify(ctx context.Context, fromScratch bool) (VerifyReport, error) {
	start := time.Now()
	rep := VerifyReport{FromScratch: fromScratch, Origin: l.pub.Origin, Keys: l.keysSource}
	err := l.view(func(tx *bolt.Tx) error { return l.verifyTx(ctx, tx, fromScratch, &rep) })
	rep.Duration = time.Since(start)
	if err != nil {
		rep.Failure = err.Error()
		return rep, err
	}
	rep.OK = true
	return rep, nil
}

type verifyItem struct {
	i    uint64
	leaf []byte
	env  []byte
}

// indexBuckets are the search indexes Verify rebuilds, in the order it
// checks them.
var indexBuckets = [][]byte{bIxRevision, bIxExp, bIxTrace, bIxTime}

// indexFormat is how a ledger makes its index keys (meta "trace_index" and
// "index_batch").
type indexFormat struct {
	// batch is the ledger's index batch (see Options.IndexBatch).
	batch uint64
	// batchedTraces: the trace index holds one value per index batch (see
	// eachTraceBatchKey), whose records stand for the keys the entries make: the
	// batch number (the entry index / batch, 8 bytes) ‖ the first 8 bytes
	// of the trace id's SHA-256 ‖ the entry index. Without it a trace-id
	// key is the trace id ‖ 0x00 ‖ the entry index, as the revision and
	// experiment keys are, and is stored as such.
	batchedTraces bool
}

// traceRecordSize is the size of one record of a batch's trace-id value:
// 8 bytes of the trace id's SHA-256 ‖ the entry's offset in the batch
// (4 bytes, big-endian). Records are sorted.
const traceRecordSize = 12

// maxIndexBatch bounds Options.IndexBatch (an offset in a batch fits in 4
// bytes).
const maxIndexBatch = 1 << 24

// eachTraceBatchKey calls fn with each key the records of the stored
// trace-id value v of batch key k stand for, in one buffer that fn must
// not keep; an error says what is wrong with the value.
func (f indexFormat) eachTraceBatchKey(k, v []byte, fn func(key []byte) error) error {
	if len(k) != 8 {
		return fmt.Errorf("batch key %x is not 8 bytes", k)
	}
	if len(v)%traceRecordSize != 0 {
		return fmt.Errorf("batch %d: %d bytes of records of %d bytes", binary.BigEndian.Uint64(k), len(v), traceRecordSize)
	}
	n := binary.BigEndian.Uint64(k)
	key := make([]byte, 24)
	copy(key, k)
	for i := 0; i < len(v); i += traceRecordSize {
		r := v[i : i+traceRecordSize]
		if i > 0 && !recordLess(v[i-traceRecordSize:i], r) {
			return fmt.Errorf("batch %d: record %d is out of order (records are sorted and distinct)", n, i/traceRecordSize)
		}
		off := uint64(binary.BigEndian.Uint32(r[8:12]))
		if off >= f.batch {
			return fmt.Errorf("batch %d: a record's offset %d is beyond the batch of %d", n, off, f.batch)
		}
		copy(key[8:16], r[:8])
		binary.BigEndian.PutUint64(key[16:], n*f.batch+off)
		if err := fn(key); err != nil {
			return err
		}
	}
	return nil
}

// recordLess reports whether trace-id record a sorts before record b
// (bytes.Compare(a, b) < 0, compared as two big-endian numbers).
func recordLess(a, b []byte) bool {
	ah, bh := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if ah != bh {
		return ah < bh
	}
	return binary.BigEndian.Uint32(a[8:12]) < binary.BigEndian.Uint32(b[8:12])
}

// forEachIndexKey calls fn with each key of index bucket b and its value:
// for a batched trace index, each key its records stand for (value nil),
// in a buffer fn must not keep.
func (f indexFormat) forEachIndexKey(b *bolt.Bucket, name []byte, fn func(k, v []byte) error) error {
	batched := f.batchedTraces && bytes.Equal(name, bIxTrace)
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil && b.Bucket(k) != nil {
			return tampered(fmt.Sprintf("index %s", name), "holds a nested bucket %q", k)
		}
		if !batched {
			if err := fn(k, v); err != nil {
				return err
			}
			continue
		}
		var fnErr error
		if err := f.eachTraceBatchKey(k, v, func(key []byte) error {
			fnErr = fn(key, nil)
			return fnErr
		}); err != nil {
			if fnErr != nil {
				return fnErr
			}
			return tampered(fmt.Sprintf("index %s", name), "%v", err)
		}
	}
	return nil
}

// traceIndexBatched is meta "trace_index" of ledgers whose trace-id keys
// are batched (all ledgers created since; absent in ledgers written before).
const traceIndexBatched = "batch-sha256-8"

// indexFormatOf reads a ledger's index format from its metadata; batch is
// the index batch of a ledger that records none.
func indexFormatOf(m *bolt.Bucket, batch uint64) (indexFormat, error) {
	switch v := m.Get(kTraceIndex); {
	case v == nil:
		return indexFormat{batch: max(batch, 1)}, nil
	case string(v) == traceIndexBatched:
		n, err := metaU64(m, kIndexBatch)
		if err != nil {
			return indexFormat{}, err
		}
		if n == 0 {
			return indexFormat{}, tampered("ledger metadata", "%q is 0", kIndexBatch)
		}
		return indexFormat{batch: n, batchedTraces: true}, nil
	default:
		return indexFormat{}, tampered("ledger metadata", "%q is %q, want %q", kTraceIndex, v, traceIndexBatched)
	}
}

// tracePrefix is what the trace-id keys of traceID for the entries of index
// batch n start with (n is ignored without batched keys).
func (f indexFormat) tracePrefix(traceID string, n uint64) []byte {
	if f.batchedTraces {
		sum := sha256.Sum256([]byte(traceID))
		return append(u64(n), sum[:8]...)
	}
	return append([]byte(traceID), 0)
}

// indexKeys returns the keys the ledger's writer puts in each index bucket
// (in indexBuckets order) for the entry record rec at index i.
func (f indexFormat) indexKeys(rec *leafFields, i uint64) [4][][]byte {
	return f.entryIndexKeys(rec.Revision, rec.Subjects, rec.Experiment, rec.TraceIDs, rec.Time, i)
}

// entryIndexKeys are the index keys of entry i: one per distinct revision
// and subject name, the experiment, one per distinct trace id, and the
// time. The writer stores exactly these; Verify rebuilds them.
func (f indexFormat) entryIndexKeys(revision string, subjects []string, experiment string, traceIDs []string, t time.Time, i uint64) [4][][]byte {
	var out [4][][]byte
	names := make([]string, 0, 1+len(subjects))
	names = dedup(append(append(names, revision), subjects...))
	out[0] = make([][]byte, 0, len(names))
	for _, rv := range names {
		out[0] = append(out[0], ixKey(rv, i))
	}
	if experiment != "" {
		out[1] = append(out[1], ixKey(experiment, i))
	}
	traces := dedup(traceIDs)
	out[2] = make([][]byte, 0, len(traces))
	if f.batchedTraces {
		// One buffer holds every trace-id key of the entry.
		buf := make([]byte, 0, 24*len(traces))
		for _, tr := range traces {
			if tr != "" {
				sum := sha256.Sum256([]byte(tr))
				buf = binary.BigEndian.AppendUint64(buf, i/f.batch)
				buf = append(buf, sum[:8]...)
				buf = binary.BigEndian.AppendUint64(buf, i)
				out[2] = append(out[2], buf[len(buf)-24:len(buf):len(buf)])
			}
		}
	} else {
		for _, tr := range traces {
			if tr != "" {
				out[2] = append(out[2], binary.BigEndian.AppendUint64(f.tracePrefix(tr, i/f.batch), i))
			}
		}
	}
	out[3] = append(out[3], append(u64(uint64(t.UnixNano())), u64(i)...))
	return out
}

type firstFailure struct {
	mu  sync.Mutex
	idx uint64
	err error
}

func (f *firstFailure) set(i uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil || i < f.idx {
		f.idx, f.err = i, err
	}
}

func (f *firstFailure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func tampered(op, format string, args ...any) error { return errorf(KindTampered, op, format, args...) }

func (l *Ledger) verifyTx(ctx context.Context, tx *bolt.Tx, fromScratch bool, rep *VerifyReport) error {
	m := tx.Bucket(bMeta)
	size, err := metaU64(m, kSize)
	if err != nil {
		return err
	}
	nblocks, err := metaU64(m, kBlocks)
	if err != nil {
		return err
	}
	rep.TreeSize = size
	latest, err := OpenCheckpoint(append([]byte(nil), m.Get(kCheckpoint)...), l.pub.Checkpoint)
	if err != nil {
		return &Error{Kind: KindTampered, Op: "latest checkpoint", Err: err}
	}
	if latest.Size != size {
		return tampered("latest checkpoint", "size %d, the ledger records %d", latest.Size, size)
	}

	through, err := metaIndexedThrough(m, size)
	if err != nil {
		return err
	}
	ixf, err := indexFormatOf(m, 1)
	if err != nil {
		return err
	}
	seed := newKeySetSeed()
	leafHashes, ixWant, err := l.verifyEntries(ctx, tx, size, through, ixf, fromScratch, seed, rep)
	if err != nil {
		return err
	}
	// The tree is recomputed on another CPU while this goroutine (the
	// only one that reads the file) checks the indexes; the index result
	// is reported after the tree, blocks and checkpoints, as before.
	type treeResult struct {
		mem []tlog.Hash
		err error
	}
	treeDone := make(chan treeResult, 1)
	go func() {
		mem, err := treeHashes(leafHashes)
		treeDone <- treeResult{mem, err}
	}()
	ixErr := verifyIndexes(tx, size, through, ixf, seed, ixWant)
	tr := <-treeDone
	if tr.err != nil {
		return tr.err
	}
	root, hr, err := verifyTree(tx, size, tr.mem)
	if err != nil {
		return err
	}
	rep.Root = root
	roots, err := l.verifyBlocks(tx, m, size, nblocks, leafHashes, hr, rep)
	if err != nil {
		return err
	}
	if err := l.verifyCheckpoints(tx, size, roots, hr, rep); err != nil {
		return err
	}
	if latest.Root != root {
		return tampered("latest checkpoint", "root %s, the recomputed tree of size %d has root %s", latest.Root, size, root)
	}
	return ixErr
}

// verifyEntries is pass 1: every entry and envelope, hashed and checked in
// parallel, in index order with none missing; it returns the leaf hashes
// and the seeded hashes of the index keys the entries make (value-index
// keys only for the entries before through: see Options.IndexBatch).
func (l *Ledger) verifyEntries(ctx context.Context, tx *bolt.Tx, size, through uint64, ixf indexFormat, fromScratch bool, seed keySetSeed, rep *VerifyReport) ([]tlog.Hash, [4]keySet, error) {
	var ixWant [4]keySet // the index keys the entries make
	// Pass 1: entries and envelopes, hashed and checked in parallel.
	leafHashes := make([]tlog.Hash, size)
	var fail firstFailure
	var envChecked, blobCount uint64
	var cmu sync.Mutex
	work := make(chan []verifyItem, 4)
	var wg sync.WaitGroup
	// The workers end with pass 1, or when a damaged page makes this
	// goroutine panic (see guard): never left behind.
	var stopOnce sync.Once
	stopWorkers := func() { stopOnce.Do(func() { close(work); wg.Wait() }) }
	defer stopWorkers()
	workers := runtime.GOMAXPROCS(0)
	seenBlobs := sync.Map{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ne, nb uint64
			var ix [4]keySet
			var rd entryReaders
			for chunk := range work {
				for _, it := range chunk {
					rec, err := l.checkEntry(ctx, &rd, it, fromScratch, leafHashes, &seenBlobs, &nb)
					if err != nil {
						fail.set(it.i, err)
						continue
					}
					for b, keys := range ixf.indexKeys(rec, it.i) {
						if b < valueIndexes && it.i >= through {
							continue
						}
						for _, k := range keys {
							ix[b].add(seed, k)
						}
					}
					if fromScratch {
						ne++
					}
				}
			}
			cmu.Lock()
			envChecked += ne
			blobCount += nb
			for b := range ix {
				ixWant[b].merge(ix[b])
			}
			cmu.Unlock()
		}()
	}
	entries := tx.Bucket(bEntries).Cursor()
	// The envelopes are read in step with the entries, by a cursor of
	// their own: a lookup per entry searched the bucket from its root.
	envs := tx.Bucket(bEnvelopes).Cursor()
	ek, ev := envs.First()
	var next uint64
	// The values of a chunk are copied into one buffer (see copyValue).
	const chunkSize, arenaSize = 256, 512 << 10
	chunk := make([]verifyItem, 0, chunkSize)
	arena := make([]byte, 0, arenaSize)
	fileSize := tx.Size()
	var readErr error
	for k, v := entries.First(); k != nil; k, v = entries.Next() {
		if ctx.Err() != nil {
			readErr = wrap(KindUnavailable, "verify", ctx.Err())
			break
		}
		if len(k) != 8 {
			readErr = tampered("entries", "malformed key %x", k)
			break
		}
		i := binary.BigEndian.Uint64(k)
		if i != next {
			readErr = tampered(fmt.Sprintf("entry %d", next), "missing (the next stored entry is %d)", i)
			break
		}
		if i >= size {
			readErr = tampered(fmt.Sprintf("entry %d", i), "beyond the signed tree size %d", size)
			break
		}
		for ek != nil && bytes.Compare(ek, k) < 0 {
			ek, ev = envs.Next()
		}
		if ek == nil || !bytes.Equal(ek, k) || ev == nil {
			readErr = tampered(fmt.Sprintf("envelope %d", i), "missing")
			break
		}
		// The workers get copies made here, where a damaged page that
		// points outside the file is caught (see guard).
		if int64(len(v)) > fileSize {
			readErr = oversizedValue(fmt.Sprintf("entry %d", i), len(v), fileSize)
			break
		}
		if int64(len(ev)) > fileSize {
			readErr = oversizedValue(fmt.Sprintf("envelope %d", i), len(ev), fileSize)
			break
		}
		arena = append(arena, v...)
		leaf := arena[len(arena)-len(v) : len(arena) : len(arena)]
		arena = append(arena, ev...)
		env := arena[len(arena)-len(ev) : len(arena) : len(arena)]
		chunk = append(chunk, verifyItem{i: i, leaf: leaf, env: env})
		if len(chunk) == cap(chunk) {
			work <- chunk
			chunk = make([]verifyItem, 0, chunkSize)
			arena = make([]byte, 0, arenaSize)
		}
		next++
	}
	if len(chunk) > 0 {
		work <- chunk
	}
	stopWorkers()
	if err := fail.get(); err != nil && (readErr == nil || fail.idx < next) {
		return nil, ixWant, err
	}
	if readErr != nil {
		return nil, ixWant, readErr
	}
	if next != size {
		return nil, ixWant, tampered(fmt.Sprintf("entry %d", next), "missing (the signed tree has %d entries)", size)
	}
	rep.Entries = size
	rep.Envelopes = envChecked
	rep.Blobs = blobCount
	return leafHashes, ixWant, nil
}

// treeHashes recomputes every stored hash of the tree of the leaf hashes,
// in stored-hash order. It reads no file: it runs beside the index pass.
func treeHashes(leafHashes []tlog.Hash) ([]tlog.Hash, error) {
	mem := make([]tlog.Hash, 0, tlog.StoredHashCount(int64(len(leafHashes))))
	for i, h := range leafHashes {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), h, memHashReader(mem))
		if err != nil {
			return nil, wrap(KindInternal, "verify", err)
		}
		mem = append(mem, hs...)
	}
	return mem, nil
}

// memHashReader reads the stored hashes computed so far.
func memHashReader(mem []tlog.Hash) tlog.HashReaderFunc {
	return func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			if x >= int64(len(mem)) {
				return nil, fmt.Errorf("hash %d not computed yet", x)
			}
			out[j] = mem[x]
		}
		return out, nil
	}
}

// verifyTree is pass 2: every stored tree hash against mem, the hashes
// treeHashes recomputed, and the root.
func verifyTree(tx *bolt.Tx, size uint64, mem []tlog.Hash) (tlog.Hash, tlog.HashReader, error) {
	// Pass 2: the tree. Every stored hash is compared with the one
	// recomputed from the leaf hashes (treeHashes): tlog.TreeHash reads
	// only the few hashes on the way to the root, so a damaged interior
	// hash would otherwise go unseen until a proof through it failed in an
	// auditor's hands.
	stored := tx.Bucket(bHashes)
	memReader := memHashReader(mem)
	c := stored.Cursor()
	var n int64
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n >= int64(len(mem)) {
			return tlog.Hash{}, nil, tampered("tree hashes", "%d stored hashes, the tree of size %d has %d", n+1, size, len(mem))
		}
		if len(k) != 8 || binary.BigEndian.Uint64(k) != uint64(n) || !bytes.Equal(v, mem[n][:]) {
			level, idx := tlog.SplitStoredHashIndex(n)
			if level == 0 {
				if uint64(idx) >= size {
					return tlog.Hash{}, nil, tampered("tree hashes", "a leaf hash is stored for index %d, beyond the tree size %d", idx, size)
				}
				return tlog.Hash{}, nil, tampered(fmt.Sprintf("entry %d", idx), "leaf hash %s does not match the stored tree hash (entry modified, reordered or replaced)", mem[n])
			}
			return tlog.Hash{}, nil, tampered(fmt.Sprintf("tree hash (level %d, index %d)", level, idx), "stored value does not match the hash recomputed from the entries")
		}
		n++
	}
	if n != int64(len(mem)) {
		level, idx := tlog.SplitStoredHashIndex(n)
		if level == 0 {
			return tlog.Hash{}, nil, tampered(fmt.Sprintf("entry %d", idx), "no stored tree hash")
		}
		return tlog.Hash{}, nil, tampered(fmt.Sprintf("tree hash (level %d, index %d)", level, idx), "missing (%d stored, want %d)", n, len(mem))
	}
	hr := tlog.HashReader(memReader)
	root, err := treeRoot(size, hr)
	if err != nil {
		return tlog.Hash{}, nil, wrap(KindTampered, "tree", err)
	}
	return root, hr, nil
}

// verifyBlocks is pass 3: the block chain (signatures in parallel, then
// heights, links, coverage, data hashes and roots); it returns the
// recomputed roots by tree size.
func (l *Ledger) verifyBlocks(tx *bolt.Tx, m *bolt.Bucket, size, nblocks uint64, leafHashes []tlog.Hash, hr tlog.HashReader, rep *VerifyReport) (map[uint64]tlog.Hash, error) {
	// Pass 3: blocks. Signatures are checked in parallel first.
	blockKeys, blocks, blockErrs, err := openNotes(tx, bBlocks, func(v []byte) (Block, error) {
		return blockFromNote(v, l.pub.Checkpoint, l.pub.Origin)
	})
	if err != nil {
		return nil, err
	}
	var prev tlog.Hash
	var first uint64
	var h uint64
	roots := make(map[uint64]tlog.Hash, len(blockKeys)+1) // recomputed roots by tree size
	roots[0] = emptyRoot()
	for j, key := range blockKeys {
		op := fmt.Sprintf("block %d", h)
		if key != h {
			return nil, tampered(op, "missing (the next stored block is %d)", key)
		}
		b, err := blocks[j], blockErrs[j]
		if err != nil {
			return nil, wrap(KindTampered, op, err)
		}
		switch {
		case b.Height != h:
			return nil, tampered(op, "header says height %d", b.Height)
		case b.Prev != prev:
			return nil, tampered(op, "previous block hash %s, block %d hashes to %s", b.Prev, h-1, prev)
		case b.First != first || b.Count == 0 || b.Size != b.First+b.Count || b.Size > size:
			return nil, tampered(op, "covers entries [%d, %d) with tree size %d, want to start at %d", b.First, b.First+b.Count, b.Size, first)
		case b.DataHash != blockDataHash(leafHashes[b.First:b.Size]):
			return nil, tampered(op, "data hash does not match the leaf hashes of entries [%d, %d)", b.First, b.Size)
		}
		r, err := treeRoot(b.Size, hr)
		if err != nil {
			return nil, wrap(KindTampered, op, err)
		}
		if r != b.Root {
			return nil, tampered(op, "root %s, the recomputed tree of size %d has root %s", b.Root, b.Size, r)
		}
		roots[b.Size] = r
		prev, first = b.Hash, b.Size
		h++
	}
	if h != nblocks {
		return nil, tampered(fmt.Sprintf("block %d", h), "missing (the ledger records %d blocks)", nblocks)
	}
	if first != size {
		return nil, tampered(fmt.Sprintf("block %d", h), "missing: blocks cover %d entries, the tree has %d", first, size)
	}
	if lb := m.Get(kLastBlock); !bytes.Equal(lb, prev[:]) {
		return nil, tampered("ledger metadata", "last block hash does not match block %d", h-1)
	}
	rep.Blocks = h
	return roots, nil
}

// verifyCheckpoints is pass 4: every signed checkpoint against the
// recomputed tree.
func (l *Ledger) verifyCheckpoints(tx *bolt.Tx, size uint64, roots map[uint64]tlog.Hash, hr tlog.HashReader, rep *VerifyReport) error {
	// Pass 4: checkpoints.
	cpKeys, cps, cpErrs, err := openNotes(tx, bCheckpoints, func(v []byte) (SignedCheckpoint, error) {
		return OpenCheckpoint(v, l.pub.Checkpoint)
	})
	if err != nil {
		return err
	}
	for j, n := range cpKeys {
		op := fmt.Sprintf("checkpoint at size %d", n)
		cp, err := cps[j], cpErrs[j]
		if err != nil {
			return wrap(KindTampered, op, err)
		}
		if cp.Size != n || n > size {
			return tampered(op, "note says size %d (tree size %d)", cp.Size, size)
		}
		r, ok := roots[n]
		if !ok {
			if r, err = treeRoot(n, hr); err != nil {
				return wrap(KindTampered, op, err)
			}
		}
		if r != cp.Root {
			return tampered(op, "root %s, the recomputed tree has root %s", cp.Root, r)
		}
		rep.Checkpoints++
	}
	return nil
}

// verifyIndexes is pass 5: the search indexes, rebuilt from the entries.
func verifyIndexes(tx *bolt.Tx, size, through uint64, ixf indexFormat, seed keySetSeed, ixWant [4]keySet) error {
	// Pass 5: the search indexes, rebuilt from the entries. The stored
	// keys and the keys the entries make are compared as keySets (seeded
	// at random for this run, so no change can be made to cancel out); a
	// difference is named by a second, slower pass over the keys
	// themselves.
	for b, name := range indexBuckets {
		got, err := storedIndexKeys(tx.Bucket(name), seed, name, ixf)
		if err != nil {
			return err
		}
		if got != ixWant[b] {
			if b < valueIndexes {
				return nameIndexDifference(tx, name, b, through, ixf)
			}
			return nameIndexDifference(tx, name, b, size, ixf)
		}
	}
	return nil
}

// storedIndexKeys is the keySet of every key of an index bucket; index
// keys carry no value.
func storedIndexKeys(b *bolt.Bucket, seed keySetSeed, name []byte, ixf indexFormat) (keySet, error) {
	var out keySet
	err := ixf.forEachIndexKey(b, name, func(k, v []byte) error {
		if len(v) != 0 {
			return tampered(fmt.Sprintf("index %s key %s", name, ixf.describeIndexKey(name, k)), "has a value (index keys carry none)")
		}
		out.add(seed, k)
		return nil
	})
	return out, err
}

// keySetSeed are the two random seeds of one verify's keySets.
type keySetSeed struct{ a, b maphash.Seed }

func newKeySetSeed() keySetSeed { return keySetSeed{maphash.MakeSeed(), maphash.MakeSeed()} }

// keySet stands for a set of index keys in constant space: their number
// and two sums (mod 2⁶⁴) of their hashes under two seeds drawn at random
// for the verify. Two sets of distinct keys (an index bucket's keys are
// distinct, and so are the keys the entries make) have equal keySets only
// if they are equal, but for a chance of about 2⁻¹²⁸; the seeds are not
// stored anywhere, so no change to the file can be made to cancel out. It
// replaces sorting one hash per key — 20 million at a million entries of
// 20 trace ids — on one CPU, and holding them in memory.
type keySet struct{ n, a, b uint64 }

// add puts key k in the set.
func (s *keySet) add(seed keySetSeed, k []byte) {
	s.n++
	s.a += maphash.Bytes(seed.a, k)
	s.b += maphash.Bytes(seed.b, k)
}

// merge adds the keys of o (disjoint from s's).
func (s *keySet) merge(o keySet) {
	s.n += o.n
	s.a += o.a
	s.b += o.b
}

// nameIndexDifference finds the first index key of bucket name (number b
// of indexBuckets) that none of the first size entries makes (added or
// edited), else the first entry's key that is missing (deleted or edited).
func nameIndexDifference(tx *bolt.Tx, name []byte, b int, size uint64, ixf indexFormat) error {
	want := map[string]uint64{}
	entries := tx.Bucket(bEntries)
	for i := uint64(0); i < size; i++ {
		var rec leafFields
		leaf, err := getStored(entries, i, "entry")
		if err != nil {
			return err
		}
		if err := decodeLeaf(leaf, &rec); err != nil {
			return tampered(fmt.Sprintf("entry %d", i), "leaf is not a valid entry record: %v", err)
		}
		for _, k := range ixf.indexKeys(&rec, i)[b] {
			want[string(k)] = i
		}
	}
	if err := ixf.forEachIndexKey(tx.Bucket(name), name, func(k, _ []byte) error {
		if _, ok := want[string(k)]; !ok {
			return tampered(fmt.Sprintf("index %s key %s", name, ixf.describeIndexKey(name, k)), "matches no entry's record (added or edited)")
		}
		delete(want, string(k))
		return nil
	}); err != nil {
		return err
	}
	var missing string
	first := uint64(0)
	for k, i := range want {
		if missing == "" || i < first || i == first && k < missing {
			missing, first = k, i
		}
	}
	if missing != "" {
		return tampered(fmt.Sprintf("index %s key %s", name, ixf.describeIndexKey(name, []byte(missing))), "is missing (deleted or edited)")
	}
	return tampered(fmt.Sprintf("index %s", name), "does not match the entries")
}

// describeIndexKey renders an index key for people: `"value" → entry N`,
// `time T → entry N` for the time index, `trace-id hash H → entry N` for a
// hashed trace-id key, else hex.
func (f indexFormat) describeIndexKey(bucket, k []byte) string {
	if f.batchedTraces && bytes.Equal(bucket, bIxTrace) {
		if len(k) != 24 {
			return fmt.Sprintf("%x", k)
		}
		return fmt.Sprintf("trace-id hash %x → entry %d", k[8:16], binary.BigEndian.Uint64(k[16:]))
	}
	if bytes.Equal(bucket, bIxTime) {
		if len(k) != 16 {
			return fmt.Sprintf("%x", k)
		}
		t := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC()
		return fmt.Sprintf("time %s → entry %d", t.Format(time.RFC3339Nano), binary.BigEndian.Uint64(k[8:]))
	}
	if len(k) < 9 || k[len(k)-9] != 0 {
		return fmt.Sprintf("%x", k)
	}
	return fmt.Sprintf("%q → entry %d", k[:len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:]))
}

// entryReaders are one verify worker's readers of leaves and envelopes.
type entryReaders struct{ leaf, env storedReader }

// checkEntry checks entry it (its leaf and envelope unpacked with rd),
// records its leaf hash and returns its fields.
func (l *Ledger) checkEntry(ctx context.Context, rd *entryReaders, it verifyItem, fromScratch bool, leafHashes []tlog.Hash, seen *sync.Map, nblobs *uint64) (*leafFields, error) {
	var err error
	if it.leaf, err = rd.leaf.unpack(it.leaf); err != nil {
		return nil, unpackError(err, fmt.Sprintf("entry %d", it.i))
	}
	if it.env, err = rd.env.unpack(it.env); err != nil {
		return nil, unpackError(err, fmt.Sprintf("envelope %d", it.i))
	}
	// The entry's name is made only for an error: it was a tenth of the
	// reader's time.
	op := func() string { return fmt.Sprintf("entry %d", it.i) }
	leafHashes[it.i] = tlog.RecordHash(it.leaf)
	var rec leafFields
	if err := decodeLeaf(it.leaf, &rec); err != nil {
		return nil, tampered(op(), "leaf is not a valid entry record: %v", err)
	}
	if rec.Index != it.i {
		return nil, tampered(op(), "record says index %d (entries reordered or replaced)", rec.Index)
	}
	sum := sha256.Sum256(it.env)
	if hex.EncodeToString(sum[:]) != rec.EnvelopeSHA256 {
		return nil, tampered(fmt.Sprintf("envelope %d", it.i), "SHA-256 %x does not match %s recorded in entry %d", sum, rec.EnvelopeSHA256, it.i)
	}
	if fromScratch {
		env, err := ParseEnvelope(it.env)
		if err != nil {
			return nil, wrap(KindTampered, fmt.Sprintf("envelope %d", it.i), err)
		}
		info, err := l.pub.VerifyEnvelope(ctx, env)
		if err != nil {
			return nil, wrap(KindTampered, fmt.Sprintf("envelope %d", it.i), err)
		}
		if info.Experiment != rec.Experiment || !slices.Equal(info.Subjects, rec.Subjects) || !slices.Equal(info.TraceIDs, rec.TraceIDs) || info.PredicateType != rec.PredicateType {
			return nil, tampered(op(), "indexed fields do not match the signed statement")
		}
		if rec.External && info.PredicateType == PredicateType {
			return nil, tampered(op(), "an external statement of chaosgate's own predicate type")
		}
	}
	for _, d := range rec.Blobs {
		if _, ok := seen.LoadOrStore(d, true); ok {
			continue
		}
		*nblobs++
		if _, err := l.blobs.Get(d); err != nil {
			return nil, blobError(it, d, err)
		}
	}
	return &rec, nil
}

// leafFields are the entry record fields Verify checks and rebuilds the
// indexes from.
type leafFields struct {
	Index          uint64    `json:"index"`
	Time           time.Time `json:"time"`
	Revision       string    `json:"revision"`
	EnvelopeSHA256 string    `json:"envelope_sha256"`
	Blobs          []Digest  `json:"blobs"`
	Experiment     string    `json:"experiment"`
	Subjects       []string  `json:"subjects"`
	TraceIDs       []string  `json:"trace_ids"`
	PredicateType  string    `json:"predicate_type"`
	External       bool      `json:"external"`
}

// openNotes reads every value of bucket name (keys are big-endian uint64),
// copies it and opens it with open on all CPUs, returning keys, results and
// errors in key order.
func openNotes[T any](tx *bolt.Tx, name []byte, open func([]byte) (T, error)) ([]uint64, []T, []error, error) {
	var keys []uint64
	var vals [][]byte
	c := tx.Bucket(name).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			continue
		}
		cp, err := copyValue(tx, fmt.Sprintf("%s %d", name, binary.BigEndian.Uint64(k)), v)
		if err != nil {
			return nil, nil, nil, err
		}
		keys = append(keys, binary.BigEndian.Uint64(k))
		vals = append(vals, cp)
	}
	out := make([]T, len(vals))
	errs := make([]error, len(vals))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := w; j < len(vals); j += workers {
				out[j], errs[j] = open(vals[j])
			}
		}()
	}
	wg.Wait()
	return keys, out, errs, nil
}

// blobError names a blob that does not verify — by the name the entry's
// signed statement gives it, when the envelope says — with its digest, the
// entry, and whether it is missing or its content changed.
func blobError(it verifyItem, d Digest, err error) error {
	what := "blob " + string(d)
	if name := blobNameIn(it.env, d); name != "" {
		what = fmt.Sprintf("blob %s (%s)", name, d)
	}
	op := fmt.Sprintf("%s, entry %d", what, it.i)
	switch KindOf(err) {
	case KindNotFound:
		return &Error{Kind: KindTampered, Op: op, Err: errors.New("missing from the blob store"), Hint: "the signed statement binds this blob by digest; restore it from a backup or an export"}
	case KindTampered:
		return &Error{Kind: KindTampered, Op: op, Err: fmt.Errorf("content does not match its digest (%v)", err)}
	}
	return &Error{Kind: KindTampered, Op: op, Err: err}
}

// blobNameIn returns the name the envelope's predicate gives blob d, or "".
func blobNameIn(envelope []byte, d Digest) string {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return ""
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return ""
	}
	info, err := ParseStatement(payload)
	if err != nil || info.Predicate == nil {
		return ""
	}
	for _, b := range info.Predicate.BlobRefs() {
		if b.Digest == d {
			return b.Name
		}
	}
	return ""
}
