// Package fabrictest runs an in-process Hyperledger Fabric Gateway service
// on real gRPC with TLS, for tests of chaosgate's Fabric evidence backend
// (evidence/fabric) and of the commands that use it. It checks every client
// signature against the creator certificate, simulates the evidence
// chaincode's transactions (deploy/fabric/chaincode) against an MVCC world
// state at Endorse, commits their write sets in numbered blocks at Submit
// and reports each transaction's validation code and block at
// CommitStatus, so the real fabric-gateway client can be exercised without
// a Fabric network. Errors take the shapes a Fabric peer's gateway gives:
// a chaincode error at Evaluate is gRPC Unknown "evaluate call to endorser
// returned error: chaincode response 500, ..."; at Endorse, Aborted.
package fabrictest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ServerName is the DNS name in the peer's TLS certificate (the only name
// in it: clients dialing 127.0.0.1 must set it as the TLS server name).
const ServerName = "peer0.org1.example.com"

// Peer is a running in-process Gateway service.
type Peer struct {
	// Addr is the host:port it listens on (127.0.0.1).
	Addr string
	// CAFile is the PEM file of the CA that signed its TLS certificate.
	CAFile string
	// CAPEM is the content of CAFile.
	CAPEM []byte

	srv  *grpc.Server
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	state    map[string]versioned
	pending  map[string]*simulation
	statuses map[string]txStatus
	block    uint64
	signed   int
	failNext string
}

type txStatus struct {
	code  peer.TxValidationCode
	block uint64
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

type gatewayService struct {
	gateway.UnimplementedGatewayServer
	p *Peer
}

// Start serves the gateway with TLS on a free 127.0.0.1 port until the test
// ends (or Stop).
func Start(t testing.TB) *Peer {
	t.Helper()
	caPEM, cert := tlsMaterial(t)
	caFile := filepath.Join(t.TempDir(), "fabric-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{Addr: lis.Addr().String(), CAFile: caFile, CAPEM: caPEM, done: make(chan struct{}),
		state: map[string]versioned{}, pending: map[string]*simulation{}, statuses: map[string]txStatus{}}
	p.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	gateway.RegisterGatewayServer(p.srv, &gatewayService{p: p})
	go func() { defer close(p.done); _ = p.srv.Serve(lis) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop stops serving (idempotent): later calls find nothing listening.
func (p *Peer) Stop() {
	p.once.Do(func() {
		p.srv.Stop()
		<-p.done
	})
}

// Dial returns a TLS client connection to the peer, closed when the test
// ends.
func (p *Peer) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAPEM)
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, ServerName)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Signed is how many client signatures the peer has verified.
func (p *Peer) Signed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signed
}

// Block is the height of the latest committed block (0: none).
func (p *Peer) Block() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.block
}

// FailNext makes the next Endorse fail as an unreachable peer would
// (gRPC Unavailable with msg).
func (p *Peer) FailNext(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = msg
}

// Evidence returns the digests the channel holds for entry index of origin.
func (p *Peer) Evidence(origin string, index uint64) (leafHash, envelopeSHA256 string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.state[evidenceKey(origin, strconv.FormatUint(index, 10))].v
	if v == nil {
		return "", "", false
	}
	var rec map[string]any
	_ = json.Unmarshal(v, &rec)
	lh, _ := rec["leaf_hash"].(string)
	es, _ := rec["envelope_sha256"].(string)
	return lh, es, true
}

// SetEvidence overwrites the digests recorded for entry index of origin in
// the world state, as a test that tampers with what was anchored.
func (p *Peer) SetEvidence(origin string, index uint64, leafHash, envelopeSHA256 string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.block++
	rec, _ := json.Marshal(map[string]any{"origin": origin, "index": strconv.FormatUint(index, 10), "leaf_hash": leafHash, "envelope_sha256": envelopeSHA256})
	p.state[evidenceKey(origin, strconv.FormatUint(index, 10))] = versioned{v: rec, ver: p.block}
}

func evidenceKey(origin, index string) string { return "evidence/" + origin + "/" + index }

// Identity is a Fabric client identity: MSP id, X.509 certificate and
// PKCS#8 private key, PEM.
type Identity struct {
	MSPID   string
	CertPEM []byte
	KeyPEM  []byte
}

// NewIdentity returns a self-signed ECDSA P-256 client identity of mspID.
func NewIdentity(t testing.TB, mspID string) Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chaosgate-client", Organization: []string{mspID}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{MSPID: mspID, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})}
}

// WriteFiles writes the identity's certificate (mode 0644) and key (mode
// 0600) into dir and returns their paths.
func (id Identity) WriteFiles(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, id.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, id.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsMaterial makes a CA and a server certificate for ServerName signed by
// it.
func tlsMaterial(t testing.TB) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tlsca.org1.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ServerName}, DNSNames: []string{ServerName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert
}

func (p *Peer) verify(creator, msg, sig []byte) error {
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
	p.signed++
	return nil
}

type decodedProposal struct {
	header    *common.Header
	chHeader  *common.ChannelHeader
	sigHeader *common.SignatureHeader
	payload   []byte
	args      []string
	propBytes []byte
}

func (p *Peer) decode(sp *peer.SignedProposal) (*decodedProposal, error) {
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
	if err := p.verify(d.sigHeader.GetCreator(), sp.GetProposalBytes(), sp.GetSignature()); err != nil {
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
	for _, a := range cis.GetChaincodeSpec().GetInput().GetArgs() {
		d.args = append(d.args, string(a))
	}
	if len(d.args) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no transaction name")
	}
	return d, nil
}

// Evaluate runs a query transaction against the world state without
// committing it.
func (g *gatewayService) Evaluate(ctx context.Context, req *gateway.EvaluateRequest) (*gateway.EvaluateResponse, error) {
	p := g.p
	p.mu.Lock()
	defer p.mu.Unlock()
	d, err := p.decode(req.GetProposedTransaction())
	if err != nil {
		return nil, err
	}
	sim := &simulation{reads: map[string]uint64{}, writes: map[string][]byte{}}
	out, err := p.run(sim, d.args)
	if err != nil {
		return nil, status.Error(codes.Unknown, "evaluate call to endorser returned error: chaincode response 500, "+err.Error())
	}
	return &gateway.EvaluateResponse{Result: &peer.Response{Status: 200, Payload: out}}, nil
}

// Endorse simulates a transaction and returns it prepared for Submit.
func (g *gatewayService) Endorse(ctx context.Context, req *gateway.EndorseRequest) (*gateway.EndorseResponse, error) {
	p := g.p
	p.mu.Lock()
	defer p.mu.Unlock()
	d, err := p.decode(req.GetProposedTransaction())
	if err != nil {
		return nil, err
	}
	if p.failNext != "" {
		msg := p.failNext
		p.failNext = ""
		return nil, status.Error(codes.Unavailable, msg)
	}
	sim := &simulation{reads: map[string]uint64{}, writes: map[string][]byte{}, creator: d.sigHeader.GetCreator()}
	out, err := p.run(sim, d.args)
	if err != nil {
		return nil, status.Error(codes.Aborted, "chaincode response 500, "+err.Error())
	}
	p.pending[d.chHeader.GetTxId()] = sim
	prp := mustMarshal(&peer.ProposalResponsePayload{ProposalHash: sha(d.propBytes), Extension: mustMarshal(&peer.ChaincodeAction{Response: &peer.Response{Status: 200, Payload: out}})})
	cap := mustMarshal(&peer.ChaincodeActionPayload{ChaincodeProposalPayload: d.payload, Action: &peer.ChaincodeEndorsedAction{ProposalResponsePayload: prp}})
	tx := mustMarshal(&peer.Transaction{Actions: []*peer.TransactionAction{{Header: d.header.GetSignatureHeader(), Payload: cap}}})
	payload := mustMarshal(&common.Payload{Header: d.header, Data: tx})
	return &gateway.EndorseResponse{PreparedTransaction: &common.Envelope{Payload: payload}}, nil
}

// Submit commits an endorsed transaction in a new block: its writes
// apply when its reads are still current (MVCC).
func (g *gatewayService) Submit(ctx context.Context, req *gateway.SubmitRequest) (*gateway.SubmitResponse, error) {
	p := g.p
	p.mu.Lock()
	defer p.mu.Unlock()
	env := req.GetPreparedTransaction()
	sim, ok := p.pending[req.GetTransactionId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "transaction was not endorsed")
	}
	delete(p.pending, req.GetTransactionId())
	if err := p.verify(sim.creator, env.GetPayload(), env.GetSignature()); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	p.block++
	code := peer.TxValidationCode_VALID
	for k, ver := range sim.reads {
		if p.state[k].ver != ver {
			code = peer.TxValidationCode_MVCC_READ_CONFLICT
		}
	}
	if code == peer.TxValidationCode_VALID {
		for k, v := range sim.writes {
			p.state[k] = versioned{v: v, ver: p.block}
		}
	}
	p.statuses[req.GetTransactionId()] = txStatus{code: code, block: p.block}
	return &gateway.SubmitResponse{}, nil
}

// CommitStatus reports a submitted transaction's validation code and
// block.
func (g *gatewayService) CommitStatus(ctx context.Context, req *gateway.SignedCommitStatusRequest) (*gateway.CommitStatusResponse, error) {
	p := g.p
	var r gateway.CommitStatusRequest
	if err := proto.Unmarshal(req.GetRequest(), &r); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.verify(r.GetIdentity(), req.GetRequest(), req.GetSignature()); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	st, ok := p.statuses[r.GetTransactionId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown transaction")
	}
	return &gateway.CommitStatusResponse{Result: st.code, BlockNumber: st.block}, nil
}

func sha(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // proto messages built here always marshal
	}
	return b
}

func (p *Peer) get(sim *simulation, k string) []byte {
	if v, ok := sim.writes[k]; ok {
		return v
	}
	sim.reads[k] = p.state[k].ver
	return p.state[k].v
}

// run executes one evidence chaincode transaction (deploy/fabric/chaincode).
func (p *Peer) run(sim *simulation, args []string) ([]byte, error) {
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
		if old := p.get(sim, k); old != nil && string(old) != a[0] {
			return nil, fmt.Errorf("log %q is registered with another key", v.Name())
		}
		sim.writes[k] = []byte(a[0])
		return []byte(`{}`), nil
	case "AnchorCheckpoint":
		return p.anchorCheckpoint(sim, a[0], 0)
	case "RecordEvidence":
		return p.recordEvidence(sim, a)
	case "Anchor":
		if _, err := p.recordEvidence(sim, a[:5]); err != nil {
			return nil, err
		}
		idx, _ := strconv.ParseUint(a[1], 10, 64)
		return p.anchorCheckpoint(sim, a[5], idx+1)
	case "GetEvidence":
		v := p.get(sim, evidenceKey(a[0], a[1]))
		if v == nil {
			return nil, fmt.Errorf("entry %s of %q is not recorded", a[1], a[0])
		}
		return v, nil
	default: // LatestCheckpoint
		v := p.get(sim, "latest/"+a[0])
		if v == nil {
			return nil, fmt.Errorf("no checkpoint of %q is anchored", a[0])
		}
		return v, nil
	}
}

func (p *Peer) recordEvidence(sim *simulation, a []string) ([]byte, error) {
	if p.get(sim, "log/"+a[0]) == nil {
		return nil, fmt.Errorf("log %q is not registered", a[0])
	}
	if _, err := strconv.ParseUint(a[1], 10, 64); err != nil {
		return nil, err
	}
	rec, _ := json.Marshal(map[string]any{"origin": a[0], "index": a[1], "leaf_hash": a[2], "envelope_sha256": a[3], "revision": a[4]})
	k := evidenceKey(a[0], a[1])
	if old := p.get(sim, k); old != nil {
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

func (p *Peer) anchorCheckpoint(sim *simulation, signed string, mustCover uint64) ([]byte, error) {
	origin, _, _ := strings.Cut(signed, "\n")
	vkey := p.get(sim, "log/"+origin)
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
	if len(lines) < 3 {
		return nil, errors.New("checkpoint body needs origin, size and root lines")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, err
	}
	if size < mustCover {
		return nil, fmt.Errorf("checkpoint of size %d does not cover entry %d", size, mustCover-1)
	}
	ac, _ := json.Marshal(map[string]any{"origin": origin, "size": size, "root": lines[2], "note": signed})
	ck := fmt.Sprintf("checkpoint/%s/%020d", origin, size)
	if old := p.get(sim, ck); old != nil {
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
	if old := p.get(sim, "latest/"+origin); old == nil || (json.Unmarshal(old, &latest) == nil && latest.Size <= size) {
		sim.writes["latest/"+origin] = ac
	}
	return ac, nil
}
