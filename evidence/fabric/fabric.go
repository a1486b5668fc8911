// Package fabric is the Hyperledger Fabric backend of the evidence ledger:
// the same ledger contract as the embedded log, with every entry's digests
// and every checkpoint anchored in a Fabric channel through the Fabric
// Gateway (github.com/hyperledger/fabric-gateway) and the chaosgate evidence
// chaincode (deploy/fabric/chaincode). The channel is an outside witness: a
// local log that was rewritten, truncated or forked no longer matches what
// Fabric endorsed, and VerifyAnchors says so.
//
// Every committed anchoring is also recorded next to the local ledger
// (evidence.AnchorsFile, anchors/v1) with its transaction id and block, so
// the explorer can show which transaction covers an entry without Fabric.
package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chaosgate/chaosgate/evidence"
)

// Chaincode transaction names (deploy/fabric/chaincode).
const (
	txRegisterLog      = "RegisterLog"
	txAnchor           = "Anchor"
	txAnchorCheckpoint = "AnchorCheckpoint"
	txRecordEvidence   = "RecordEvidence"
	txGetEvidence      = "GetEvidence"
	txLatest           = "LatestCheckpoint"
)

// Backend is the evidence.Anchor backend name of this package.
const Backend = "fabric"

// Identity is the Fabric client identity: an MSP id, an X.509 certificate
// and its private key (PEM).
type Identity struct {
	MSPID   string
	CertPEM []byte
	KeyPEM  []byte
}

// Connect opens a Fabric Gateway session over conn (a gRPC connection to a
// peer's gateway service) as id. opts are passed to client.Connect (e.g.
// timeouts).
func Connect(conn grpc.ClientConnInterface, id Identity, opts ...client.ConnectOption) (*client.Gateway, error) {
	cert, err := identity.CertificateFromPEM(id.CertPEM)
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric identity", Err: err, Hint: "CertPEM must be the client's X.509 certificate"}
	}
	xid, err := identity.NewX509Identity(id.MSPID, cert)
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric identity", Err: err}
	}
	key, err := identity.PrivateKeyFromPEM(id.KeyPEM)
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric identity", Err: err, Hint: "KeyPEM must be the certificate's private key (PKCS#8 PEM)"}
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric identity", Err: err}
	}
	gw, err := client.Connect(xid, append([]client.ConnectOption{client.WithSign(sign), client.WithClientConnection(conn)}, opts...)...)
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindUnavailable, Op: "fabric gateway", Err: err}
	}
	return gw, nil
}

// Ledger is the embedded ledger witnessed by a Fabric channel. It satisfies
// evidence.LedgerAPI.
type Ledger struct {
	local              *evidence.Ledger
	contract           *client.Contract
	channel, chaincode string
	// Now stamps the local anchor records (default time.Now).
	Now func() time.Time
}

var _ evidence.LedgerAPI = (*Ledger)(nil)

// New registers local's checkpoint key with the chaincode (idempotent) and
// returns the witnessed ledger.
func New(ctx context.Context, local *evidence.Ledger, gw *client.Gateway, channel, chaincode string) (*Ledger, error) {
	l := Attach(local, gw, channel, chaincode)
	if _, err := l.submit(ctx, txRegisterLog, local.PublicKeys().CheckpointVKey); err != nil {
		return nil, err
	}
	return l, nil
}

// Attach returns the witnessed ledger without a transaction: for
// verification (VerifyAnchors) and AnchorPending, which registers the log
// itself when the channel holds none of its checkpoints. local may be
// read-only for those.
func Attach(local *evidence.Ledger, gw *client.Gateway, channel, chaincode string) *Ledger {
	return &Ledger{local: local, contract: gw.GetNetwork(channel).GetContract(chaincode), channel: channel, chaincode: chaincode, Now: time.Now}
}

// Tx is a committed Fabric transaction.
type Tx struct {
	ID     string
	Block  uint64
	Result []byte
}

// submit endorses, submits and waits for the commit of one transaction.
func (l *Ledger) submit(ctx context.Context, name string, args ...string) (Tx, error) {
	op := "fabric " + name
	prop, err := l.contract.NewProposal(name, client.WithArguments(args...))
	if err != nil {
		return Tx{}, fabricError(op, err)
	}
	txn, err := prop.EndorseWithContext(ctx)
	if err != nil {
		return Tx{}, fabricError(op, err)
	}
	commit, err := txn.SubmitWithContext(ctx)
	if err != nil {
		return Tx{}, fabricError(op, err)
	}
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		return Tx{}, fabricError(op, err)
	}
	if !st.Successful {
		return Tx{}, &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: fmt.Errorf("transaction %s was not valid when committed in block %d: %s", st.TransactionID, st.BlockNumber, st.Code),
			Hint: "another client changed the same keys at the same time (MVCC conflict) or the endorsement policy was not met; anchor again"}
	}
	return Tx{ID: st.TransactionID, Block: st.BlockNumber, Result: txn.Result()}, nil
}

func (l *Ledger) evaluate(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := l.contract.EvaluateWithContext(ctx, name, client.WithArguments(args...))
	if err != nil {
		return nil, fabricError("fabric "+name, err)
	}
	return out, nil
}

// fabricError classifies a gateway error by its gRPC status, keeping the
// peer's message: transport failures are unavailable, an answer from the
// chaincode that the entry or checkpoint does not exist is not found, a
// refusal (chaincode error, identity not allowed) is invalid.
func fabricError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &evidence.Error{Kind: evidence.KindUnavailable, Op: op, Err: err, Hint: "the Fabric gateway did not answer in time"}
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted:
		hint := "is the peer's gateway reachable at that address?"
		if strings.Contains(msg, "x509") || strings.Contains(msg, "tls:") || strings.Contains(msg, "authentication handshake") {
			hint = "the TLS handshake failed: the CA file must hold the CA of the peer's TLS certificate, and the server name must be a name in that certificate"
		}
		return &evidence.Error{Kind: evidence.KindUnavailable, Op: op, Err: err, Hint: hint}
	case codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition:
		return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err, Hint: "the peer refused the client identity: check the MSP id, the certificate and that the key is the certificate's"}
	}
	if strings.Contains(msg, " is not recorded") || strings.Contains(msg, " is anchored") || strings.Contains(msg, "no checkpoint of") {
		return &evidence.Error{Kind: evidence.KindNotFound, Op: op, Err: err}
	}
	var ce *client.CommitError
	if errors.As(err, &ce) {
		return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err, Hint: "the transaction was not valid when committed"}
	}
	if strings.Contains(msg, "chaincode") && (strings.Contains(msg, "not found") || strings.Contains(msg, "could not launch")) {
		return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err, Hint: "is the chaosgate chaincode deployed on that channel under that name (deploy/fabric/README.md)?"}
	}
	return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err}
}

// Append appends env to the local log, then records its digests and the new
// checkpoint in Fabric in one transaction. When Fabric fails after the local
// append, the receipt is returned with the error; AnchorPending catches up.
func (l *Ledger) Append(ctx context.Context, env *evidence.Envelope) (evidence.Receipt, error) {
	r, err := l.local.Append(ctx, env)
	if err != nil {
		return r, err
	}
	return r, l.anchor(ctx, r)
}

// Record builds, signs and appends a run's evidence (see evidence.Ledger.Record)
// and anchors it in Fabric.
func (l *Ledger) Record(ctx context.Context, revision string, p *evidence.Predicate) (evidence.Receipt, error) {
	r, err := l.local.Record(ctx, revision, p)
	if err != nil {
		return r, err
	}
	return r, l.anchor(ctx, r)
}

func (l *Ledger) anchor(ctx context.Context, r evidence.Receipt) error {
	e, err := l.local.Entry(ctx, r.Index)
	if err != nil {
		return err
	}
	tx, err := l.submit(ctx, txAnchor, l.local.Origin(), strconv.FormatUint(r.Index, 10), r.LeafHash.String(), r.EnvelopeSHA256, e.Record.Revision, string(r.Checkpoint.Note))
	if err != nil {
		return fmt.Errorf("entry %d is in the local log but not anchored in Fabric: %w", r.Index, err)
	}
	_, err = l.recordLocally(AnchorResult{Checkpoint: r.Checkpoint, Recorded: 1, TxID: tx.ID, Block: tx.Block})
	return err
}

// recordLocally appends the anchor to the local ledger's anchors file.
func (l *Ledger) recordLocally(res AnchorResult) (evidence.Anchor, error) {
	a := evidence.Anchor{V: evidence.AnchorsSchema, Origin: l.local.Origin(), TreeSize: res.Checkpoint.Size, Root: res.Checkpoint.Root.String(),
		TxID: res.TxID, Block: res.Block, Backend: Backend, Channel: l.channel, Chaincode: l.chaincode, Recorded: res.Recorded, Time: l.Now().UTC()}
	if err := evidence.AppendAnchor(l.local.Dir(), a); err != nil {
		return a, fmt.Errorf("tree size %d is anchored in Fabric (transaction %s, block %d) but the local anchors record was not written: %w", a.TreeSize, a.TxID, a.Block, err)
	}
	return a, nil
}

// AnchoredCheckpoint is the latest checkpoint Fabric holds for this log,
// re-verified with the log's key. None anchored is evidence.KindNotFound.
func (l *Ledger) AnchoredCheckpoint(ctx context.Context) (evidence.SignedCheckpoint, error) {
	out, err := l.evaluate(ctx, txLatest, l.local.Origin())
	if err != nil {
		return evidence.SignedCheckpoint{}, err
	}
	var ac struct {
		Note string `json:"note"`
	}
	if err := json.Unmarshal(out, &ac); err != nil {
		return evidence.SignedCheckpoint{}, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric " + txLatest, Err: err}
	}
	cp, err := evidence.OpenCheckpoint([]byte(ac.Note), l.local.PublicKeys().Checkpoint)
	if err != nil {
		return cp, &evidence.Error{Kind: evidence.KindTampered, Op: "fabric " + txLatest, Err: fmt.Errorf("the anchored checkpoint does not verify with this ledger's key: %w", err)}
	}
	return cp, nil
}

// AnchorResult is what AnchorPending did.
type AnchorResult struct {
	// Checkpoint is the local checkpoint now anchored.
	Checkpoint evidence.SignedCheckpoint
	// Recorded is how many entries' digests were recorded in Fabric.
	Recorded int
	// TxID and Block are the transaction that anchored Checkpoint and the
	// block that committed it (empty when Already).
	TxID  string
	Block uint64
	// Already says Fabric held this checkpoint before, or the log is
	// empty (Checkpoint.Size 0): nothing was submitted.
	Already bool
	// Local is the record appended to the local anchors file (zero when
	// Already).
	Local evidence.Anchor
}

// AnchorPending anchors the local latest checkpoint in Fabric and records
// the digests of the local entries after the latest anchored checkpoint:
// RecordEvidence for each but the last, then Anchor (the last entry and the
// checkpoint) in one transaction. It registers the log first when the
// channel holds none of its checkpoints, and refuses (evidence.KindTampered)
// a local log that does not extend what Fabric anchored. The committed
// anchor is recorded in the local anchors file.
func (l *Ledger) AnchorPending(ctx context.Context) (AnchorResult, error) {
	var res AnchorResult
	cp, err := l.local.Checkpoint(ctx)
	if err != nil {
		return res, err
	}
	res.Checkpoint = cp
	if cp.Size == 0 {
		res.Already = true // an empty log: nothing to anchor
		return res, nil
	}
	from := uint64(0)
	ac, err := l.AnchoredCheckpoint(ctx)
	switch {
	case err == nil:
		from = ac.Size
	case evidence.KindOf(err) == evidence.KindNotFound:
		if _, err := l.submit(ctx, txRegisterLog, l.local.PublicKeys().CheckpointVKey); err != nil {
			return res, err
		}
	default:
		return res, err
	}
	if from > cp.Size {
		return res, &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("Fabric anchored tree size %d, the local log has only %d entries", from, cp.Size), Hint: "the local ledger lost entries or was replaced"}
	}
	if from > 0 {
		root, err := l.local.TreeRoot(ctx, from)
		if err != nil {
			return res, err
		}
		if root != ac.Root {
			return res, &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("local root at size %d is %s, Fabric anchored %s", from, root, ac.Root), Hint: "the local ledger was rewritten after it was anchored: run chaosgate ledger verify --anchors"}
		}
	}
	if from == cp.Size {
		res.Already = true
		return res, nil
	}
	for i := from; i+1 < cp.Size; i++ {
		e, err := l.local.Entry(ctx, i)
		if err != nil {
			return res, err
		}
		if _, err := l.submit(ctx, txRecordEvidence, l.local.Origin(), strconv.FormatUint(i, 10), e.LeafHash.String(), e.Record.EnvelopeSHA256, e.Record.Revision); err != nil {
			return res, fmt.Errorf("entries %d..%d are not anchored in Fabric: %w", i, cp.Size-1, err)
		}
		res.Recorded++
	}
	last, err := l.local.Entry(ctx, cp.Size-1)
	if err != nil {
		return res, err
	}
	tx, err := l.submit(ctx, txAnchor, l.local.Origin(), strconv.FormatUint(last.Index, 10), last.LeafHash.String(), last.Record.EnvelopeSHA256, last.Record.Revision, string(cp.Note))
	if err != nil {
		return res, fmt.Errorf("tree size %d is not anchored in Fabric: %w", cp.Size, err)
	}
	res.Recorded++
	res.TxID, res.Block = tx.ID, tx.Block
	res.Local, err = l.recordLocally(res)
	return res, err
}

// AnchorReport is what VerifyAll checked.
type AnchorReport struct {
	// TreeSize and Root are those of the latest checkpoint Fabric holds.
	TreeSize uint64 `json:"anchored_tree_size"`
	Root     string `json:"anchored_root"`
	// EntriesChecked is how many entries' digests recorded in Fabric were
	// compared with the local ones; NotRecorded counts the entries below
	// TreeSize whose digests Fabric has not recorded individually (the
	// anchored root still covers them).
	EntriesChecked int `json:"entries_checked"`
	NotRecorded    int `json:"entries_not_recorded"`
}

// VerifyAll checks the whole local log against Fabric: the latest anchored
// checkpoint must be a prefix of the local tree; every entry below it whose
// digests Fabric recorded must have the same leaf hash and envelope SHA-256
// locally (the first that differs is named); and the local root at the
// anchored size must be the anchored root. A mismatch is
// evidence.KindTampered; nothing anchored is evidence.KindNotFound.
func (l *Ledger) VerifyAll(ctx context.Context) (AnchorReport, error) {
	var rep AnchorReport
	ac, err := l.AnchoredCheckpoint(ctx)
	if err != nil {
		return rep, err
	}
	rep.TreeSize, rep.Root = ac.Size, ac.Root.String()
	if err := l.checkSize(ac); err != nil {
		return rep, err
	}
	for i := uint64(0); i < ac.Size; i++ {
		found, err := l.checkEntry(ctx, i)
		if err != nil {
			return rep, err
		}
		if found {
			rep.EntriesChecked++
		} else {
			rep.NotRecorded++
		}
	}
	return rep, l.checkRoot(ctx, ac)
}

func (l *Ledger) checkSize(ac evidence.SignedCheckpoint) error {
	if ac.Size > l.local.Size() {
		return &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("Fabric anchored tree size %d, the local log has only %d entries", ac.Size, l.local.Size()), Hint: "the local ledger lost entries or was replaced"}
	}
	return nil
}

func (l *Ledger) checkRoot(ctx context.Context, ac evidence.SignedCheckpoint) error {
	root, err := l.local.TreeRoot(ctx, ac.Size)
	if err != nil {
		return err
	}
	if root != ac.Root {
		return &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("local root at size %d is %s, Fabric anchored %s", ac.Size, root, ac.Root), Hint: "the local ledger was rewritten after it was anchored"}
	}
	return nil
}

// checkEntry compares entry i's local digests with those Fabric recorded;
// false when Fabric recorded none for it.
func (l *Ledger) checkEntry(ctx context.Context, i uint64) (bool, error) {
	out, err := l.evaluate(ctx, txGetEvidence, l.local.Origin(), strconv.FormatUint(i, 10))
	if evidence.KindOf(err) == evidence.KindNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var rec struct {
		LeafHash       string `json:"leaf_hash"`
		EnvelopeSHA256 string `json:"envelope_sha256"`
	}
	if err := json.Unmarshal(out, &rec); err != nil {
		return false, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric " + txGetEvidence, Err: err}
	}
	e, err := l.local.Entry(ctx, i)
	if err != nil {
		return false, err
	}
	switch {
	case rec.LeafHash != e.LeafHash.String():
		return true, &evidence.Error{Kind: evidence.KindTampered, Op: fmt.Sprintf("entry %d", i), Err: fmt.Errorf("local leaf hash %s differs from the one anchored in Fabric, %s", e.LeafHash, rec.LeafHash),
			Hint: "the entry was changed after it was anchored"}
	case rec.EnvelopeSHA256 != e.Record.EnvelopeSHA256:
		return true, &evidence.Error{Kind: evidence.KindTampered, Op: fmt.Sprintf("entry %d", i), Err: fmt.Errorf("local envelope SHA-256 %s differs from the one anchored in Fabric, %s", e.Record.EnvelopeSHA256, rec.EnvelopeSHA256),
			Hint: "the entry was changed after it was anchored"}
	}
	return true, nil
}

// VerifyAnchors checks the local log against Fabric: the latest anchored
// checkpoint must be a prefix of the local tree (same root at that size),
// and the digests Fabric recorded for entry i (when given) must match.
func (l *Ledger) VerifyAnchors(ctx context.Context, entries ...uint64) error {
	ac, err := l.AnchoredCheckpoint(ctx)
	if err != nil {
		return err
	}
	if err := l.checkSize(ac); err != nil {
		return err
	}
	if err := l.checkRoot(ctx, ac); err != nil {
		return err
	}
	for _, i := range entries {
		found, err := l.checkEntry(ctx, i)
		if err != nil {
			return err
		}
		if !found {
			return &evidence.Error{Kind: evidence.KindNotFound, Op: fmt.Sprintf("entry %d", i), Err: errors.New("Fabric recorded no digests for it")}
		}
	}
	return nil
}

// Entry returns entry i of the local log.
func (l *Ledger) Entry(ctx context.Context, i uint64) (evidence.Entry, error) {
	return l.local.Entry(ctx, i)
}

// Checkpoint returns the local latest checkpoint.
func (l *Ledger) Checkpoint(ctx context.Context) (evidence.SignedCheckpoint, error) {
	return l.local.Checkpoint(ctx)
}

// InclusionProof proves entry i in the tree of size size.
func (l *Ledger) InclusionProof(ctx context.Context, i, size uint64) ([][]byte, error) {
	return l.local.InclusionProof(ctx, i, size)
}

// ConsistencyProof proves the tree of size from is a prefix of the tree of size to.
func (l *Ledger) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	return l.local.ConsistencyProof(ctx, from, to)
}
