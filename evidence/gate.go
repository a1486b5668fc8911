package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// RecordedVerdict is the newest verdict the ledger records for a
// revision, with the entry that carries it.
type RecordedVerdict struct {
	// Entry is the ledger entry; Predicate is its signed run evidence, with
	// a decision.
	Entry     Entry
	Predicate *Predicate
	// TreeSize is the size of the signed checkpoint the entry was proven
	// against.
	TreeSize uint64
}

// LatestDecision returns the newest entry for revision (its indexed
// revision or one of its subjects) that records a chaosgate run's verdict:
// chaosgate's own predicate type, not external (`ledger append`), with a
// decision. found is false when there is none.
//
// It reads the log itself, never the indexes: the entries are scanned from
// the newest back, and every entry it read — those it passed over too — is
// proven against the latest signed checkpoint (the hashes of the subtrees
// that hold them are recomputed from the entries, and with the stored
// hashes of the older part they must give the signed root). The answer's
// envelope must match its entry's SHA-256 and carry a valid signature of
// the evidence key. Anything that does not verify is a KindTampered error
// naming it, never an older verdict.
func (l *Ledger) LatestDecision(ctx context.Context, revision string) (RecordedVerdict, bool, error) {
	if revision == "" {
		return RecordedVerdict{}, false, errorf(KindInvalid, "latest decision", "no revision")
	}
	needle, err := json.Marshal(revision)
	if err != nil {
		return RecordedVerdict{}, false, wrap(KindInvalid, "latest decision", err)
	}
	var out RecordedVerdict
	found := false
	err = l.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		cp, err := OpenCheckpoint(append([]byte(nil), m.Get(kCheckpoint)...), l.pub.Checkpoint)
		if err != nil {
			return &Error{Kind: KindTampered, Op: "latest checkpoint", Err: err}
		}
		size, err := metaU64(m, kSize)
		if err != nil {
			return err
		}
		if size != cp.Size {
			return tampered("latest checkpoint", "size %d, the ledger records %d", cp.Size, size)
		}
		out.TreeSize = size
		entries, envs := tx.Bucket(bEntries), tx.Bucket(bEnvelopes)
		// read holds the leaf hashes of the entries scanned, newest first.
		var read []tlog.Hash
		var failure error
		stop := uint64(0)
		for i := size; i > 0; i-- {
			idx := i - 1
			if idx%1024 == 0 && ctx.Err() != nil {
				return wrap(KindUnavailable, "latest decision", ctx.Err())
			}
			leaf, err := getStored(entries, idx, "entry")
			if err != nil {
				return err
			}
			if leaf == nil {
				return tampered(fmt.Sprintf("entry %d", idx), "missing (the signed tree has %d entries)", size)
			}
			read = append(read, tlog.RecordHash(leaf))
			if !bytes.Contains(leaf, needle) {
				continue
			}
			op := fmt.Sprintf("entry %d", idx)
			var rec EntryRecord
			if err := json.Unmarshal(leaf, &rec); err != nil {
				failure, stop = tampered(op, "leaf is not a valid entry record: %v", err), idx
				break
			}
			if rec.Revision != revision && !contains(rec.Subjects, revision) {
				continue
			}
			if rec.External || rec.PredicateType != PredicateType {
				continue
			}
			env, err := getStored(envs, idx, "envelope")
			if err != nil {
				failure, stop = err, idx
				break
			}
			env = append([]byte(nil), env...)
			e := Entry{Index: idx, Record: rec, Leaf: append([]byte(nil), leaf...), LeafHash: read[len(read)-1], Envelope: env}
			p, err := l.decisionOf(ctx, e)
			if err != nil {
				failure, stop = err, idx
				break
			}
			if p == nil {
				continue // evidence of a run that reached no verdict
			}
			out.Entry, out.Predicate, found, stop = e, p, true, idx
			break
		}
		if !found && failure == nil {
			stop = size - uint64(len(read))
		}
		ordered := make([]tlog.Hash, len(read))
		for k, h := range read {
			ordered[len(read)-1-k] = h
		}
		if err := proveRange(tx.Bucket(bHashes), stop, ordered, cp); err != nil {
			return err
		}
		return failure
	})
	if err != nil {
		return RecordedVerdict{}, false, err
	}
	return out, found, nil
}

// decisionOf checks an entry's envelope (its SHA-256 against the leaf, its
// signature against the evidence key) and returns the verdict it records,
// nil when the run reached none.
func (l *Ledger) decisionOf(ctx context.Context, e Entry) (*Predicate, error) {
	op := fmt.Sprintf("envelope %d", e.Index)
	sum := sha256.Sum256(e.Envelope)
	if hex.EncodeToString(sum[:]) != e.Record.EnvelopeSHA256 {
		return nil, tampered(op, "SHA-256 %x does not match %s recorded in entry %d", sum, e.Record.EnvelopeSHA256, e.Index)
	}
	env, err := ParseEnvelope(e.Envelope)
	if err != nil {
		return nil, wrap(KindTampered, op, err)
	}
	info, err := l.pub.VerifyEnvelope(ctx, env)
	if err != nil {
		return nil, wrap(KindTampered, op, err)
	}
	if info.PredicateType != e.Record.PredicateType || info.Experiment != e.Record.Experiment || info.RunID != e.Record.RunID {
		return nil, tampered(fmt.Sprintf("entry %d", e.Index), "indexed fields do not match the signed statement")
	}
	p := info.Predicate
	if p == nil || p.Decision == nil {
		return nil, nil
	}
	switch p.Decision.Verdict {
	case "promote", "hold", "block":
		return p, nil
	}
	return nil, tampered(op, "signed verdict %q is none of promote, hold, block", p.Decision.Verdict)
}

// proveRange checks that the leaves with hashes leaves (indexes from, from+1,
// ...) are the entries the signed checkpoint commits to: the hashes of every
// subtree holding one of them are recomputed from the leaves, those of the
// older part are the stored ones, and together they must give the signed
// root. Editing, dropping or reordering any of these entries, or the stored
// hashes, cannot keep the root.
func proveRange(hashes *bolt.Bucket, from uint64, leaves []tlog.Hash, cp SignedCheckpoint) error {
	size := from + uint64(len(leaves))
	if size != cp.Size {
		return tampered("tree", "%d entries read, the signed tree has %d", size, cp.Size)
	}
	if size == 0 {
		if cp.Root != emptyRoot() {
			return tampered("latest checkpoint", "an empty tree with root %s", cp.Root)
		}
		return nil
	}
	stored := bucketHashReader(hashes)
	overlay := make(map[int64]tlog.Hash, 2*len(leaves))
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			if h, ok := overlay[x]; ok {
				out[j] = h
				continue
			}
			hs, err := stored([]int64{x})
			if err != nil {
				return nil, err
			}
			out[j] = hs[0]
		}
		return out, nil
	})
	for k, h := range leaves {
		n := int64(from) + int64(k)
		hs, err := tlog.StoredHashesForRecordHash(n, h, r)
		if err != nil {
			return wrap(KindTampered, "tree", err)
		}
		base := tlog.StoredHashIndex(0, n)
		for j, x := range hs {
			overlay[base+int64(j)] = x
		}
	}
	root, err := tlog.TreeHash(int64(size), r)
	if err != nil {
		return wrap(KindTampered, "tree", err)
	}
	if root != cp.Root {
		return &Error{Kind: KindTampered, Op: fmt.Sprintf("entries [%d, %d)", from, size),
			Err:  fmt.Errorf("with the stored tree they give root %s, the signed checkpoint of size %d has %s", root, size, cp.Root),
			Hint: "run `chaosgate ledger verify` to find the damaged entry or tree hash"}
	}
	return nil
}
