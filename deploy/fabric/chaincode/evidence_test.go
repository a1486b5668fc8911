package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"go.uber.org/goleak"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStub is a hand-written, map-backed world state with the few stub
// methods the contract uses; any other call panics through the nil
// embedded interface.
type fakeStub struct {
	shim.ChaincodeStubInterface
	state map[string][]byte
	txID  string
	now   time.Time
}

func (s *fakeStub) GetState(k string) ([]byte, error) { return s.state[k], nil }
func (s *fakeStub) PutState(k string, v []byte) error {
	if k == "" {
		return fmt.Errorf("empty key")
	}
	s.state[k] = append([]byte(nil), v...)
	return nil
}
func (s *fakeStub) CreateCompositeKey(obj string, attrs []string) (string, error) {
	return "\x00" + obj + "\x00" + strings.Join(attrs, "\x00") + "\x00", nil
}
func (s *fakeStub) GetTxID() string { return s.txID }
func (s *fakeStub) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return timestamppb.New(s.now), nil
}

type fakeCtx struct{ stub *fakeStub }

func (c *fakeCtx) GetStub() shim.ChaincodeStubInterface  { return c.stub }
func (c *fakeCtx) GetClientIdentity() cid.ClientIdentity { return nil }

func newCtx() *fakeCtx {
	return &fakeCtx{stub: &fakeStub{state: map[string][]byte{}, txID: "tx1", now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}}
}

type testLog struct {
	signer note.Signer
	vkey   string
}

func newLog(t *testing.T, origin string) *testLog {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{signer: s, vkey: vkey}
}

func (l *testLog) checkpoint(t *testing.T, size uint64, rootSeed string) string {
	root := sha256.Sum256([]byte(rootSeed))
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", l.signer.Name(), size, base64.StdEncoding.EncodeToString(root[:]))}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func TestAnchorCheckpoints(t *testing.T) {
	c := &EvidenceContract{}
	ctx := newCtx()
	lg := newLog(t, "example.test/log")
	if _, err := c.AnchorCheckpoint(ctx, lg.checkpoint(t, 1, "a")); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("unregistered log: %v", err)
	}
	if _, err := c.RegisterLog(ctx, lg.vkey); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterLog(ctx, lg.vkey); err != nil {
		t.Fatalf("re-registering the same key: %v", err)
	}
	other := newLog(t, "example.test/log")
	if _, err := c.RegisterLog(ctx, other.vkey); err == nil {
		t.Fatal("another key for a registered origin accepted")
	}
	ac, err := c.AnchorCheckpoint(ctx, lg.checkpoint(t, 5, "r5"))
	if err != nil || ac.Size != 5 || ac.TxID != "tx1" {
		t.Fatalf("anchor: %+v %v", ac, err)
	}
	// A checkpoint signed by another key is refused.
	if _, err := c.AnchorCheckpoint(ctx, other.checkpoint(t, 6, "r6")); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("foreign signature: %v", err)
	}
	// A tampered body is refused.
	cp := lg.checkpoint(t, 7, "r7")
	if _, err := c.AnchorCheckpoint(ctx, strings.Replace(cp, "\n7\n", "\n8\n", 1)); err == nil {
		t.Fatal("tampered checkpoint accepted")
	}
	// Same size, other root: a fork, refused.
	if _, err := c.AnchorCheckpoint(ctx, lg.checkpoint(t, 5, "fork")); err == nil || !strings.Contains(err.Error(), "forked") {
		t.Fatalf("fork: %v", err)
	}
	if _, err := c.AnchorCheckpoint(ctx, lg.checkpoint(t, 9, "r9")); err != nil {
		t.Fatal(err)
	}
	// An older checkpoint anchored late does not move the latest back.
	if _, err := c.AnchorCheckpoint(ctx, lg.checkpoint(t, 7, "r7")); err != nil {
		t.Fatal(err)
	}
	latest, err := c.LatestCheckpoint(ctx, "example.test/log")
	if err != nil || latest.Size != 9 {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	got, err := c.GetCheckpoint(ctx, "example.test/log", 7)
	if err != nil || got.Size != 7 {
		t.Fatalf("get 7: %+v %v", got, err)
	}
	if _, err := c.GetCheckpoint(ctx, "example.test/log", 6); err == nil {
		t.Fatal("missing checkpoint found")
	}
}

func TestRecordEvidenceWriteOnce(t *testing.T) {
	c := &EvidenceContract{}
	ctx := newCtx()
	lg := newLog(t, "example.test/log")
	if _, err := c.RecordEvidence(ctx, "example.test/log", 0, "lh", "es", "v1"); err == nil {
		t.Fatal("evidence for an unregistered log accepted")
	}
	if _, err := c.RegisterLog(ctx, lg.vkey); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Anchor(ctx, "example.test/log", 0, "lh0", "es0", "v1", lg.checkpoint(t, 1, "r1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RecordEvidence(ctx, "example.test/log", 0, "lh0", "es0", "v1"); err != nil {
		t.Fatalf("idempotent re-record: %v", err)
	}
	if _, err := c.RecordEvidence(ctx, "example.test/log", 0, "other", "es0", "v1"); err == nil || !strings.Contains(err.Error(), "other digests") {
		t.Fatalf("rewrite: %v", err)
	}
	if _, err := c.Anchor(ctx, "example.test/log", 5, "lh5", "es5", "v1", lg.checkpoint(t, 3, "r3")); err == nil || !strings.Contains(err.Error(), "does not cover") {
		t.Fatalf("checkpoint not covering the entry: %v", err)
	}
	rec, err := c.GetEvidence(ctx, "example.test/log", 0)
	if err != nil || rec.LeafHash != "lh0" || rec.Revision != "v1" {
		t.Fatalf("get: %+v %v", rec, err)
	}
	if _, err := c.GetEvidence(ctx, "example.test/log", 1); err == nil {
		t.Fatal("missing evidence found")
	}
	if _, err := c.RecordEvidence(ctx, "example.test/log", 1, "", "x", "v"); err == nil {
		t.Fatal("empty leaf hash accepted")
	}
}

func TestChaincodeMetadata(t *testing.T) {
	cc, err := contractapiNew()
	if err != nil {
		t.Fatal(err)
	}
	if cc == nil {
		t.Fatal("no chaincode")
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	f.Add("o\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		origin, size, root, err := parseCheckpoint(s)
		if err != nil {
			return
		}
		if _, _, _, err := parseCheckpoint(fmt.Sprintf("%s\n%d\n%s\n", origin, size, root)); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
