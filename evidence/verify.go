package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
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
// Op names the first entry, envelope, blob, block or checkpoint that does not
// verify.
//
// Every run checks: each entry's index, leaf hash against the stored tree,
// the SHA-256 of its envelope, that the envelope carries the statement the
// entry indexes, every referenced blob's digest, every block header's
// signature, chain link, data hash, size and root, and every checkpoint's
// signature and root against the recomputed tree. With fromScratch it also
// recomputes every interior tree hash from the leaves alone (ignoring the
// stored hashes) and re-verifies every DSSE envelope signature (verified
// once already at append time and bound since by its SHA-256 in the signed
// tree).
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
	size := binary.BigEndian.Uint64(m.Get(kSize))
	nblocks := binary.BigEndian.Uint64(m.Get(kBlocks))
	rep.TreeSize = size
	latest, err := OpenCheckpoint(append([]byte(nil), m.Get(kCheckpoint)...), l.pub.Checkpoint)
	if err != nil {
		return &Error{Kind: KindTampered, Op: "latest checkpoint", Err: err}
	}
	if latest.Size != size {
		return tampered("latest checkpoint", "size %d, the ledger records %d", latest.Size, size)
	}

	// Pass 1: entries and envelopes, hashed and checked in parallel.
	leafHashes := make([]tlog.Hash, size)
	var fail firstFailure
	var envChecked, blobCount uint64
	var cmu sync.Mutex
	work := make(chan []verifyItem, 4)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	seenBlobs := sync.Map{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ne, nb uint64
			for chunk := range work {
				for _, it := range chunk {
					if err := l.checkEntry(ctx, it, fromScratch, leafHashes, &seenBlobs, &nb); err != nil {
						fail.set(it.i, err)
					}
					if fromScratch {
						ne++
					}
				}
			}
			cmu.Lock()
			envChecked += ne
			blobCount += nb
			cmu.Unlock()
		}()
	}
	entries := tx.Bucket(bEntries).Cursor()
	envs := tx.Bucket(bEnvelopes)
	var next uint64
	chunk := make([]verifyItem, 0, 256)
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
		ev := envs.Get(k)
		if ev == nil {
			readErr = tampered(fmt.Sprintf("envelope %d", i), "missing")
			break
		}
		// Slices point into the read transaction's memory map, valid until
		// the workers are done (before this transaction ends).
		chunk = append(chunk, verifyItem{i: i, leaf: v, env: ev})
		if len(chunk) == cap(chunk) {
			work <- chunk
			chunk = make([]verifyItem, 0, 256)
		}
		next++
	}
	if len(chunk) > 0 {
		work <- chunk
	}
	close(work)
	wg.Wait()
	if err := fail.get(); err != nil && (readErr == nil || fail.idx < next) {
		return err
	}
	if readErr != nil {
		return readErr
	}
	if next != size {
		return tampered(fmt.Sprintf("entry %d", next), "missing (the signed tree has %d entries)", size)
	}
	rep.Entries = size
	rep.Envelopes = envChecked
	rep.Blobs = blobCount

	// Pass 2: the tree.
	var hr tlog.HashReader
	stored := tx.Bucket(bHashes)
	if fromScratch {
		mem := make([]tlog.Hash, 0, tlog.StoredHashCount(int64(size)))
		memReader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				if x >= int64(len(mem)) {
					return nil, fmt.Errorf("hash %d not computed yet", x)
				}
				out[j] = mem[x]
			}
			return out, nil
		})
		for i := uint64(0); i < size; i++ {
			hs, err := tlog.StoredHashesForRecordHash(int64(i), leafHashes[i], memReader)
			if err != nil {
				return wrap(KindInternal, "verify", err)
			}
			mem = append(mem, hs...)
		}
		c := stored.Cursor()
		var n int64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n >= int64(len(mem)) {
				return tampered("tree hashes", "%d stored hashes, the tree of size %d has %d", n+1, size, len(mem))
			}
			if binary.BigEndian.Uint64(k) != uint64(n) || !bytes.Equal(v, mem[n][:]) {
				level, idx := tlog.SplitStoredHashIndex(n)
				if level == 0 {
					return tampered(fmt.Sprintf("entry %d", idx), "leaf hash %s does not match the stored tree hash (entry modified, reordered or replaced)", mem[n])
				}
				return tampered(fmt.Sprintf("tree hash (level %d, index %d)", level, idx), "stored value does not match the hash recomputed from the entries")
			}
			n++
		}
		if n != int64(len(mem)) {
			return tampered("tree hashes", "%d stored, want %d", n, len(mem))
		}
		hr = memReader
	} else {
		c := stored.Cursor()
		var leaves uint64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			level, n := tlog.SplitStoredHashIndex(int64(binary.BigEndian.Uint64(k)))
			if level != 0 {
				continue
			}
			if uint64(n) != leaves {
				return tampered(fmt.Sprintf("entry %d", leaves), "no stored tree hash")
			}
			if uint64(n) >= size {
				return tampered("tree hashes", "a leaf hash is stored for index %d, beyond the tree size %d", n, size)
			}
			if !bytes.Equal(v, leafHashes[n][:]) {
				return tampered(fmt.Sprintf("entry %d", n), "leaf hash %s does not match the stored tree hash (entry modified, reordered or replaced)", leafHashes[n])
			}
			leaves++
		}
		if leaves != size {
			return tampered(fmt.Sprintf("entry %d", leaves), "no stored tree hash")
		}
		hr = bucketHashReader(stored)
	}
	root, err := treeRoot(size, hr)
	if err != nil {
		return wrap(KindTampered, "tree", err)
	}
	rep.Root = root

	// Pass 3: blocks. Signatures are checked in parallel first.
	blockKeys, blocks, blockErrs := openNotes(tx.Bucket(bBlocks), func(v []byte) (Block, error) {
		return blockFromNote(v, l.pub.Checkpoint, l.pub.Origin)
	})
	var prev tlog.Hash
	var first uint64
	var h uint64
	roots := make(map[uint64]tlog.Hash, len(blockKeys)+1) // recomputed roots by tree size
	roots[0] = emptyRoot()
	for j, key := range blockKeys {
		op := fmt.Sprintf("block %d", h)
		if key != h {
			return tampered(op, "missing (the next stored block is %d)", key)
		}
		b, err := blocks[j], blockErrs[j]
		if err != nil {
			return wrap(KindTampered, op, err)
		}
		switch {
		case b.Height != h:
			return tampered(op, "header says height %d", b.Height)
		case b.Prev != prev:
			return tampered(op, "previous block hash %s, block %d hashes to %s", b.Prev, h-1, prev)
		case b.First != first || b.Count == 0 || b.Size != b.First+b.Count || b.Size > size:
			return tampered(op, "covers entries [%d, %d) with tree size %d, want to start at %d", b.First, b.First+b.Count, b.Size, first)
		case b.DataHash != blockDataHash(leafHashes[b.First:b.Size]):
			return tampered(op, "data hash does not match the leaf hashes of entries [%d, %d)", b.First, b.Size)
		}
		r, err := treeRoot(b.Size, hr)
		if err != nil {
			return wrap(KindTampered, op, err)
		}
		if r != b.Root {
			return tampered(op, "root %s, the recomputed tree of size %d has root %s", b.Root, b.Size, r)
		}
		roots[b.Size] = r
		prev, first = b.Hash, b.Size
		h++
	}
	if h != nblocks {
		return tampered(fmt.Sprintf("block %d", h), "missing (the ledger records %d blocks)", nblocks)
	}
	if first != size {
		return tampered(fmt.Sprintf("block %d", h), "missing: blocks cover %d entries, the tree has %d", first, size)
	}
	if lb := m.Get(kLastBlock); !bytes.Equal(lb, prev[:]) {
		return tampered("ledger metadata", "last block hash does not match block %d", h-1)
	}
	rep.Blocks = h

	// Pass 4: checkpoints.
	cpKeys, cps, cpErrs := openNotes(tx.Bucket(bCheckpoints), func(v []byte) (SignedCheckpoint, error) {
		return OpenCheckpoint(v, l.pub.Checkpoint)
	})
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
	if latest.Root != root {
		return tampered("latest checkpoint", "root %s, the recomputed tree of size %d has root %s", latest.Root, size, root)
	}
	return nil
}

func (l *Ledger) checkEntry(ctx context.Context, it verifyItem, fromScratch bool, leafHashes []tlog.Hash, seen *sync.Map, nblobs *uint64) error {
	op := fmt.Sprintf("entry %d", it.i)
	leafHashes[it.i] = tlog.RecordHash(it.leaf)
	// Only the fields checked here are decoded; the rest of the record is
	// bound by the leaf hash. Records are written by json.Marshal, so the
	// first unescaped `"index":` and `"envelope_sha256":"` are the top-level
	// fields; the full decoder runs when blobs are referenced, in
	// from-scratch mode, or when the fast path does not match.
	var rec leafFields
	if fromScratch || !rec.fast(it.leaf) {
		if err := json.Unmarshal(it.leaf, &rec); err != nil {
			return tampered(op, "leaf is not a valid entry record: %v", err)
		}
	}
	if rec.Index != it.i {
		return tampered(op, "record says index %d (entries reordered or replaced)", rec.Index)
	}
	sum := sha256.Sum256(it.env)
	if hex.EncodeToString(sum[:]) != rec.EnvelopeSHA256 {
		return tampered(fmt.Sprintf("envelope %d", it.i), "SHA-256 %x does not match %s recorded in entry %d", sum, rec.EnvelopeSHA256, it.i)
	}
	var info *StatementInfo
	if fromScratch {
		env, err := ParseEnvelope(it.env)
		if err != nil {
			return wrap(KindTampered, fmt.Sprintf("envelope %d", it.i), err)
		}
		if info, err = l.pub.VerifyEnvelope(ctx, env); err != nil {
			return wrap(KindTampered, fmt.Sprintf("envelope %d", it.i), err)
		}
		if info.Experiment != rec.Experiment || !slices.Equal(info.Subjects, rec.Subjects) || !slices.Equal(info.TraceIDs, rec.TraceIDs) || info.PredicateType != rec.PredicateType {
			return tampered(op, "indexed fields do not match the signed statement")
		}
	}
	for _, d := range rec.Blobs {
		if _, ok := seen.LoadOrStore(d, true); ok {
			continue
		}
		*nblobs++
		if _, err := l.blobs.Get(d); err != nil {
			return &Error{Kind: KindTampered, Op: fmt.Sprintf("blob %s (entry %d)", d, it.i), Err: err}
		}
	}
	return nil
}

// leafFields are the entry record fields Verify checks.
type leafFields struct {
	Index          uint64   `json:"index"`
	EnvelopeSHA256 string   `json:"envelope_sha256"`
	Blobs          []Digest `json:"blobs"`
	Experiment     string   `json:"experiment"`
	Subjects       []string `json:"subjects"`
	TraceIDs       []string `json:"trace_ids"`
	PredicateType  string   `json:"predicate_type"`
}

var (
	keyIndex  = []byte(`,"index":`)
	keyEnvSum = []byte(`,"envelope_sha256":"`)
	keyBlobs  = []byte(`"blobs":`)
)

// fast extracts index and envelope_sha256 without a JSON decoder; it reports
// false when the record references blobs or does not have the expected shape.
func (f *leafFields) fast(leaf []byte) bool {
	if !bytes.HasPrefix(leaf, []byte(`{"v":1`)) || !bytes.HasSuffix(leaf, []byte("}")) || bytes.Contains(leaf, keyBlobs) {
		return false
	}
	i := bytes.Index(leaf, keyIndex)
	if i < 0 {
		return false
	}
	rest := leaf[i+len(keyIndex):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 20 || n >= len(rest) || rest[n] != ',' || (n > 1 && rest[0] == '0') {
		return false
	}
	idx, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil {
		return false
	}
	j := bytes.Index(leaf, keyEnvSum)
	if j < 0 || j+len(keyEnvSum)+65 > len(leaf) || leaf[j+len(keyEnvSum)+64] != '"' {
		return false
	}
	f.Index = idx
	f.EnvelopeSHA256 = string(leaf[j+len(keyEnvSum) : j+len(keyEnvSum)+64])
	return true
}

// openNotes reads every value of b (keys are big-endian uint64) and opens it
// with open on all CPUs, returning keys, results and errors in key order.
func openNotes[T any](b *bolt.Bucket, open func([]byte) (T, error)) ([]uint64, []T, []error) {
	var keys []uint64
	var vals [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			continue
		}
		keys = append(keys, binary.BigEndian.Uint64(k))
		vals = append(vals, v)
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
				out[j], errs[j] = open(append([]byte(nil), vals[j]...))
			}
		}()
	}
	wg.Wait()
	return keys, out, errs
}
