// Package fabric is the Hyperledger Fabric backend of the evidence ledger:
// the same ledger contract as the embedded log, with every entry's digests
// and every checkpoint anchored in a Fabric channel through the Fabric
// Gateway (github.com/hyperledger/fabric-gateway) and the chaosgate evidence
// chaincode (deploy/fabric/chaincode). The channel is an outside witness: a
// local log that was rewritten, truncated or forked no longer matches what
// Fabric endorsed, and VerifyAnchors says so.
package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"

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

// Identity is the Fabric client identity: an MSP id, an X.509 certificate
// and its private key (PEM).
type Identity struct {
	MSPID   string
	CertPEM []byte
	KeyPEM  []byte
}

// Connect opens a Fabric Gateway session over conn (a gRPC connection to a
// peer's gateway service) as id.
func Connect(conn grpc.ClientConnInterface, id Identity) (*client.Gateway, error) {
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
	gw, err := client.Connect(xid, client.WithSign(sign), client.WithClientConnection(conn))
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindUnavailable, Op: "fabric gateway", Err: err}
	}
	return gw, nil
}

// Ledger is the embedded ledger witnessed by a Fabric channel. It satisfies
// evidence.LedgerAPI.
type Ledger struct {
	local    *evidence.Ledger
	contract *client.Contract
}

var _ evidence.LedgerAPI = (*Ledger)(nil)

// New registers local's checkpoint key with the chaincode (idempotent) and
// returns the witnessed ledger.
func New(ctx context.Context, local *evidence.Ledger, gw *client.Gateway, channel, chaincode string) (*Ledger, error) {
	l := &Ledger{local: local, contract: gw.GetNetwork(channel).GetContract(chaincode)}
	if _, err := l.submit(ctx, txRegisterLog, local.PublicKeys().CheckpointVKey); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Ledger) submit(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := l.contract.SubmitWithContext(ctx, name, client.WithArguments(args...))
	if err != nil {
		return nil, fabricError("fabric "+name, err)
	}
	return out, nil
}

func (l *Ledger) evaluate(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := l.contract.EvaluateWithContext(ctx, name, client.WithArguments(args...))
	if err != nil {
		return nil, fabricError("fabric "+name, err)
	}
	return out, nil
}

// fabricError keeps the chaincode's message: endorsement failures (the
// chaincode refused) are invalid input, transport failures unavailable.
func fabricError(op string, err error) error {
	var ee *client.EndorseError
	var ce *client.CommitError
	var se *client.SubmitError
	switch {
	case errors.As(err, &ee):
		return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err}
	case errors.As(err, &ce):
		return &evidence.Error{Kind: evidence.KindInvalid, Op: op, Err: err, Hint: "the transaction was not valid when committed"}
	case errors.As(err, &se):
		return &evidence.Error{Kind: evidence.KindUnavailable, Op: op, Err: err}
	}
	return &evidence.Error{Kind: evidence.KindUnavailable, Op: op, Err: err, Hint: "is the Fabric gateway reachable?"}
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
	_, err = l.submit(ctx, txAnchor, l.local.Origin(), strconv.FormatUint(r.Index, 10), r.LeafHash.String(), r.EnvelopeSHA256, e.Record.Revision, string(r.Checkpoint.Note))
	if err != nil {
		return fmt.Errorf("entry %d is in the local log but not anchored in Fabric: %w", r.Index, err)
	}
	return nil
}

// AnchoredCheckpoint is the latest checkpoint Fabric holds for this log,
// re-verified with the log's key.
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
	return evidence.OpenCheckpoint([]byte(ac.Note), l.local.PublicKeys().Checkpoint)
}

// AnchorPending records in Fabric the digests of local entries after the
// latest anchored checkpoint and anchors the local latest checkpoint.
func (l *Ledger) AnchorPending(ctx context.Context) (int, error) {
	from := uint64(0)
	if ac, err := l.AnchoredCheckpoint(ctx); err == nil {
		from = ac.Size
	} else if evidence.KindOf(err) == evidence.KindUnavailable {
		return 0, err
	}
	cp, err := l.local.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := from; i < cp.Size; i++ {
		e, err := l.local.Entry(ctx, i)
		if err != nil {
			return n, err
		}
		if _, err := l.submit(ctx, txRecordEvidence, l.local.Origin(), strconv.FormatUint(i, 10), e.LeafHash.String(), e.Record.EnvelopeSHA256, e.Record.Revision); err != nil {
			return n, err
		}
		n++
	}
	if _, err := l.submit(ctx, txAnchorCheckpoint, string(cp.Note)); err != nil {
		return n, err
	}
	return n, nil
}

// VerifyAnchors checks the local log against Fabric: the latest anchored
// checkpoint must be a prefix of the local tree (same root at that size),
// and the digests Fabric recorded for entry i (when given) must match.
func (l *Ledger) VerifyAnchors(ctx context.Context, entries ...uint64) error {
	ac, err := l.AnchoredCheckpoint(ctx)
	if err != nil {
		return err
	}
	if ac.Size > l.local.Size() {
		return &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("Fabric anchored tree size %d, the local log has only %d entries", ac.Size, l.local.Size()), Hint: "the local ledger lost entries or was replaced"}
	}
	root, err := l.local.TreeRoot(ctx, ac.Size)
	if err != nil {
		return err
	}
	if root != ac.Root {
		return &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("local root at size %d is %s, Fabric anchored %s", ac.Size, root, ac.Root), Hint: "the local ledger was rewritten after it was anchored"}
	}
	for _, i := range entries {
		out, err := l.evaluate(ctx, txGetEvidence, l.local.Origin(), strconv.FormatUint(i, 10))
		if err != nil {
			return err
		}
		var rec struct {
			LeafHash       string `json:"leaf_hash"`
			EnvelopeSHA256 string `json:"envelope_sha256"`
		}
		if err := json.Unmarshal(out, &rec); err != nil {
			return &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric " + txGetEvidence, Err: err}
		}
		e, err := l.local.Entry(ctx, i)
		if err != nil {
			return err
		}
		if rec.LeafHash != e.LeafHash.String() || rec.EnvelopeSHA256 != e.Record.EnvelopeSHA256 {
			return &evidence.Error{Kind: evidence.KindTampered, Op: fmt.Sprintf("entry %d", i), Err: errors.New("local digests differ from those anchored in Fabric")}
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
