package fabric

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/fabrictest"
)

// startPeer serves the in-process gateway and dials it with TLS.
func startPeer(t *testing.T) (*fabrictest.Peer, *grpc.ClientConn) {
	t.Helper()
	ps := fabrictest.Start(t)
	return ps, ps.Dial(t)
}

func newIdentity(t *testing.T, msp string) Identity {
	t.Helper()
	id := fabrictest.NewIdentity(t, msp)
	return Identity{MSPID: id.MSPID, CertPEM: id.CertPEM, KeyPEM: id.KeyPEM}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type tick struct{ t time.Time }

func (c *tick) Now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func newLocal(t *testing.T, keys *evidence.Keys) *evidence.Ledger {
	t.Helper()
	l, err := evidence.Open(context.Background(), filepath.Join(t.TempDir(), "ledger"), evidence.Options{Keys: keys, Create: true, Clock: &tick{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func newKeys(t *testing.T) *evidence.Keys {
	t.Helper()
	k, err := evidence.GenerateKeys(filepath.Join(t.TempDir(), "keys"), "example.test/fabric")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pred(i int) *evidence.Predicate {
	return &evidence.Predicate{RunID: fmt.Sprint("run-", i), Experiment: evidence.Experiment{Name: "gameday"}}
}

func TestAppendAnchorsThroughTheGateway(t *testing.T) {
	ctx := context.Background()
	ps, conn := startPeer(t)
	gw, err := Connect(conn, newIdentity(t, "Org1MSP"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	keys := newKeys(t)
	l, err := New(ctx, newLocal(t, keys), gw, "evidence", "chaosgate")
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for i := 0; i < 5; i++ {
		r, err := l.Record(ctx, fmt.Sprint("v", i), pred(i))
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, r.Index)
	}
	if err := l.VerifyAnchors(ctx, idx...); err != nil {
		t.Fatal(err)
	}
	ac, err := l.AnchoredCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := l.Checkpoint(ctx)
	if ac.Size != 5 || ac.Root != cp.Root {
		t.Fatalf("anchored %v, local %v", ac.Checkpoint, cp.Checkpoint)
	}
	if ps.Signed() < 10 {
		t.Fatalf("only %d signed requests verified by the peer", ps.Signed())
	}
	// The evidence.LedgerAPI methods answer from the witnessed log.
	e, err := l.Entry(ctx, 3)
	if err != nil || e.Record.RunID != "run-3" {
		t.Fatalf("entry 3: %+v %v", e.Record, err)
	}
	if p, err := l.InclusionProof(ctx, 3, 5); err != nil || len(p) == 0 {
		t.Fatalf("inclusion proof: %v", err)
	}
	if _, err := l.ConsistencyProof(ctx, 2, 5); err != nil {
		t.Fatal(err)
	}
}

func TestForkedLocalLogRefusedAndDetected(t *testing.T) {
	ctx := context.Background()
	_, conn := startPeer(t)
	gw, err := Connect(conn, newIdentity(t, "Org1MSP"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	keys := newKeys(t)
	honest, err := New(ctx, newLocal(t, keys), gw, "evidence", "chaosgate")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := honest.Record(ctx, "v1", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A replacement log signed with the same keys but other content.
	forked, err := New(ctx, newLocal(t, keys), gw, "evidence", "chaosgate")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := forked.local.Record(ctx, "v1", pred(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := forked.VerifyAnchors(ctx); evidence.KindOf(err) != evidence.KindTampered || !strings.Contains(err.Error(), "Fabric anchored tree size 3") {
		t.Fatalf("truncated log: %v", err)
	}
	if _, err := forked.Record(ctx, "v1", pred(102)); err == nil || !strings.Contains(err.Error(), "forked") && !strings.Contains(err.Error(), "other digests") {
		t.Fatalf("fork anchored: %v", err)
	}
	if err := forked.VerifyAnchors(ctx); evidence.KindOf(err) != evidence.KindTampered || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("rewritten log: %v", err)
	}
	if err := honest.VerifyAnchors(ctx, 0, 1, 2); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayOutageThenAnchorPending(t *testing.T) {
	ctx := context.Background()
	ps, conn := startPeer(t)
	gw, err := Connect(conn, newIdentity(t, "Org1MSP"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	l, err := New(ctx, newLocal(t, newKeys(t)), gw, "evidence", "chaosgate")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(ctx, "v1", pred(0)); err != nil {
		t.Fatal(err)
	}
	ps.FailNext("peer unavailable")
	r, err := l.Record(ctx, "v1", pred(1))
	if err == nil || !strings.Contains(err.Error(), "not anchored in Fabric") || r.Index != 1 {
		t.Fatalf("outage: %+v %v", r, err)
	}
	if _, err := l.Record(ctx, "v1", pred(2)); err != nil {
		t.Fatal(err)
	}
	res, err := l.AnchorPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Recorded != 0 || !res.Already {
		t.Fatalf("%+v: entries re-recorded; the latest checkpoint already covers them", res)
	}
	if err := l.VerifyAnchors(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
}

func TestMismatchedIdentityRefusedByThePeer(t *testing.T) {
	_, conn := startPeer(t)
	a, b := newIdentity(t, "Org1MSP"), newIdentity(t, "Org1MSP")
	gw, err := Connect(conn, Identity{MSPID: "Org1MSP", CertPEM: a.CertPEM, KeyPEM: b.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	_, err = New(context.Background(), newLocal(t, newKeys(t)), gw, "evidence", "chaosgate")
	if evidence.KindOf(err) != evidence.KindInvalid && evidence.KindOf(err) != evidence.KindUnavailable || err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := Connect(conn, Identity{MSPID: "x", CertPEM: []byte("nope"), KeyPEM: b.KeyPEM}); evidence.KindOf(err) != evidence.KindInvalid {
		t.Fatalf("bad certificate: %v", err)
	}
}

// TestRealFabricNetwork runs against a real Fabric network when FABRIC_BIN
// points at the Fabric binaries; see deploy/fabric/README.md for the
// variables that describe the network and the deployed chaincode.
func TestRealFabricNetwork(t *testing.T) {
	bin := os.Getenv("FABRIC_BIN")
	if bin == "" {
		t.Skip("FABRIC_BIN is not set: no Fabric binaries on this machine, the real-network test is opt-in (see deploy/fabric/README.md)")
	}
	out, err := exec.Command(filepath.Join(bin, "peer"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s/peer version: %v\n%s", bin, err, out)
	}
	t.Logf("fabric: %s", strings.TrimSpace(string(out)))
	env := map[string]string{}
	for _, k := range []string{"FABRIC_GATEWAY", "FABRIC_MSPID", "FABRIC_CERT", "FABRIC_KEY", "FABRIC_TLS_CA", "FABRIC_CHANNEL", "FABRIC_CHAINCODE"} {
		if env[k] = os.Getenv(k); env[k] == "" {
			t.Fatalf("FABRIC_BIN is set but %s is not (see deploy/fabric/README.md)", k)
		}
	}
	sess, err := Dial(Config{Peer: env["FABRIC_GATEWAY"], TLSCAFile: env["FABRIC_TLS_CA"], ServerName: os.Getenv("FABRIC_TLS_SERVER_NAME"),
		MSPID: env["FABRIC_MSPID"], CertFile: env["FABRIC_CERT"], KeyFile: env["FABRIC_KEY"], Channel: env["FABRIC_CHANNEL"], Chaincode: env["FABRIC_CHAINCODE"]})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	gw := sess.Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := New(ctx, newLocal(t, newKeys(t)), gw, env["FABRIC_CHANNEL"], env["FABRIC_CHAINCODE"])
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Record(ctx, "v1", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.VerifyAnchors(ctx, 0, 1, 2); err != nil {
		t.Fatal(err)
	}
	res, err := l.AnchorPending(ctx)
	if err != nil || !res.Already {
		t.Fatalf("anchor pending after anchored appends: %+v %v", res, err)
	}
	rep, err := l.VerifyAll(ctx)
	if err != nil || rep.TreeSize != 3 || rep.EntriesChecked != 3 {
		t.Fatalf("verify all: %+v %v", rep, err)
	}
	as, err := evidence.ReadAnchors(l.local.Dir())
	if err != nil || len(as) != 3 || as[2].TxID == "" || as[2].Block == 0 {
		t.Fatalf("local anchors: %+v %v", as, err)
	}
	t.Logf("tree size 3 anchored in transaction %s, block %d", as[2].TxID, as[2].Block)
}
