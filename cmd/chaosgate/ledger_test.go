package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/chaosgate/chaosgate/evidence"
)

// cli runs chaosgate in-process and returns stdout, stderr text and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return out.String(), errb.String(), exitPromote
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			errb.WriteString(ee.err.Error())
		}
		return out.String(), errb.String(), ee.code
	}
	return out.String(), err.Error(), exitUsage
}

// chaosgateBinary returns the chaosgate binary: $CHAOSGATE_BIN (set by make
// test) or one built into a temp dir.
func chaosgateBinary(t *testing.T) string {
	t.Helper()
	bin, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func externalStatement(i int) string {
	return fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app","digest":{"sha256":"%064x"}}],"predicateType":"https://example.com/ci/v1","predicate":{"build":%d}}`, i, i)
}

func TestLedgerCLIRoundTrip(t *testing.T) {
	dir := t.TempDir()
	keys, ledger := filepath.Join(dir, "keys"), filepath.Join(dir, "ledger")
	out, errs, code := cli(t, "keygen", "--dir", keys, "--origin", "example.test/cli", "-o", "json")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	var info evidence.KeyInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Origin != "example.test/cli" {
		t.Fatalf("keygen output %q: %v", out, err)
	}
	if _, errs, code := cli(t, "keygen", "--dir", keys); code != exitUsage || !strings.Contains(errs, "already exists") {
		t.Fatalf("keygen over existing keys: %d %s", code, errs)
	}
	// Two appends through the CLI, then 998 through the library with the same keys.
	stmt := filepath.Join(dir, "st.json")
	for i := 0; i < 2; i++ {
		if err := os.WriteFile(stmt, []byte(externalStatement(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := cli(t, "ledger", "append", "--keys", keys, "--ledger", ledger, "--statement", stmt, "--revision", fmt.Sprintf("v%d", i)); code != 0 {
			t.Fatalf("append: %d %s", code, errs)
		}
	}
	k, err := evidence.LoadKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(context.Background(), ledger, evidence.Options{Keys: k})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 2 + w; i < 1000; i += 8 {
				if _, err := l.SignAndAppend(context.Background(), []byte(externalStatement(i)), fmt.Sprintf("v%d", i%10)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	l.Close()

	base := []string{"--keys", keys, "--ledger", ledger}
	for _, extra := range [][]string{nil, {"--from-scratch"}} {
		out, errs, code := cli(t, append(append([]string{"ledger", "verify", "-o", "json"}, base...), extra...)...)
		if code != 0 {
			t.Fatalf("verify %v: %d %s %s", extra, code, out, errs)
		}
		var rep evidence.VerifyReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.TreeSize != 1000 {
			t.Fatalf("verify report %s: %v", out, err)
		}
	}
	vkey, _, _ := cli(t, append([]string{"ledger", "pubkey"}, base...)...)
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		t.Fatalf("pubkey %q: %v", vkey, err)
	}
	cpText, _, _ := cli(t, append([]string{"ledger", "checkpoint"}, base...)...)
	n, err := note.Open([]byte(cpText), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("checkpoint note: %v", err)
	}
	cp, err := evidence.ParseCheckpoint([]byte(n.Text))
	if err != nil || cp.Size != 1000 {
		t.Fatalf("checkpoint %v %v", cp, err)
	}
	// Every proof, checked with x/mod/sumdb/tlog and transparency-dev/merkle.
	for i := 0; i < 1000; i++ {
		pt, errs, code := cli(t, append([]string{"ledger", "proof", "--index", fmt.Sprint(i)}, base...)...)
		if code != 0 {
			t.Fatalf("proof %d: %s", i, errs)
		}
		leaf, _, code := cli(t, append([]string{"ledger", "entry", "--index", fmt.Sprint(i), "--raw"}, base...)...)
		if code != 0 {
			t.Fatalf("entry %d", i)
		}
		p, err := evidence.ParseTlogProof([]byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Checkpoint, []byte(cpText)) || p.Index != uint64(i) {
			t.Fatalf("proof %d is against another checkpoint", i)
		}
		if err := tlog.CheckRecord(p.Hashes, 1000, cp.Root, int64(i), tlog.RecordHash([]byte(leaf))); err != nil {
			t.Fatalf("tlog: %d: %v", i, err)
		}
		var hs [][]byte
		for _, h := range p.Hashes {
			hs = append(hs, append([]byte(nil), h[:]...))
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), 1000, rfc6962.DefaultHasher.HashLeaf([]byte(leaf)), hs, cp.Root[:]); err != nil {
			t.Fatalf("merkle: %d: %v", i, err)
		}
	}
	// Search and show.
	out, _, code = cli(t, append([]string{"ledger", "search", "--revision", "v3", "-o", "json"}, base...)...)
	var found []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &found) != nil || len(found) != 100 {
		t.Fatalf("search: %d entries, code %d", len(found), code)
	}
	if _, errs, code := cli(t, append([]string{"ledger", "show", "--block", "0"}, base...)...); code != 0 {
		t.Fatalf("show block: %s", errs)
	}
	if _, _, code := cli(t, append([]string{"ledger", "show", "--index", "5000"}, base...)...); code != exitUsage {
		t.Fatalf("show missing entry: code %d", code)
	}
}

func TestLedgerExportBundle(t *testing.T) {
	dir := t.TempDir()
	keys, ledger := filepath.Join(dir, "keys"), filepath.Join(dir, "ledger")
	if _, errs, code := cli(t, "keygen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	k, err := evidence.LoadKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(context.Background(), ledger, evidence.Options{Keys: k, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := l.SignAndAppend(context.Background(), []byte(externalStatement(i)), "v1"); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	base := []string{"--keys", keys, "--ledger", ledger}
	// Export and check the bundle with its own verifier when python3 is here.
	bundle := filepath.Join(dir, "bundle")
	if _, errs, code := cli(t, append([]string{"ledger", "export", "--dir", bundle}, base...)...); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if py, err := exec.LookPath("python3"); err == nil {
		if out, err := exec.Command(py, filepath.Join(bundle, "verify.py"), bundle).CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
			t.Fatalf("bundle verify.py: %v\n%s", err, out)
		}
		// A flipped envelope byte is caught by the bundle verifier.
		p := filepath.Join(bundle, "entries", "7.envelope.json")
		b, _ := os.ReadFile(p)
		b[10] ^= 1
		_ = os.WriteFile(p, b, 0o644)
		out, err := exec.Command(py, filepath.Join(bundle, "verify.py"), bundle).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "entries/7: envelope SHA-256") {
			t.Fatalf("bundle verify.py missed a tampered envelope: %v\n%s", err, out)
		}
	} else {
		t.Log("python3 not found: the bundle's verify.py was not run")
	}
}

func TestLedgerVerifyBinaryExitsOneOnTamper(t *testing.T) {
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	keys, ledger := filepath.Join(dir, "keys"), filepath.Join(dir, "ledger")
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run("keygen", "--dir", keys); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	stmt := filepath.Join(dir, "st.json")
	for i := 0; i < 5; i++ {
		_ = os.WriteFile(stmt, []byte(externalStatement(i)), 0o600)
		if out, code := run("ledger", "append", "--keys", keys, "--ledger", ledger, "--statement", stmt, "--revision", "v1"); code != 0 {
			t.Fatalf("append: %s", out)
		}
	}
	if out, code := run("ledger", "verify", "--keys", keys, "--ledger", ledger); code != 0 {
		t.Fatalf("verify clean ledger: %d %s", code, out)
	}
	// Flip one byte of entry 3 in the bbolt file.
	db, err := bolt.Open(filepath.Join(ledger, evidence.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 3}
		v := append([]byte(nil), b.Get(k)...)
		v[len(v)-5] ^= 1
		return b.Put(k, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, code := run("ledger", "verify", "--keys", keys, "--ledger", ledger)
	if code != exitBlock || !strings.Contains(out, "entry 3") {
		t.Fatalf("verify tampered ledger: exit %d, output:\n%s", code, out)
	}
	// Key files readable by others are refused with a hint.
	if err := os.Chmod(filepath.Join(keys, evidence.EvidenceKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(stmt, []byte(externalStatement(9)), 0o600)
	out, code = run("ledger", "append", "--keys", keys, "--ledger", ledger, "--statement", stmt, "--revision", "v1")
	if code != exitUsage || !strings.Contains(out, "chmod 600") {
		t.Fatalf("append with an unsafe key file: exit %d %s", code, out)
	}
}
