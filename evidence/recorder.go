package evidence

import (
	"context"
	"fmt"
	"path/filepath"
)

// Data-dir layout of the embedded default.
const (
	KeysSubdir   = "keys"
	LedgerSubdir = "ledger"
)

// OpenDataDir opens the ledger of the embedded default under dataDir
// (dataDir/ledger, signed with the keys in dataDir/keys), creating the keys
// and the ledger on first use so a fresh machine works without setup.
func OpenDataDir(ctx context.Context, dataDir string, clock Clock) (*Ledger, error) {
	keys, _, err := LoadOrGenerateKeys(filepath.Join(dataDir, KeysSubdir), DefaultOrigin)
	if err != nil {
		return nil, err
	}
	return Open(ctx, filepath.Join(dataDir, LedgerSubdir), Options{Keys: keys, Clock: clock, Create: true})
}

// PutBlob stores raw evidence (samples, trace ids, log fragments) and returns
// the reference to put in a Predicate.
func (l *Ledger) PutBlob(name, mediaType string, data []byte) (BlobRef, error) {
	d, err := l.blobs.Put(data)
	if err != nil {
		return BlobRef{}, err
	}
	return BlobRef{Name: name, MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// Record builds the in-toto statement of a run of revision with predicate p,
// signs it into a DSSE envelope with the evidence key and appends it. The
// receipt gives the ledger index, the tree size and the envelope SHA-256.
// Aliases are further subjects: the gate answers for each of them too.
func (l *Ledger) Record(ctx context.Context, revision string, p *Predicate, aliases ...string) (Receipt, error) {
	if l.keys == nil {
		return Receipt{}, errorf(KindInvalid, "record", "the ledger has no signing keys")
	}
	st, err := BuildStatement(revision, p, aliases...)
	if err != nil {
		return Receipt{}, err
	}
	env, err := l.keys.SignStatement(ctx, st)
	if err != nil {
		return Receipt{}, err
	}
	return l.AppendRevision(ctx, env, revision)
}

// SignAndAppend signs an externally produced in-toto statement with the
// evidence key and appends it under revision, marked external: it is proven
// like every entry but never answers a gate. A statement of chaosgate's own
// predicate type is refused: only a run records a verdict.
func (l *Ledger) SignAndAppend(ctx context.Context, statement []byte, revision string) (Receipt, error) {
	if l.keys == nil {
		return Receipt{}, errorf(KindInvalid, "append", "the ledger has no signing keys")
	}
	if info, err := ParseStatement(statement); err == nil && info.PredicateType == PredicateType {
		return Receipt{}, &Error{Kind: KindInvalid, Op: "append", Err: fmt.Errorf("predicate type %s is chaosgate's own run evidence: only a chaosgate run records it", PredicateType),
			Hint: "give external evidence its own predicate type, e.g. https://example.com/ci/v1"}
	}
	if revision != "" {
		if _, err := SubjectFor(revision); err != nil {
			return Receipt{}, err
		}
	}
	env, err := l.keys.SignStatement(ctx, statement)
	if err != nil {
		return Receipt{}, err
	}
	return l.appendEnvelope(ctx, env, revision, true)
}
