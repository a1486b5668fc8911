package fabric

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/fabrictest"
)

// dialPeer starts the in-process gateway and dials it through Dial, the
// way the commands do: TLS with the peer's CA file and server name, the
// identity from files.
func dialPeer(t *testing.T) (*fabrictest.Peer, *Session, Config) {
	t.Helper()
	ps := fabrictest.Start(t)
	cert, key := fabrictest.NewIdentity(t, "Org1MSP").WriteFiles(t, t.TempDir())
	cfg := Config{Peer: ps.Addr, TLSCAFile: ps.CAFile, ServerName: fabrictest.ServerName, MSPID: "Org1MSP", CertFile: cert, KeyFile: key, Timeout: 10 * time.Second}
	s, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ps, s, s.Config()
}

func TestAnchorPendingGivesTransactionAndBlockAndRecordsThem(t *testing.T) {
	ctx := context.Background()
	ps, sess, cfg := dialPeer(t)
	if cfg.Channel != DefaultChannel || cfg.Chaincode != DefaultChaincode {
		t.Fatalf("defaults not filled: %+v", cfg)
	}
	local := newLocal(t, newKeys(t))
	l := sess.Ledger(local)
	if res, err := l.AnchorPending(ctx); err != nil || !res.Already || res.Checkpoint.Size != 0 || ps.Block() != 0 {
		t.Fatalf("empty log: %+v %v (block %d)", res, err, ps.Block())
	}
	for i := 0; i < 3; i++ {
		if _, err := local.Record(ctx, "v1", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.VerifyAll(ctx); evidence.KindOf(err) != evidence.KindNotFound {
		t.Fatalf("verify before any anchor: %v", err)
	}
	res, err := l.AnchorPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := local.Checkpoint(ctx)
	if res.Already || res.Recorded != 3 || res.TxID == "" || res.Block != ps.Block() || res.Checkpoint.Size != 3 || res.Checkpoint.Root != cp.Root {
		t.Fatalf("first anchor: %+v (peer at block %d)", res, ps.Block())
	}
	firstBlock := res.Block
	// Nothing new: nothing submitted.
	again, err := l.AnchorPending(ctx)
	if err != nil || !again.Already || again.TxID != "" || ps.Block() != firstBlock {
		t.Fatalf("second anchor: %+v %v (block %d)", again, err, ps.Block())
	}
	for i := 3; i < 5; i++ {
		if _, err := local.Record(ctx, "v2", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	res2, err := l.AnchorPending(ctx)
	if err != nil || res2.Recorded != 2 || res2.Block <= firstBlock || res2.TxID == res.TxID {
		t.Fatalf("third anchor: %+v %v", res2, err)
	}
	as, err := evidence.ReadAnchors(local.Dir())
	if err != nil || len(as) != 2 {
		t.Fatalf("local anchors: %+v %v", as, err)
	}
	if as[0].TxID != res.TxID || as[0].Block != firstBlock || as[0].TreeSize != 3 || as[0].Root != cp.Root.String() || as[0].Channel != "evidence" || as[0].Backend != "fabric" {
		t.Fatalf("anchor record %+v, result %+v", as[0], res)
	}
	if a, ok := evidence.CoveringAnchor(as, 3); !ok || a.TxID != res2.TxID {
		t.Fatalf("entry 3 covered by %+v", a)
	}
	rep, err := l.VerifyAll(ctx)
	if err != nil || rep.TreeSize != 5 || rep.EntriesChecked != 5 || rep.NotRecorded != 0 {
		t.Fatalf("verify all: %+v %v", rep, err)
	}
	// The channel's record of entry 1 altered: named.
	lh, es, ok := ps.Evidence(local.Origin(), 1)
	if !ok || lh == "" || es == "" {
		t.Fatal("entry 1 not recorded in the channel")
	}
	ps.SetEvidence(local.Origin(), 1, lh, strings.Repeat("0", 64))
	if _, err := l.VerifyAll(ctx); evidence.KindOf(err) != evidence.KindTampered || !strings.Contains(err.Error(), "entry 1: local envelope SHA-256") {
		t.Fatalf("altered anchored digest: %v", err)
	}
}

// TestRewrittenLocalLogIsRefusedAndNamed: a local log rebuilt with the same
// keys after it was anchored (entry 1 differs) is neither anchored on top
// of what Fabric holds nor verified; VerifyAll names entry 1.
func TestRewrittenLocalLogIsRefusedAndNamed(t *testing.T) {
	ctx := context.Background()
	_, sess, _ := dialPeer(t)
	keys := newKeys(t)
	honest := newLocal(t, keys)
	for i := 0; i < 3; i++ {
		if _, err := honest.Record(ctx, "v1", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sess.Ledger(honest).AnchorPending(ctx); err != nil {
		t.Fatal(err)
	}
	forged := newLocal(t, keys)
	for _, i := range []int{0, 101, 2, 3} {
		if _, err := forged.Record(ctx, "v1", pred(i)); err != nil {
			t.Fatal(err)
		}
	}
	fl := sess.Ledger(forged)
	if _, err := fl.AnchorPending(ctx); evidence.KindOf(err) != evidence.KindTampered || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("anchoring a rewritten log: %v", err)
	}
	if _, err := fl.VerifyAll(ctx); evidence.KindOf(err) != evidence.KindTampered || !strings.Contains(err.Error(), "entry 1: local leaf hash") {
		t.Fatalf("verify rewritten log: %v", err)
	}
	if as, _ := evidence.ReadAnchors(forged.Dir()); len(as) != 0 {
		t.Fatalf("a refused anchoring was recorded: %+v", as)
	}
}

func TestDialNamesTheBadField(t *testing.T) {
	ps := fabrictest.Start(t)
	dir := t.TempDir()
	id := fabrictest.NewIdentity(t, "Org1MSP")
	cert, key := id.WriteFiles(t, dir)
	other := fabrictest.NewIdentity(t, "Org1MSP")
	_, otherKey := other.WriteFiles(t, t.TempDir())
	openKey := filepath.Join(dir, "open.pem")
	os.WriteFile(openKey, id.KeyPEM, 0o644)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	base := Config{Peer: ps.Addr, TLSCAFile: ps.CAFile, ServerName: fabrictest.ServerName, MSPID: "Org1MSP", CertFile: cert, KeyFile: key}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
		kind evidence.Kind
	}{
		{"no peer", func(c *Config) { c.Peer = "" }, "peer: the peer's gateway address is required", evidence.KindInvalid},
		{"bad peer", func(c *Config) { c.Peer = "localhost" }, `peer: "localhost" is not host:port`, evidence.KindInvalid},
		{"no CA", func(c *Config) { c.TLSCAFile = "" }, "tls_ca_file: the peer's TLS CA certificate file is required", evidence.KindInvalid},
		{"CA not PEM", func(c *Config) { c.TLSCAFile = notPEM }, "tls_ca_file: " + notPEM + " holds no PEM certificate", evidence.KindInvalid},
		{"missing CA", func(c *Config) { c.TLSCAFile = filepath.Join(dir, "nope") }, "tls_ca_file: open ", evidence.KindInvalid},
		{"no MSP", func(c *Config) { c.MSPID = "" }, "msp_id: the client's MSP id is required", evidence.KindInvalid},
		{"cert not PEM", func(c *Config) { c.CertFile = notPEM }, "cert_file: " + notPEM, evidence.KindInvalid},
		{"key readable by others", func(c *Config) { c.KeyFile = openKey }, "key_file: " + openKey + " has mode 0644", evidence.KindPermission},
		{"key of another cert", func(c *Config) { c.KeyFile = otherKey }, "key_file: " + otherKey + " is not the private key of " + cert, evidence.KindInvalid},
	} {
		cfg := base
		c.edit(&cfg)
		s, err := Dial(cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: dialled", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || evidence.KindOf(err) != c.kind {
			t.Errorf("%s: %v (kind %v), want %q (%v)", c.name, err, evidence.KindOf(err), c.want, c.kind)
		}
	}
}

func TestUnreachableOrMisnamedPeerIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ps := fabrictest.Start(t)
	cert, key := fabrictest.NewIdentity(t, "Org1MSP").WriteFiles(t, t.TempDir())
	local := newLocal(t, newKeys(t))
	if _, err := local.Record(ctx, "v1", pred(0)); err != nil {
		t.Fatal(err)
	}
	// Without the server name, 127.0.0.1 is checked against a certificate
	// for peer0.org1.example.com only.
	s, err := Dial(Config{Peer: ps.Addr, TLSCAFile: ps.CAFile, MSPID: "Org1MSP", CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Ledger(local).AnchorPending(ctx)
	s.Close()
	if evidence.KindOf(err) != evidence.KindUnavailable || !strings.Contains(err.Error(), "server name") {
		t.Fatalf("TLS name mismatch: %v", err)
	}
	ps.Stop()
	s, err = Dial(Config{Peer: ps.Addr, TLSCAFile: ps.CAFile, ServerName: fabrictest.ServerName, MSPID: "Org1MSP", CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Ledger(local).AnchorPending(ctx); evidence.KindOf(err) != evidence.KindUnavailable || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("stopped peer: %v", err)
	}
	if as, _ := evidence.ReadAnchors(local.Dir()); len(as) != 0 {
		t.Fatalf("a failed anchoring was recorded: %+v", as)
	}
}
