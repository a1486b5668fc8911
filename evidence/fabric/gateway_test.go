package fabric

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// peerServer is an in-process Fabric Gateway service on real gRPC. It checks
// every client signature against the creator certificate, simulates the
// evidence chaincode's transactions against an MVCC world state at Endorse,
// commits their write sets at Submit and reports commit status. The
// transaction functions follow deploy/fabric/chaincode (which has its own
// unit tests; this server lets the real fabric-gateway client be exercised).
type peerServer struct {
	gateway.UnimplementedGatewayServer
	mu       sync.Mutex
	state    map[string]versioned
	pending  map[string]*simulation
	statuses map[string]peer.TxValidationCode
	block    uint64
	signed   int // requests whose signature verified
	failNext string
}

type versioned struct {
	v   []byte
	ver uint64
}

type simulation struct {
	reads   map[string]uint64
	writes  map[string][]byte
	creator []byte
}

func newPeerServer() *peerServer {
	return &peerServer{state: map[string]versioned{}, pending: map[string]*simulation{}, statuses: map[string]peer.TxValidationCode{}}
}

func (s *peerServer) verify(creator, msg, sig []byte) error {
	var id msp.SerializedIdentity
	if err := proto.Unmarshal(creator, &id); err != nil {
		return err
	}
	blk, _ := pem.Decode(id.GetIdBytes())
	if blk == nil {
		return errors.New("creator has no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("creator key is not ECDSA")
	}
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		return errors.New("signature does not verify with the creator certificate")
	}
	s.signed++
	return nil
}

type decodedProposal struct {
	header    *common.Header
	chHeader  *common.ChannelHeader
	sigHeader *common.SignatureHeader
	payload   []byte
	args      []string
	propBytes []byte
	chaincode string
}

func (s *peerServer) decode(sp *peer.SignedProposal) (*decodedProposal, error) {
	var prop peer.Proposal
	if err := proto.Unmarshal(sp.GetProposalBytes(), &prop); err != nil {
		return nil, err
	}
	d := &decodedProposal{header: &common.Header{}, chHeader: &common.ChannelHeader{}, sigHeader: &common.SignatureHeader{}, payload: prop.GetPayload(), propBytes: sp.GetProposalBytes()}
	if err := proto.Unmarshal(prop.GetHeader(), d.header); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(d.header.GetChannelHeader(), d.chHeader); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(d.header.GetSignatureHeader(), d.sigHeader); err != nil {
		return nil, err
	}
	if err := s.verify(d.sigHeader.GetCreator(), sp.GetProposalBytes(), sp.GetSignature()); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	var cpp peer.ChaincodeProposalPayload
	if err := proto.Unmarshal(prop.GetPayload(), &cpp); err != nil {
		return nil, err
	}
	var cis peer.ChaincodeInvocationSpec
	if err := proto.Unmarshal(cpp.GetInput(), &cis); err != nil {
		return nil, err
	}
	d.chaincode = cis.GetChaincodeSpec().GetChaincodeId().GetName()
	for _, a := range cis.GetChaincodeSpec().GetInput().GetArgs() {
		d.args = append(d.args, string(a))
	}
	if len(d.args) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no transaction name")
	}
	return d, nil
}

func (s *peerServer) Evaluate(ctx context.Context, req *gateway.EvaluateRequest) (*gateway.EvaluateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.decode(req.GetProposedTransaction())
	if err != nil {
		return nil, err
	}
	sim := &simulation{reads: map[string]uint64{}, writes: map[string][]byte{}}
	out, err := s.run(sim, d.args)
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return &gateway.EvaluateResponse{Result: &peer.Response{Status: 200, Payload: out}}, nil
}

func (s *peerServer) Endorse(ctx context.Context, req *gateway.EndorseRequest) (*gateway.EndorseResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.decode(req.GetProposedTransaction())
	if err != nil {
		return nil, err
	}
	if s.failNext != "" {
		msg := s.failNext
		s.failNext = ""
		return nil, status.Error(codes.Unavailable, msg)
	}
	sim := &simulation{reads: map[string]uint64{}, writes: map[string][]byte{}, creator: d.sigHeader.GetCreator()}
	out, err := s.run(sim, d.args)
	if err != nil {
		return nil, status.Error(codes.Aborted, "chaincode response 500, "+err.Error())
	}
	s.pending[d.chHeader.GetTxId()] = sim
	prp, _ := proto.Marshal(&peer.ProposalResponsePayload{ProposalHash: sha(d.propBytes), Extension: mustMarshal(&peer.ChaincodeAction{Response: &peer.Response{Status: 200, Payload: out}})})
	cap := mustMarshal(&peer.ChaincodeActionPayload{ChaincodeProposalPayload: d.payload, Action: &peer.ChaincodeEndorsedAction{ProposalResponsePayload: prp}})
	tx := mustMarshal(&peer.Transaction{Actions: []*peer.TransactionAction{{Header: d.header.GetSignatureHeader(), Payload: cap}}})
	payload := mustMarshal(&common.Payload{Header: d.header, Data: tx})
	return &gateway.EndorseResponse{PreparedTransaction: &common.Envelope{Payload: payload}}, nil
}

func (s *peerServer) Submit(ctx context.Context, req *gateway.SubmitRequest) (*gateway.SubmitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	env := req.GetPreparedTransaction()
	sim, ok := s.pending[req.GetTransactionId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "transaction was not endorsed")
	}
	delete(s.pending, req.GetTransactionId())
	if err := s.verify(sim.creator, env.GetPayload(), env.GetSignature()); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	s.block++
	code := peer.TxValidationCode_VALID
	for k, ver := range sim.reads {
		if s.state[k].ver != ver {
			code = peer.TxValidationCode_MVCC_READ_CONFLICT
		}
	}
	if code == peer.TxValidationCode_VALID {
		for k, v := range sim.writes {
			s.state[k] = versioned{v: v, ver: s.block}
		}
	}
	s.statuses[req.GetTransactionId()] = code
	return &gateway.SubmitResponse{}, nil
}

func (s *peerServer) CommitStatus(ctx context.Context, req *gateway.SignedCommitStatusRequest) (*gateway.CommitStatusResponse, error) {
	var r gateway.CommitStatusRequest
	if err := proto.Unmarshal(req.GetRequest(), &r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.verify(r.GetIdentity(), req.GetRequest(), req.GetSignature()); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	code, ok := s.statuses[r.GetTransactionId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown transaction")
	}
	return &gateway.CommitStatusResponse{Result: code, BlockNumber: s.block}, nil
}

func sha(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *peerServer) get(sim *simulation, k string) []byte {
	if v, ok := sim.writes[k]; ok {
		return v
	}
	sim.reads[k] = s.state[k].ver
	return s.state[k].v
}

// run executes one evidence chaincode transaction (deploy/fabric/chaincode).
func (s *peerServer) run(sim *simulation, args []string) ([]byte, error) {
	fn, a := args[0], args[1:]
	need := map[string]int{"RegisterLog": 1, "AnchorCheckpoint": 1, "RecordEvidence": 5, "Anchor": 6, "GetEvidence": 2, "LatestCheckpoint": 1}
	if n, ok := need[fn]; !ok || len(a) != n {
		return nil, fmt.Errorf("unknown transaction %s/%d", fn, len(a))
	}
	switch fn {
	case "RegisterLog":
		v, err := note.NewVerifier(a[0])
		if err != nil {
			return nil, err
		}
		k := "log/" + v.Name()
		if old := s.get(sim, k); old != nil && string(old) != a[0] {
			return nil, fmt.Errorf("log %q is registered with another key", v.Name())
		}
		sim.writes[k] = []byte(a[0])
		return []byte(`{}`), nil
	case "AnchorCheckpoint":
		return s.anchorCheckpoint(sim, a[0], 0)
	case "RecordEvidence":
		return s.recordEvidence(sim, a)
	case "Anchor":
		if _, err := s.recordEvidence(sim, a[:5]); err != nil {
			return nil, err
		}
		idx, _ := strconv.ParseUint(a[1], 10, 64)
		return s.anchorCheckpoint(sim, a[5], idx+1)
	case "GetEvidence":
		v := s.get(sim, "evidence/"+a[0]+"/"+a[1])
		if v == nil {
			return nil, fmt.Errorf("entry %s of %q is not recorded", a[1], a[0])
		}
		return v, nil
	default: // LatestCheckpoint
		v := s.get(sim, "latest/"+a[0])
		if v == nil {
			return nil, fmt.Errorf("no checkpoint of %q is anchored", a[0])
		}
		return v, nil
	}
}

func (s *peerServer) recordEvidence(sim *simulation, a []string) ([]byte, error) {
	if s.get(sim, "log/"+a[0]) == nil {
		return nil, fmt.Errorf("log %q is not registered", a[0])
	}
	if _, err := strconv.ParseUint(a[1], 10, 64); err != nil {
		return nil, err
	}
	rec, _ := json.Marshal(map[string]any{"origin": a[0], "index": a[1], "leaf_hash": a[2], "envelope_sha256": a[3], "revision": a[4]})
	k := "evidence/" + a[0] + "/" + a[1]
	if old := s.get(sim, k); old != nil {
		var o map[string]any
		_ = json.Unmarshal(old, &o)
		if o["leaf_hash"] != a[2] || o["envelope_sha256"] != a[3] {
			return nil, fmt.Errorf("entry %s of %q was recorded with other digests", a[1], a[0])
		}
		return old, nil
	}
	sim.writes[k] = rec
	return rec, nil
}

func (s *peerServer) anchorCheckpoint(sim *simulation, signed string, mustCover uint64) ([]byte, error) {
	origin, _, _ := strings.Cut(signed, "\n")
	vkey := s.get(sim, "log/"+origin)
	if vkey == nil {
		return nil, fmt.Errorf("log %q is not registered", origin)
	}
	v, err := note.NewVerifier(string(vkey))
	if err != nil {
		return nil, err
	}
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, err
	}
	if size < mustCover {
		return nil, fmt.Errorf("checkpoint of size %d does not cover entry %d", size, mustCover-1)
	}
	ac, _ := json.Marshal(map[string]any{"origin": origin, "size": size, "root": lines[2], "note": signed})
	ck := fmt.Sprintf("checkpoint/%s/%020d", origin, size)
	if old := s.get(sim, ck); old != nil {
		var o map[string]any
		_ = json.Unmarshal(old, &o)
		if o["root"] != lines[2] {
			return nil, fmt.Errorf("log %q forked at size %d", origin, size)
		}
		return old, nil
	}
	sim.writes[ck] = ac
	var latest struct {
		Size uint64 `json:"size"`
	}
	if old := s.get(sim, "latest/"+origin); old == nil || (json.Unmarshal(old, &latest) == nil && latest.Size <= size) {
		sim.writes["latest/"+origin] = ac
	}
	return ac, nil
}

// startPeer serves the gateway on a free 127.0.0.1 port and dials it.
func startPeer(t *testing.T) (*peerServer, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps := newPeerServer()
	srv := grpc.NewServer()
	gateway.RegisterGatewayServer(srv, ps)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-done
	})
	return ps, conn
}

// newIdentity returns a self-signed ECDSA P-256 client identity.
func newIdentity(t *testing.T, msp string) Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chaosgate-client", Organization: []string{msp}}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{MSPID: msp, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})}
}
