package evidence

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

func (l *Ledger) view(fn func(tx *bolt.Tx) error) error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return errorf(KindUnavailable, "ledger", "closed")
	}
	return guard("read ledger", func() error { return l.db.View(fn) })
}

// Checkpoint returns the latest signed checkpoint.
func (l *Ledger) Checkpoint(ctx context.Context) (SignedCheckpoint, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cp, nil
}

// CheckpointAt returns the signed checkpoint of tree size n. Every append
// batch signs one; sizes between batches have none.
func (l *Ledger) CheckpointAt(ctx context.Context, n uint64) (SignedCheckpoint, error) {
	var msg []byte
	err := l.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bCheckpoints).Get(u64(n))
		if v == nil {
			c := tx.Bucket(bCheckpoints).Cursor()
			k, _ := c.Seek(u64(n))
			hint := "sizes with checkpoints are the ends of append batches; see `chaosgate ledger show --block H`"
			if k != nil {
				hint = fmt.Sprintf("the next checkpointed size is %d", binary.BigEndian.Uint64(k))
			}
			return &Error{Kind: KindNotFound, Op: "checkpoint", Err: fmt.Errorf("no signed checkpoint of tree size %d", n), Hint: hint}
		}
		msg = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return SignedCheckpoint{}, err
	}
	return OpenCheckpoint(msg, l.pub.Checkpoint)
}

// Entry returns entry i.
func (l *Ledger) Entry(ctx context.Context, i uint64) (Entry, error) {
	var e Entry
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		e, err = readEntry(tx, i)
		return err
	})
	return e, err
}

func readEntry(tx *bolt.Tx, i uint64) (Entry, error) {
	size, err := metaU64(tx.Bucket(bMeta), kSize)
	if err != nil {
		return Entry{}, err
	}
	leaf, err := getStored(tx.Bucket(bEntries), i, "entry")
	if err != nil {
		return Entry{}, err
	}
	if leaf == nil || i >= size {
		return Entry{}, &Error{Kind: KindNotFound, Op: fmt.Sprintf("entry %d", i), Err: fmt.Errorf("not in the ledger (tree size %d)", size)}
	}
	e := Entry{Index: i, Leaf: append([]byte(nil), leaf...), LeafHash: tlog.RecordHash(leaf)}
	if err := json.Unmarshal(leaf, &e.Record); err != nil {
		return e, wrap(KindTampered, fmt.Sprintf("entry %d", i), err)
	}
	if e.Record.Index != i {
		return e, tampered(fmt.Sprintf("entry %d", i), "record says index %d (entries reordered or replaced)", e.Record.Index)
	}
	env, err := getStored(tx.Bucket(bEnvelopes), i, "envelope")
	if err != nil {
		return e, err
	}
	e.Envelope = append([]byte(nil), env...)
	return e, nil
}

// InclusionProof proves entry i in the tree of size size.
func (l *Ledger) InclusionProof(ctx context.Context, i, size uint64) ([][]byte, error) {
	cur := l.Size()
	if size == 0 || size > cur || i >= size {
		return nil, errorf(KindInvalid, "inclusion proof", "entry %d in a tree of size %d: need index < size ≤ %d", i, size, cur)
	}
	var p tlog.RecordProof
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		p, err = tlog.ProveRecord(int64(size), int64(i), bucketHashReader(tx.Bucket(bHashes)))
		return err
	})
	if err != nil {
		return nil, wrap(KindTampered, "inclusion proof", err)
	}
	return hashesToBytes(p), nil
}

// ConsistencyProof proves the tree of size from is a prefix of the tree of
// size to.
func (l *Ledger) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	cur := l.Size()
	if from == 0 || from > to || to > cur {
		return nil, errorf(KindInvalid, "consistency proof", "from %d to %d: need 0 < from ≤ to ≤ %d", from, to, cur)
	}
	var p tlog.TreeProof
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		p, err = tlog.ProveTree(int64(to), int64(from), bucketHashReader(tx.Bucket(bHashes)))
		return err
	})
	if err != nil {
		return nil, wrap(KindTampered, "consistency proof", err)
	}
	return hashesToBytes(p), nil
}

// TreeRoot returns the root of the tree of size n, computed from stored hashes.
func (l *Ledger) TreeRoot(ctx context.Context, n uint64) (tlog.Hash, error) {
	if n > l.Size() {
		return tlog.Hash{}, errorf(KindInvalid, "tree root", "size %d is beyond the tree size %d", n, l.Size())
	}
	var h tlog.Hash
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		h, err = treeRoot(n, bucketHashReader(tx.Bucket(bHashes)))
		return err
	})
	return h, err
}

// TlogProof builds the c2sp.org/tlog-proof@v1 of entry i against the signed
// checkpoint of tree size size (0: the latest).
func (l *Ledger) TlogProof(ctx context.Context, i, size uint64) (*TlogProof, error) {
	var cp SignedCheckpoint
	var err error
	if size == 0 {
		cp, err = l.Checkpoint(ctx)
	} else {
		cp, err = l.CheckpointAt(ctx, size)
	}
	if err != nil {
		return nil, err
	}
	p, err := l.InclusionProof(ctx, i, cp.Size)
	if err != nil {
		return nil, err
	}
	hs, err := BytesToHashes(p)
	if err != nil {
		return nil, err
	}
	// The proof is checked before anyone is handed it: a damaged stored
	// tree must not turn into a proof that an auditor's tool rejects.
	var leaf []byte
	err = l.view(func(tx *bolt.Tx) error {
		v, err := getStored(tx.Bucket(bEntries), i, "entry")
		leaf = append([]byte(nil), v...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := tlog.CheckRecord(tlog.RecordProof(hs), int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(leaf)); err != nil {
		return nil, &Error{Kind: KindTampered, Op: fmt.Sprintf("inclusion proof of entry %d", i),
			Err: fmt.Errorf("does not verify against the signed checkpoint of size %d: %v", cp.Size, err), Hint: "run `chaosgate ledger verify` to find the damaged entry or tree hash"}
	}
	return &TlogProof{Index: i, Hashes: hs, Checkpoint: cp.Note}, nil
}

// Block returns block h.
func (l *Ledger) Block(ctx context.Context, h uint64) (Block, error) {
	var b Block
	err := l.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bBlocks).Get(u64(h))
		if v == nil {
			n, err := metaU64(tx.Bucket(bMeta), kBlocks)
			if err != nil {
				return err
			}
			return errorf(KindNotFound, fmt.Sprintf("block %d", h), "not in the ledger (%d blocks)", n)
		}
		var err error
		b, err = blockFromNote(append([]byte(nil), v...), l.pub.Checkpoint, l.pub.Origin)
		if err != nil {
			return wrap(KindTampered, fmt.Sprintf("block %d", h), err)
		}
		return nil
	})
	return b, err
}

// Blocks returns up to limit blocks, newest first, starting below height
// before (0: from the newest).
func (l *Ledger) Blocks(ctx context.Context, before uint64, limit int) ([]Block, error) {
	if limit <= 0 {
		limit = 20
	}
	var out []Block
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bBlocks).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			k, v = c.Seek(u64(before))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			b, err := blockFromNote(append([]byte(nil), v...), l.pub.Checkpoint, l.pub.Origin)
			if err != nil {
				return wrap(KindTampered, fmt.Sprintf("block %d", binary.BigEndian.Uint64(k)), err)
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// Query selects entries. Empty fields do not constrain.
type Query struct {
	Revision   string
	Experiment string
	TraceID    string
	Since      time.Time
	Until      time.Time // exclusive
	Limit      int       // default 100
}

// Search returns the newest q.Limit entries matching q, in index order
// (oldest first). The revision, experiment and trace id indexes select the
// candidates, and every candidate's record is checked against q, so an
// index key that names the wrong entry finds nothing; `ledger verify`
// rebuilds the indexes from the entries and names a key that was deleted,
// added or edited. Gates do not read the indexes (see LatestDecision).
func (l *Ledger) Search(ctx context.Context, q Query) ([]Entry, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []Entry
	err := l.view(func(tx *bolt.Tx) error {
		var cands []uint64
		var err error
		switch {
		case q.Revision != "":
			cands, err = scanIndexAndTail(tx, bIxRevision, valuePrefix(q.Revision), func(r *leafFields) bool { return r.Revision == q.Revision || contains(r.Subjects, q.Revision) })
		case q.Experiment != "":
			cands, err = scanIndexAndTail(tx, bIxExp, valuePrefix(q.Experiment), func(r *leafFields) bool { return r.Experiment == q.Experiment })
		case q.TraceID != "":
			ixf := l.ixf
			indexed := func(b *bolt.Bucket, through uint64) []uint64 {
				if !ixf.batchedTraces {
					return scanIndex(b, ixf.tracePrefix(q.TraceID, 0))
				}
				return scanTraceBatches(b, ixf, q.TraceID, through)
			}
			cands, err = scanIndexAndTail(tx, bIxTrace, indexed, func(r *leafFields) bool { return contains(r.TraceIDs, q.TraceID) })
		default:
			c := tx.Bucket(bIxTime).Cursor()
			var k []byte
			if q.Since.IsZero() {
				k, _ = c.First()
			} else {
				k, _ = c.Seek(u64(uint64(q.Since.UnixNano())))
			}
			for ; k != nil; k, _ = c.Next() {
				if len(k) != 16 {
					continue
				}
				if !q.Until.IsZero() && int64(binary.BigEndian.Uint64(k[:8])) >= q.Until.UnixNano() {
					break
				}
				cands = append(cands, binary.BigEndian.Uint64(k[8:]))
			}
		}
		if err != nil {
			return err
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i] > cands[j] })
		var last uint64
		for n, i := range cands {
			if n > 0 && i == last {
				continue
			}
			last = i
			if ctx.Err() != nil {
				return wrap(KindUnavailable, "search", ctx.Err())
			}
			e, err := readEntry(tx, i)
			if KindOf(err) == KindNotFound {
				continue // an index key past the tree: verify names it
			}
			if err != nil {
				return err
			}
			if !matches(e.Record, q) {
				continue
			}
			out = append(out, e)
			if len(out) >= q.Limit {
				break
			}
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// scanIndexAndTail returns the entries the value index bucket lists (as
// indexed finds them, given the number of entries indexed) and those of
// the index tail (the newest entries, not yet in the indexes:
// see Options.IndexBatch) whose record matches. A tail leaf that does not
// decode is a candidate too, so that reading it reports the damage.
func scanIndexAndTail(tx *bolt.Tx, bucket []byte, indexed func(b *bolt.Bucket, through uint64) []uint64, match func(*leafFields) bool) ([]uint64, error) {
	m := tx.Bucket(bMeta)
	size, err := metaU64(m, kSize)
	if err != nil {
		return nil, err
	}
	through, err := metaIndexedThrough(m, size)
	if err != nil {
		return nil, err
	}
	cands := indexed(tx.Bucket(bucket), through)
	entries := tx.Bucket(bEntries)
	for i := through; i < size; i++ {
		leaf, err := getStored(entries, i, "entry")
		if err != nil {
			return nil, err
		}
		var rec leafFields
		if leaf == nil || decodeLeaf(leaf, &rec) != nil || match(&rec) {
			cands = append(cands, i)
		}
	}
	return cands, nil
}

// valuePrefix finds a revision's or an experiment's entries in its index:
// its keys are the value ‖ 0x00 ‖ the entry index.
func valuePrefix(v string) func(*bolt.Bucket, uint64) []uint64 {
	return func(b *bolt.Bucket, _ uint64) []uint64 { return scanIndex(b, append([]byte(v), 0)) }
}

// scanTraceBatches finds a trace id's entries in a batched trace index: a
// binary search of each batch's sorted records for the trace id's hash. A
// damaged batch value finds nothing (verify names it).
func scanTraceBatches(b *bolt.Bucket, ixf indexFormat, traceID string, through uint64) []uint64 {
	h := ixf.tracePrefix(traceID, 0)[8:] // the trace id's hash, after the batch number
	var out []uint64
	for n := uint64(0); n*ixf.batch < through; n++ {
		v := b.Get(u64(n))
		if len(v)%traceRecordSize != 0 {
			continue
		}
		records := len(v) / traceRecordSize
		i := sort.Search(records, func(i int) bool { return bytes.Compare(v[i*traceRecordSize:i*traceRecordSize+8], h) >= 0 })
		for ; i < records && bytes.Equal(v[i*traceRecordSize:i*traceRecordSize+8], h); i++ {
			out = append(out, n*ixf.batch+uint64(binary.BigEndian.Uint32(v[i*traceRecordSize+8:])))
		}
	}
	return out
}

func scanIndex(b *bolt.Bucket, prefix []byte) []uint64 {
	var out []uint64
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Next() {
		out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
	}
	return out
}

func matches(r EntryRecord, q Query) bool {
	if q.Revision != "" && r.Revision != q.Revision && !contains(r.Subjects, q.Revision) {
		return false
	}
	if q.Experiment != "" && r.Experiment != q.Experiment {
		return false
	}
	if q.TraceID != "" && !contains(r.TraceIDs, q.TraceID) {
		return false
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !r.Time.Before(q.Until) {
		return false
	}
	return true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
