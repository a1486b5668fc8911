package evidence

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Clock tells the ledger the time to stamp on entries and blocks.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// LedgerAPI is the ledger contract shared by the embedded bbolt ledger and
// the Fabric backend.
type LedgerAPI interface {
	Append(ctx context.Context, env *Envelope) (Receipt, error)
	Entry(ctx context.Context, i uint64) (Entry, error)
	Checkpoint(ctx context.Context) (SignedCheckpoint, error)
	InclusionProof(ctx context.Context, i, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
}

// Receipt is what an append returns: where the record landed and a proof of
// it against the checkpoint signed in the same transaction.
type Receipt struct {
	Index          uint64           `json:"ledger_index"`
	TreeSize       uint64           `json:"tree_size"`
	LeafHash       tlog.Hash        `json:"leaf_hash"`
	EnvelopeSHA256 string           `json:"envelope_sha256"`
	Block          uint64           `json:"block"`
	Checkpoint     SignedCheckpoint `json:"-"`
	Proof          [][]byte         `json:"-"`
}

// EntryRecord is the leaf of the Merkle tree: the JSON bytes hashed as
// SHA-256(0x00 ‖ leaf). It binds the envelope by its SHA-256 and carries
// what the indexes are built from.
type EntryRecord struct {
	V              int       `json:"v"`
	Index          uint64    `json:"index"`
	Time           time.Time `json:"time"`
	Revision       string    `json:"revision"`
	Subjects       []string  `json:"subjects,omitempty"`
	Experiment     string    `json:"experiment,omitempty"`
	RunID          string    `json:"run_id,omitempty"`
	TraceIDs       []string  `json:"trace_ids,omitempty"`
	PredicateType  string    `json:"predicate_type"`
	EnvelopeSHA256 string    `json:"envelope_sha256"`
	Blobs          []Digest  `json:"blobs,omitempty"`
	// External marks a statement signed on behalf of someone else (`chaosgate
	// ledger append`, CI evidence): it is kept and proven like any entry but
	// never answers a gate.
	External bool `json:"external,omitempty"`
}

// Entry is one ledger entry: its leaf bytes, leaf hash and envelope.
type Entry struct {
	Index    uint64      `json:"index"`
	Record   EntryRecord `json:"record"`
	Leaf     []byte      `json:"-"`
	LeafHash tlog.Hash   `json:"leaf_hash"`
	Envelope []byte      `json:"-"`
}

// Options configure Open.
type Options struct {
	// Keys sign new entries, checkpoints and blocks. Required to create or
	// append; a read-only ledger may leave it nil.
	Keys *Keys
	// Public verifies; defaults to Keys' public half, else the keys recorded
	// in the ledger itself (then Verify says so).
	Public *PublicKeys
	// Clock stamps entries and blocks (default SystemClock).
	Clock Clock
	// ReadOnly opens the database without the write lock.
	ReadOnly bool
	// MaxBatch bounds how many appends share one transaction (default 1024).
	MaxBatch int
	// Create allows creating a new ledger when dir holds none.
	Create bool
	// IndexBatch, for a new ledger, is how many entries the revision,
	// experiment and trace-id indexes are written for at a time (default
	// 4096; the ledger records it). The keys of each whole batch of
	// entries are written in one sorted pass once the log holds the batch,
	// the rest on Close; until then Search reads the waiting entries'
	// leaves. 1 indexes every entry in its own commit.
	IndexBatch int
}

// Ledger is the embedded evidence ledger: an RFC 6962 Merkle log in bbolt.
// Appends from concurrent callers are grouped into one transaction each
// (group commit). Safe for concurrent use.
type Ledger struct {
	dir        string
	db         *bolt.DB
	keys       *Keys
	pub        *PublicKeys
	keysSource string
	blobs      *BlobStore
	clock      Clock
	maxBatch   int
	ixf        indexFormat
	// indexTail holds the revision, experiment and trace-id index keys of
	// the entries from indexedThrough to size, not yet written to their
	// indexes, one element per entry. Only the writer touches it.
	indexTail []entryIndexKeys

	reqs    chan *appendReq
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu   sync.RWMutex
	size uint64
	// indexedThrough is how many entries have their revision, experiment
	// and trace-id keys in the indexes (meta "indexed_through").
	indexedThrough uint64
	blocks         uint64
	lastBlock      tlog.Hash
	cp             SignedCheckpoint
	closed         bool
}

type appendReq struct {
	envBytes []byte
	stored   []byte // envBytes as stored (packEnvelope), made by the caller's goroutine
	info     *StatementInfo
	revision string
	external bool
	resp     chan appendResp
}

type appendResp struct {
	r   Receipt
	err error
}

var (
	bMeta        = []byte("meta")
	bEntries     = []byte("entries")
	bEnvelopes   = []byte("envelopes")
	bHashes      = []byte("hashes")
	bBlocks      = []byte("blocks")
	bCheckpoints = []byte("checkpoints")
	bIxRevision  = []byte("ix_revision")
	bIxExp       = []byte("ix_experiment")
	bIxTrace     = []byte("ix_trace")
	bIxTime      = []byte("ix_time")
	allBuckets   = [][]byte{bMeta, bEntries, bEnvelopes, bHashes, bBlocks, bCheckpoints, bIxRevision, bIxExp, bIxTrace, bIxTime}

	kVersion    = []byte("version")
	kOrigin     = []byte("origin")
	kVKey       = []byte("checkpoint_vkey")
	kEvPub      = []byte("evidence_pub")
	kSize       = []byte("size")
	kBlocks     = []byte("blocks")
	kCheckpoint = []byte("checkpoint")
	kLastBlock  = []byte("last_block_hash")
	// kIndexedThrough: entries [0, n) have their revision, experiment and
	// trace-id keys in the indexes. Absent (ledgers written before the
	// indexes could lag): all of them.
	kIndexedThrough = []byte("indexed_through")
	// kTraceIndex: how trace-id keys are made (see indexFormat).
	kTraceIndex = []byte("trace_index")
	// kIndexBatch: the ledger's index batch (see Options.IndexBatch).
	kIndexBatch = []byte("index_batch")
)

// valueIndexes is how many of indexBuckets are keyed by a value (revision,
// experiment, trace id) and so may lag behind the log; the time index,
// whose keys arrive in order, never does.
const valueIndexes = 3

// defaultIndexBatch is Options.IndexBatch's default.
const defaultIndexBatch = 4096

// DBFile is the bbolt file inside a ledger directory; blobs live in BlobDir.
const (
	DBFile  = "ledger.db"
	BlobDir = "blobs"
)

// Open opens the ledger in dir. With opts.Create it creates a new ledger for
// opts.Keys' origin when dir holds none. A ledger created for another origin
// or key is refused. The tree root is recomputed from the stored hashes and
// checked against the last signed checkpoint.
func Open(_ context.Context, dir string, opts Options) (*Ledger, error) {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.IndexBatch <= 0 {
		opts.IndexBatch = defaultIndexBatch
	}
	if opts.IndexBatch > maxIndexBatch {
		return nil, errorf(KindInvalid, "open ledger", "index batch %d is more than %d", opts.IndexBatch, maxIndexBatch)
	}
	dbPath := filepath.Join(dir, DBFile)
	_, statErr := os.Stat(dbPath)
	exists := statErr == nil
	if !exists {
		if !opts.Create || opts.ReadOnly {
			return nil, &Error{Kind: KindNotFound, Op: "open ledger", Err: fmt.Errorf("no ledger at %s", dir), Hint: "pass --ledger DIR of an existing ledger, or append evidence first"}
		}
		if opts.Keys == nil {
			return nil, &Error{Kind: KindInvalid, Op: "create ledger", Err: errors.New("signing keys are required"), Hint: "create keys with `chaosgate keygen --dir DIR`"}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, wrap(KindUnavailable, "create ledger", err)
		}
	}
	if !opts.ReadOnly && opts.Keys == nil {
		return nil, &Error{Kind: KindInvalid, Op: "open ledger", Err: errors.New("signing keys are required to append"), Hint: "pass --keys DIR, or open read-only"}
	}
	// The freelist is rebuilt on open instead of being written on every
	// commit: less I/O per durable commit, same durability.
	bo := &bolt.Options{Timeout: 3 * time.Second, ReadOnly: opts.ReadOnly, NoFreelistSync: true, FreelistType: bolt.FreelistMapType, PageSize: ledgerPageSize}
	var db *bolt.DB
	err := guard("open ledger "+dbPath, func() error {
		var err error
		db, err = bolt.Open(dbPath, 0o600, bo)
		return err
	})
	if err != nil {
		if KindOf(err) == KindTampered {
			return nil, err
		}
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, &Error{Kind: KindUnavailable, Op: "open ledger", Err: fmt.Errorf("%s is locked by another process", dbPath), Hint: "stop the process that is appending, or retry"}
		}
		return nil, wrap(KindUnavailable, "open ledger "+dbPath, err)
	}
	l := &Ledger{dir: dir, db: db, keys: opts.Keys, clock: opts.Clock, maxBatch: opts.MaxBatch}
	if err := guard("open ledger", func() error { return l.init(opts, !exists) }); err != nil {
		_ = db.Close()
		if !exists {
			_ = os.Remove(dbPath)
		}
		return nil, err
	}
	bs, err := NewBlobStore(filepath.Join(dir, BlobDir))
	if err != nil && !opts.ReadOnly {
		_ = db.Close()
		return nil, err
	}
	if bs == nil {
		bs = &BlobStore{dir: filepath.Join(dir, BlobDir)}
	}
	l.blobs = bs
	if !opts.ReadOnly {
		if err := guard("open ledger: index tail", l.loadIndexTail); err != nil {
			_ = db.Close()
			return nil, err
		}
		l.reqs = make(chan *appendReq, opts.MaxBatch)
		l.stop = make(chan struct{})
		l.stopped = make(chan struct{})
		go l.writer()
	}
	return l, nil
}

func (l *Ledger) init(opts Options, create bool) error {
	if create {
		k := opts.Keys
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			m := tx.Bucket(bMeta)
			cp, err := SignCheckpoint(Checkpoint{Origin: k.Info.Origin, Size: 0, Root: emptyRoot()}, k.cpSigner)
			if err != nil {
				return err
			}
			for _, kv := range [][2][]byte{
				{kVersion, []byte("1")}, {kOrigin, []byte(k.Info.Origin)}, {kVKey, []byte(k.Info.CheckpointVerify)},
				{kEvPub, k.EvidencePublicPEM()}, {kSize, u64(0)}, {kBlocks, u64(0)}, {kCheckpoint, cp.Note}, {kLastBlock, make([]byte, 32)},
				{kTraceIndex, []byte(traceIndexBatched)}, {kIndexBatch, u64(uint64(opts.IndexBatch))},
			} {
				if err := m.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return tx.Bucket(bCheckpoints).Put(u64(0), cp.Note)
		})
		if err != nil {
			return wrap(KindUnavailable, "create ledger", err)
		}
	}
	return l.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return &Error{Kind: KindTampered, Op: "open ledger", Err: fmt.Errorf("bucket %q is missing", b), Hint: "this is not a chaosgate ledger, or it was damaged"}
			}
		}
		m := tx.Bucket(bMeta)
		if v := string(m.Get(kVersion)); v != "1" {
			return errorf(KindInvalid, "open ledger", "unsupported ledger format version %q", v)
		}
		origin := string(m.Get(kOrigin))
		vkey := string(m.Get(kVKey))
		evPub := append([]byte(nil), m.Get(kEvPub)...)
		switch {
		case opts.Public != nil:
			l.pub = opts.Public
			l.keysSource = "given public keys"
		case opts.Keys != nil:
			l.pub = opts.Keys.Verifier()
			l.keysSource = "keys " + opts.Keys.Info.Dir
		default:
			p, err := ParsePublicKeys(evPub, vkey)
			if err != nil {
				return wrap(KindTampered, "open ledger: recorded public keys", err)
			}
			l.pub = p
			l.keysSource = "public keys recorded in the ledger (not independent: pass --keys to check against your own copy)"
		}
		if origin != l.pub.Origin {
			return &Error{Kind: KindInvalid, Op: "open ledger", Err: fmt.Errorf("ledger at %s belongs to origin %q, the keys are for origin %q", l.dir, origin, l.pub.Origin), Hint: "use the keys this ledger was created with (--keys), or another --ledger directory"}
		}
		if vkey != l.pub.CheckpointVKey {
			return &Error{Kind: KindInvalid, Op: "open ledger", Err: fmt.Errorf("ledger at %s was created with checkpoint key %s, not %s", l.dir, vkey, l.pub.CheckpointVKey), Hint: "use the keys this ledger was created with (--keys)"}
		}
		if opts.Keys != nil {
			if p, err := ParsePublicKeys(evPub, vkey); err != nil || p.EvidenceKeyID != opts.Keys.Info.EvidenceKeyID {
				return &Error{Kind: KindInvalid, Op: "open ledger", Err: fmt.Errorf("ledger at %s was created with another evidence key than %s", l.dir, opts.Keys.Info.EvidenceKeyID), Hint: "use the keys this ledger was created with (--keys)"}
			}
		}
		var err error
		if l.size, err = metaU64(m, kSize); err != nil {
			return err
		}
		if l.blocks, err = metaU64(m, kBlocks); err != nil {
			return err
		}
		if l.indexedThrough, err = metaIndexedThrough(m, l.size); err != nil {
			return err
		}
		if l.ixf, err = indexFormatOf(m, uint64(opts.IndexBatch)); err != nil {
			return err
		}
		copy(l.lastBlock[:], m.Get(kLastBlock))
		cp, err := OpenCheckpoint(append([]byte(nil), m.Get(kCheckpoint)...), l.pub.Checkpoint)
		if err != nil {
			return &Error{Kind: KindTampered, Op: "open ledger: latest checkpoint", Err: err}
		}
		if cp.Size != l.size {
			return errorf(KindTampered, "open ledger", "latest checkpoint has size %d, the ledger records size %d", cp.Size, l.size)
		}
		root, err := treeRoot(l.size, bucketHashReader(tx.Bucket(bHashes)))
		if err != nil {
			return wrap(KindTampered, "open ledger: recompute root", err)
		}
		if root != cp.Root {
			return &Error{Kind: KindTampered, Op: "open ledger", Err: fmt.Errorf("recomputed root %s of size %d does not match the signed checkpoint root %s", root, l.size, cp.Root), Hint: "run `chaosgate ledger verify --from-scratch` to find the damaged entry"}
		}
		l.cp = cp
		return nil
	})
}

// emptyRoot is the RFC 6962 root of the empty tree: SHA-256 of nothing.
func emptyRoot() tlog.Hash { return tlog.Hash(sha256.Sum256(nil)) }

func treeRoot(n uint64, r tlog.HashReader) (tlog.Hash, error) {
	if n == 0 {
		return emptyRoot(), nil
	}
	return tlog.TreeHash(int64(n), r)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func bucketHashReader(b *bolt.Bucket) tlog.HashReaderFunc {
	return func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			v := b.Get(u64(uint64(x)))
			if len(v) != tlog.HashSize {
				level, n := tlog.SplitStoredHashIndex(x)
				return nil, fmt.Errorf("tree hash at level %d, index %d is missing or damaged", level, n)
			}
			copy(out[i][:], v)
		}
		return out, nil
	}
}

// commitHashReader reads the stored hashes of the tree in one commit: those
// the commit wrote and those it read already come from memory, the rest
// from the bucket. The commit's inclusion proofs read the same interior
// hashes over and over (each proof is about log2 n hashes, most shared by
// the batch's entries).
type commitHashReader struct {
	bucket *bolt.Bucket
	seen   map[int64]tlog.Hash
}

func newCommitHashReader(b *bolt.Bucket) *commitHashReader {
	return &commitHashReader{bucket: b, seen: map[int64]tlog.Hash{}}
}

// ReadHashes implements tlog.HashReader.
func (c *commitHashReader) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if h, ok := c.seen[x]; ok {
			out[i] = h
			continue
		}
		v := c.bucket.Get(u64(uint64(x)))
		if len(v) != tlog.HashSize {
			level, n := tlog.SplitStoredHashIndex(x)
			return nil, fmt.Errorf("tree hash at level %d, index %d is missing or damaged", level, n)
		}
		copy(out[i][:], v)
		c.seen[x] = out[i]
	}
	return out, nil
}

// put stores hash h at stored-hash index x.
func (c *commitHashReader) put(x int64, h tlog.Hash) error {
	if err := c.bucket.Put(u64(uint64(x)), h[:]); err != nil {
		return err
	}
	c.seen[x] = h
	return nil
}

// Dir returns the ledger directory.
func (l *Ledger) Dir() string { return l.dir }

// Blobs returns the ledger's blob store.
func (l *Ledger) Blobs() *BlobStore { return l.blobs }

// PublicKeys returns the keys the ledger verifies with.
func (l *Ledger) PublicKeys() *PublicKeys { return l.pub }

// Origin returns the log origin.
func (l *Ledger) Origin() string { return l.pub.Origin }

// Size returns the current tree size.
func (l *Ledger) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.size
}

// BlockCount returns the number of blocks.
func (l *Ledger) BlockCount() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.blocks
}

// Close stops the writer (pending appends fail) and closes the database.
func (l *Ledger) Close() error {
	var err error
	l.once.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.stopped
			// The writer has exited: the tail is this goroutine's now.
			err = l.flushIndexTail()
		}
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		err = errors.Join(err, l.db.Close())
	})
	return err
}

// Append verifies env against the evidence key, then appends it. The
// revision indexed is the first subject's name.
func (l *Ledger) Append(ctx context.Context, env *Envelope) (Receipt, error) {
	return l.AppendRevision(ctx, env, "")
}

// AppendRevision is Append with an explicit deployment revision to index
// (empty: the first subject's name). It returns once the entry is durable.
// If ctx ends first the outcome is unknown: the entry may still be appended.
func (l *Ledger) AppendRevision(ctx context.Context, env *Envelope, revision string) (Receipt, error) {
	return l.appendEnvelope(ctx, env, revision, false)
}

func (l *Ledger) appendEnvelope(ctx context.Context, env *Envelope, revision string, external bool) (Receipt, error) {
	if l.reqs == nil {
		return Receipt{}, errorf(KindInvalid, "append", "the ledger is open read-only")
	}
	info, err := l.pub.VerifyEnvelope(ctx, env)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == KindTampered {
			return Receipt{}, &Error{Kind: KindInvalid, Op: "append", Err: e.Err, Hint: e.Hint}
		}
		return Receipt{}, err
	}
	if revision == "" && len(info.Subjects) > 0 {
		revision = info.Subjects[0]
	}
	if revision == "" || strings.ContainsAny(revision, "\x00\n") {
		return Receipt{}, &Error{Kind: KindInvalid, Op: "append", Err: fmt.Errorf("revision %q is not usable", revision), Hint: "give the subject a name or pass a revision"}
	}
	for _, d := range info.Blobs {
		if _, err := l.blobs.Get(d); err != nil {
			return Receipt{}, &Error{Kind: KindInvalid, Op: "append", Err: fmt.Errorf("blob %s referenced by the predicate: %w", d, err), Hint: "put blobs in the blob store before appending the record that references them"}
		}
	}
	eb, err := EnvelopeBytes(env)
	if err != nil {
		return Receipt{}, err
	}
	if external && info.PredicateType == PredicateType {
		return Receipt{}, &Error{Kind: KindInvalid, Op: "append", Err: fmt.Errorf("predicate type %s is chaosgate's own run evidence: only a chaosgate run records it", PredicateType),
			Hint: "give external evidence its own predicate type, e.g. https://example.com/ci/v1"}
	}
	req := &appendReq{envBytes: eb, stored: packEnvelopeOf(env, eb), info: info, revision: revision, external: external, resp: make(chan appendResp, 1)}
	select {
	case l.reqs <- req:
	case <-l.stop:
		return Receipt{}, errorf(KindUnavailable, "append", "the ledger is closed")
	case <-ctx.Done():
		return Receipt{}, wrap(KindUnavailable, "append", ctx.Err())
	}
	select {
	case r := <-req.resp:
		return r.r, r.err
	case <-l.stopped:
		// The writer has exited; it answers every request it took before.
		select {
		case r := <-req.resp:
			return r.r, r.err
		default:
			return Receipt{}, errorf(KindUnavailable, "append", "the ledger is closed")
		}
	case <-ctx.Done():
		return Receipt{}, &Error{Kind: KindUnavailable, Op: "append", Err: ctx.Err(), Hint: "the outcome is unknown: the entry may have been appended"}
	}
}

func (l *Ledger) writer() {
	defer close(l.stopped)
	for {
		var batch []*appendReq
		select {
		case <-l.stop:
			l.drainClosed()
			return
		case r := <-l.reqs:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < l.maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		receipts, err := l.commit(batch)
		for i, r := range batch {
			if err != nil {
				r.resp <- appendResp{err: err}
			} else {
				r.resp <- appendResp{r: receipts[i]}
			}
		}
	}
}

func (l *Ledger) drainClosed() {
	for {
		select {
		case r := <-l.reqs:
			r.resp <- appendResp{err: errorf(KindUnavailable, "append", "the ledger is closed")}
		default:
			return
		}
	}
}

// blockBody is the signed text of a block header.
type blockHeader struct {
	Origin   string
	Height   uint64
	Prev     tlog.Hash
	DataHash tlog.Hash
	First    uint64
	Count    uint64
	Size     uint64
	Root     tlog.Hash
	Time     time.Time
}

func (b blockHeader) marshal() []byte {
	return fmt.Appendf(nil, "%s block\nheight %d\nprev %s\ndata %s\nfirst %d\ncount %d\nsize %d\nroot %s\ntime %s\n",
		b.Origin, b.Height, b.Prev, b.DataHash, b.First, b.Count, b.Size, b.Root, b.Time.UTC().Format(time.RFC3339Nano))
}

func parseBlockHeader(text string) (blockHeader, error) {
	var b blockHeader
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 9 {
		return b, fmt.Errorf("block header has %d lines, want 9", len(lines))
	}
	origin, ok := strings.CutSuffix(lines[0], " block")
	if !ok {
		return b, errors.New("line 1: not a block header")
	}
	b.Origin = origin
	field := func(i int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], name+" ")
		if !ok {
			return "", fmt.Errorf("line %d: want %q", i+1, name)
		}
		return v, nil
	}
	nums := []struct {
		i    int
		name string
		dst  *uint64
	}{{1, "height", &b.Height}, {4, "first", &b.First}, {5, "count", &b.Count}, {6, "size", &b.Size}}
	for _, n := range nums {
		v, err := field(n.i, n.name)
		if err != nil {
			return b, err
		}
		if *n.dst, err = strconv.ParseUint(v, 10, 64); err != nil {
			return b, fmt.Errorf("line %d: %v", n.i+1, err)
		}
	}
	hashes := []struct {
		i    int
		name string
		dst  *tlog.Hash
	}{{2, "prev", &b.Prev}, {3, "data", &b.DataHash}, {7, "root", &b.Root}}
	for _, h := range hashes {
		v, err := field(h.i, h.name)
		if err != nil {
			return b, err
		}
		if *h.dst, err = tlog.ParseHash(v); err != nil {
			return b, fmt.Errorf("line %d: %v", h.i+1, err)
		}
	}
	v, err := field(8, "time")
	if err != nil {
		return b, err
	}
	if b.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return b, fmt.Errorf("line 9: %v", err)
	}
	return b, nil
}

// Block is a parsed, signed block header.
type Block struct {
	Height   uint64    `json:"height"`
	Prev     tlog.Hash `json:"prev_hash"`
	DataHash tlog.Hash `json:"data_hash"`
	First    uint64    `json:"first_index"`
	Count    uint64    `json:"count"`
	Size     uint64    `json:"tree_size"`
	Root     tlog.Hash `json:"root"`
	Time     time.Time `json:"time"`
	Hash     tlog.Hash `json:"hash"` // SHA-256 of the signed header text
	Note     []byte    `json:"-"`    // the signed note
}

func blockFromNote(msg []byte, v note.Verifier, origin string) (Block, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Block{}, fmt.Errorf("signature: %w", err)
	}
	h, err := parseBlockHeader(n.Text)
	if err != nil {
		return Block{}, err
	}
	if h.Origin != origin {
		return Block{}, fmt.Errorf("origin %q, want %q", h.Origin, origin)
	}
	return Block{Height: h.Height, Prev: h.Prev, DataHash: h.DataHash, First: h.First, Count: h.Count, Size: h.Size, Root: h.Root, Time: h.Time,
		Hash: tlog.Hash(sha256.Sum256([]byte(n.Text))), Note: msg}, nil
}

func allValidUTF8(ss []string) bool {
	for _, x := range ss {
		if !utf8.ValidString(x) {
			return false
		}
	}
	return true
}

func blockDataHash(leafHashes []tlog.Hash) tlog.Hash {
	h := sha256.New()
	for _, x := range leafHashes {
		h.Write(x[:])
	}
	return tlog.Hash(h.Sum(nil))
}

func (l *Ledger) commit(batch []*appendReq) ([]Receipt, error) {
	l.mu.RLock()
	size, blocks, prev, through := l.size, l.blocks, l.lastBlock, l.indexedThrough
	l.mu.RUnlock()
	var added []entryIndexKeys // this batch's value-index keys
	now := l.clock.Now().UTC()
	receipts := make([]Receipt, len(batch))
	var cp SignedCheckpoint
	var blockHash tlog.Hash
	err := l.db.Update(func(tx *bolt.Tx) error {
		bk := func(name []byte) *bolt.Bucket {
			b := tx.Bucket(name)
			b.FillPercent = 0.9
			return b
		}
		entries, envs, hashes := bk(bEntries), bk(bEnvelopes), bk(bHashes)
		hr := newCommitHashReader(hashes)
		leafHashes := make([]tlog.Hash, len(batch))
		for i, r := range batch {
			idx := size + uint64(i)
			envSum := sha256.Sum256(r.envBytes)
			rec := EntryRecord{V: 1, Index: idx, Time: now, Revision: r.revision, Subjects: r.info.Subjects, Experiment: r.info.Experiment,
				RunID: r.info.RunID, TraceIDs: r.info.TraceIDs, PredicateType: r.info.PredicateType, EnvelopeSHA256: hex.EncodeToString(envSum[:]), Blobs: r.info.Blobs, External: r.external}
			leaf, err := json.Marshal(&rec)
			if err != nil {
				return err
			}
			hs, err := tlog.StoredHashes(int64(idx), leaf, hr)
			if err != nil {
				return err
			}
			base := tlog.StoredHashIndex(0, int64(idx))
			for j, h := range hs {
				if err := hr.put(base+int64(j), h); err != nil {
					return err
				}
			}
			leafHashes[i] = hs[0]
			key := u64(idx)
			if err := entries.Put(key, packLeaf(leaf)); err != nil {
				return err
			}
			if err := envs.Put(key, r.stored); err != nil {
				return err
			}
			// The indexes are made from the leaf as stored (JSON replaces
			// invalid UTF-8), exactly as Verify rebuilds them; when every
			// string is valid UTF-8 the record's own fields are those.
			stored := leafFields{Index: rec.Index, Time: rec.Time, Revision: rec.Revision, Experiment: rec.Experiment, Subjects: rec.Subjects, TraceIDs: rec.TraceIDs}
			if !allValidUTF8(append(append([]string{rec.Revision, rec.Experiment}, rec.Subjects...), rec.TraceIDs...)) {
				stored = leafFields{}
				if err := json.Unmarshal(leaf, &stored); err != nil {
					return err
				}
			}
			ixKeys := l.ixf.indexKeys(&stored, idx)
			added = append(added, entryIndexKeys{index: idx, keys: [valueIndexes][][]byte(ixKeys[:valueIndexes])})
			// Time keys arrive in order: a page split leaves the left
			// page full for good.
			ix := bk(bIxTime)
			for _, k := range ixKeys[valueIndexes] {
				if err := ix.Put(k, nil); err != nil {
					return err
				}
			}
			receipts[i] = Receipt{Index: idx, LeafHash: hs[0], EnvelopeSHA256: rec.EnvelopeSHA256, Block: blocks}
		}
		newSize := size + uint64(len(batch))
		// Every whole index batch the log now holds is written.
		if whole := newSize / l.ixf.batch * l.ixf.batch; whole > through {
			if err := putIndexKeys(tx, l.ixf, l.indexTail, added, whole); err != nil {
				return err
			}
			through = whole
		}
		root, err := treeRoot(newSize, hr)
		if err != nil {
			return err
		}
		cp, err = SignCheckpoint(Checkpoint{Origin: l.pub.Origin, Size: newSize, Root: root}, l.keys.cpSigner)
		if err != nil {
			return err
		}
		hdr := blockHeader{Origin: l.pub.Origin, Height: blocks, Prev: prev, DataHash: blockDataHash(leafHashes), First: size, Count: uint64(len(batch)), Size: newSize, Root: root, Time: now}
		text := hdr.marshal()
		blockNote, err := note.Sign(&note.Note{Text: string(text)}, l.keys.cpSigner)
		if err != nil {
			return err
		}
		blockHash = tlog.Hash(sha256.Sum256(text))
		if err := bk(bBlocks).Put(u64(blocks), blockNote); err != nil {
			return err
		}
		if err := bk(bCheckpoints).Put(u64(newSize), cp.Note); err != nil {
			return err
		}
		m := tx.Bucket(bMeta)
		for _, kv := range [][2][]byte{{kSize, u64(newSize)}, {kBlocks, u64(blocks + 1)}, {kCheckpoint, cp.Note}, {kLastBlock, blockHash[:]}, {kIndexedThrough, u64(through)}} {
			if err := m.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for i := range receipts {
			p, err := tlog.ProveRecord(int64(newSize), int64(receipts[i].Index), hr)
			if err != nil {
				return err
			}
			receipts[i].Proof = hashesToBytes(p)
			receipts[i].TreeSize = newSize
			receipts[i].Checkpoint = cp
		}
		return nil
	})
	if err != nil {
		return nil, wrap(KindUnavailable, "append", err)
	}
	l.indexTail = append(l.indexTail, added...)
	for len(l.indexTail) > 0 && l.indexTail[0].index < through {
		l.indexTail = l.indexTail[1:]
	}
	l.mu.Lock()
	l.size = size + uint64(len(batch))
	l.indexedThrough = through
	l.blocks = blocks + 1
	l.lastBlock = blockHash
	l.cp = cp
	l.mu.Unlock()
	return receipts, nil
}

func dedup(s []string) []string {
	if len(s) <= 32 {
		// A statement's few names and trace ids: compared pairwise,
		// without a map.
		out := make([]string, 0, len(s))
		for _, x := range s {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
		return out
	}
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func ixKey(v string, idx uint64) []byte {
	k := make([]byte, 0, len(v)+9)
	k = append(k, v...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, idx)
}

func hashesToBytes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = append([]byte(nil), hs[i][:]...)
	}
	return out
}

// BytesToHashes converts proof hashes to tlog hashes, checking their length.
func BytesToHashes(p [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(p))
	for i, b := range p {
		if len(b) != tlog.HashSize {
			return nil, errorf(KindInvalid, "proof", "hash %d has %d bytes, want %d", i, len(b), tlog.HashSize)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// EvidenceRef is the evidence object of a run report (report/v1).
type EvidenceRef struct {
	LedgerIndex    uint64 `json:"ledger_index"`
	TreeSize       uint64 `json:"tree_size"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
}

// Ref returns the report/v1 evidence object of the receipt.
func (r Receipt) Ref() EvidenceRef {
	return EvidenceRef{LedgerIndex: r.Index, TreeSize: r.TreeSize, EnvelopeSHA256: r.EnvelopeSHA256}
}

// metaIndexedThrough reads meta "indexed_through": absent means every entry
// is indexed (ledgers written before the indexes could lag).
func metaIndexedThrough(m *bolt.Bucket, size uint64) (uint64, error) {
	if m.Get(kIndexedThrough) == nil {
		return size, nil
	}
	n, err := metaU64(m, kIndexedThrough)
	if err != nil {
		return 0, err
	}
	if n > size {
		return 0, tampered("ledger metadata", "%q is %d, beyond the tree size %d", kIndexedThrough, n, size)
	}
	return n, nil
}

// loadIndexTail reads the value-index keys of the entries not yet indexed
// (written before a crash, or by a writer that did not close).
func (l *Ledger) loadIndexTail() error {
	return l.db.View(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bEntries)
		for i := l.indexedThrough; i < l.size; i++ {
			leaf, err := getStored(entries, i, "entry")
			if err != nil {
				return err
			}
			var rec leafFields
			if err := decodeLeaf(leaf, &rec); err != nil {
				return tampered(fmt.Sprintf("entry %d", i), "leaf is not a valid entry record: %v", err)
			}
			keys := l.ixf.indexKeys(&rec, i)
			l.indexTail = append(l.indexTail, entryIndexKeys{index: i, keys: [valueIndexes][][]byte(keys[:valueIndexes])})
		}
		return nil
	})
}

// flushIndexTail writes the waiting value-index keys to their indexes, so
// that a ledger closed cleanly is fully indexed.
func (l *Ledger) flushIndexTail() error {
	l.mu.RLock()
	size, through := l.size, l.indexedThrough
	l.mu.RUnlock()
	if through == size {
		return nil
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		if err := putIndexKeys(tx, l.ixf, l.indexTail, nil, size); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(kIndexedThrough, u64(size))
	})
	if err != nil {
		return wrap(KindUnavailable, "close ledger: write the index tail", err)
	}
	l.indexTail = nil
	l.mu.Lock()
	l.indexedThrough = size
	l.mu.Unlock()
	return nil
}

// entryIndexKeys are one entry's revision, experiment and trace-id index
// keys (in indexBuckets order).
type entryIndexKeys struct {
	index uint64
	keys  [valueIndexes][][]byte
}

// putIndexKeys writes the value-index keys of the entries of tail and
// added before through, each index's in sorted order: a batch of them
// lands on each index page once, where one entry at a time would rewrite a
// page per key.
func putIndexKeys(tx *bolt.Tx, ixf indexFormat, tail, added []entryIndexKeys, through uint64) error {
	for b := range valueIndexes {
		n := 0
		for _, part := range [][]entryIndexKeys{tail, added} {
			for _, e := range part {
				if e.index < through {
					n += len(e.keys[b])
				}
			}
		}
		keys := make([][]byte, 0, n)
		for _, part := range [][]entryIndexKeys{tail, added} {
			for _, e := range part {
				if e.index < through {
					keys = append(keys, e.keys[b]...)
				}
			}
		}
		ix := tx.Bucket(indexBuckets[b])
		// A revision's or an experiment's keys arrive in order after its
		// earlier ones, and a batch's trace-id keys after every earlier
		// batch's: a page split there leaves the left page full for good.
		// Trace ids of a ledger written before batched keys arrive at
		// random.
		if b != 2 || tx.Bucket(bMeta).Get(kTraceIndex) != nil {
			ix.FillPercent = 0.9
		}
		if b == 2 && ixf.batchedTraces {
			if err := putTraceBatches(ix, ixf, keys); err != nil {
				return err
			}
			continue
		}
		slices.SortFunc(keys, bytes.Compare)
		for _, k := range keys {
			if err := ix.Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// putTraceBatches stores trace-id keys (batch ‖ hash ‖ entry index, in any
// order) as their batches' values, merged with what a batch already holds
// (a batch written in part when the ledger was closed). The records are
// sorted as numbers: sorting the 24-byte keys of a batch (80,000 of them
// at 20 trace ids per entry) with bytes.Compare made the commit that
// writes it the slowest of all.
func putTraceBatches(ix *bolt.Bucket, ixf indexFormat, keys [][]byte) error {
	byBatch := map[uint64][]traceRecord{}
	for _, k := range keys {
		n := binary.BigEndian.Uint64(k[:8])
		byBatch[n] = append(byBatch[n], ixf.traceRecordOf(k))
	}
	for _, n := range slices.Sorted(maps.Keys(byBatch)) {
		recs := byBatch[n]
		bk := u64(n)
		if old := ix.Get(bk); len(old) > 0 {
			had, err := ixf.traceBatchRecords(bk, old)
			if err != nil {
				return tampered(fmt.Sprintf("index %s", bIxTrace), "%v", err)
			}
			recs = append(recs, had...)
		}
		slices.SortFunc(recs, traceRecord.compare)
		if err := ix.Put(bk, encodeTraceRecords(recs)); err != nil {
			return err
		}
	}
	return nil
}

// traceRecord is one record of a batch's trace-id value: the first 8
// bytes of the trace id's SHA-256 and the entry's offset in the batch.
type traceRecord struct {
	hash uint64
	off  uint32
}

// compare orders records as their stored bytes sort.
func (r traceRecord) compare(o traceRecord) int {
	if c := cmp.Compare(r.hash, o.hash); c != 0 {
		return c
	}
	return cmp.Compare(r.off, o.off)
}

// traceRecordOf is the record of trace-id key k (batch ‖ hash ‖ entry
// index).
func (f indexFormat) traceRecordOf(k []byte) traceRecord {
	return traceRecord{hash: binary.BigEndian.Uint64(k[8:16]), off: uint32(binary.BigEndian.Uint64(k[16:24]) % f.batch)}
}

// traceBatchRecords reads the stored trace-id value v of batch key k; an
// error says what is wrong with it.
func (f indexFormat) traceBatchRecords(k, v []byte) ([]traceRecord, error) {
	recs := make([]traceRecord, 0, len(v)/traceRecordSize)
	err := f.eachTraceBatchKey(k, v, func(key []byte) error {
		recs = append(recs, f.traceRecordOf(key))
		return nil
	})
	return recs, err
}

// encodeTraceRecords is the stored value of a batch's sorted records.
func encodeTraceRecords(recs []traceRecord) []byte {
	out := make([]byte, 0, traceRecordSize*len(recs))
	for _, r := range recs {
		out = binary.BigEndian.AppendUint64(out, r.hash)
		out = binary.BigEndian.AppendUint32(out, r.off)
	}
	return out
}

// ledgerPageSize is the bbolt page size of a new ledger (an existing one
// keeps its own): a 16 kB page holds fifteen 1 kB envelopes where a 4 kB
// page holds three, and leaves a quarter of it unused.
const ledgerPageSize = 16 << 10
