package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/evidence"
)

// TestGateRefusesARolledBackLedger: a ledger replaced by an old copy of
// itself (it verifies: every entry, hash and checkpoint in it is signed)
// would hide the block recorded since. The gate, having read the newer
// ledger, refuses the older one on both endpoints, and a ledger removed
// altogether too; it answers again once the newer ledger is back.
func TestGateRefusesARolledBackLedger(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("f1", 32)
	recordEvidence(t, dir, rev, "pod-kill", "promote", "t-1")
	db := filepath.Join(dir, evidence.LedgerSubdir, evidence.DBFile)
	old, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	recordEvidence(t, dir, rev, "split-brain", "block", "t-2")
	cur, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dir, scripted(nil), nil)
	if argo, confirm, rollback := gateBoth(h, rev); argo != "block" || confirm != 412 || rollback != 200 {
		t.Fatalf("the ledger as recorded: %q %d %d", argo, confirm, rollback)
	}
	if err := os.WriteFile(db, old, 0o600); err != nil {
		t.Fatal(err)
	}
	argo, confirm, _ := gateBoth(h, rev)
	if argo == "promote" || confirm == 200 || !strings.Contains(argo, "tampered") {
		t.Fatalf("a ledger rolled back to its first entry: Argo %q, confirm-promotion %d", argo, confirm)
	}
	pre, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/pre-rollout", `{"name":"web","metadata":{"revision":"`+rev+`"}}`)
	if pre == 200 {
		t.Fatalf("pre-rollout over a rolled-back ledger: %d %s", pre, body)
	}
	if err := os.RemoveAll(filepath.Join(dir, evidence.LedgerSubdir)); err != nil {
		t.Fatal(err)
	}
	if pre, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/pre-rollout", `{"name":"web","metadata":{"revision":"`+rev+`"}}`); pre == 200 {
		t.Fatalf("pre-rollout with the ledger removed: %d %s", pre, body)
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, cur, 0o600); err != nil {
		t.Fatal(err)
	}
	if argo, confirm, rollback := gateBoth(h, rev); argo != "block" || confirm != 412 || rollback != 200 {
		t.Fatalf("the ledger restored: %q %d %d", argo, confirm, rollback)
	}
}
