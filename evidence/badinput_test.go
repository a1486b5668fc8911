package evidence

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadStatementsRefusedNothingWritten(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	dir := t.TempDir()
	l := openLedger(t, dir, k)
	defer l.Close()
	cases := []struct {
		name, stmt, want string
	}{
		{"not json", "{\n  \"_type\": oops\n}", "line 2:"},
		{"trailing data", `{"_type":"https://in-toto.io/Statement/v1"} {}`, "trailing data"},
		{"array", `[1,2]`, "not a JSON object"},
		{"wrong type", `{"_type":"https://example.com/x","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"p","predicate":{}}`, "wrong statement type"},
		{"no subject", `{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p","predicate":{}}`, "subject"},
		{"bad digest", `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"zz"}}],"predicateType":"p","predicate":{}}`, "digest"},
		{"unknown field", `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"p","predicate":{},"extra":1}`, "unknown field"},
		{"bad chaosgate predicate", `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"` + PredicateType + `","predicate":{"run_id":5}}`, "$.run_id"},
	}
	for _, tc := range cases {
		_, err := l.SignAndAppend(ctx, []byte(tc.stmt), "v1")
		if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want invalid mentioning %q", tc.name, err, tc.want)
		}
	}
	if l.Size() != 0 {
		t.Fatalf("size %d after refused statements", l.Size())
	}
	// An external statement with a custom predicate is accepted.
	good := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app","digest":{"sha256":"` + strings.Repeat("b", 64) + `"}}],"predicateType":"https://example.com/ci/v1","predicate":{"pipeline":"build"}}`
	r, err := l.SignAndAppend(ctx, []byte(good), "v9")
	if err != nil || r.Index != 0 {
		t.Fatalf("good statement: %+v %v", r, err)
	}
	got, _ := l.Search(ctx, Query{Revision: "v9"})
	if len(got) != 1 {
		t.Fatalf("search v9: %d", len(got))
	}
}

func TestWrongKeyRefused(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	other := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	st, err := BuildStatement("v1", samplePredicate(1))
	if err != nil {
		t.Fatal(err)
	}
	env, err := other.SignStatement(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Append(ctx, env)
	if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "evidence key") {
		t.Fatalf("envelope signed by another key: %v", err)
	}
	// A modified payload is refused too.
	env2, _ := k.SignStatement(ctx, st)
	env2.Payload = env.Payload[:len(env.Payload)-4] + "AAA="
	if _, err := l.Append(ctx, env2); err == nil {
		t.Fatal("modified payload accepted")
	}
	if l.Size() != 0 {
		t.Fatalf("size %d", l.Size())
	}
	// Opening the ledger with a different key of the same origin is refused.
	l.Close()
	if _, err := Open(ctx, l.Dir(), Options{Keys: other}); KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "checkpoint key") {
		t.Fatalf("open with another key: %v", err)
	}
}

func TestKeyFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := GenerateKeys(dir, "example.test/log"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{EvidenceKeyFile, EvidencePubFile, CheckpointKeyFile, CheckpointVerifyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v %v", f, fi.Mode(), err)
		}
	}
	for _, f := range []string{EvidenceKeyFile, CheckpointKeyFile} {
		p := filepath.Join(dir, f)
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeys(dir)
		if KindOf(err) != KindPermission || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Fatalf("%s 0640: %v", f, err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadKeys(dir); err != nil {
		t.Fatal(err)
	}
	// keygen never overwrites.
	before, _ := os.ReadFile(filepath.Join(dir, EvidenceKeyFile))
	if _, err := GenerateKeys(dir, "example.test/log"); KindOf(err) != KindPermission || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, EvidenceKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("key overwritten")
	}
	if _, err := GenerateKeys(filepath.Join(t.TempDir(), "k"), "bad origin"); KindOf(err) != KindInvalid {
		t.Fatalf("bad origin: %v", err)
	}
	if _, err := LoadKeys(filepath.Join(t.TempDir(), "none")); KindOf(err) != KindNotFound || !strings.Contains(err.Error(), "keygen") {
		t.Fatalf("missing keys: %v", err)
	}
}

func TestLedgerFromAnotherOriginRefused(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/one")
	dir := t.TempDir()
	l := openLedger(t, dir, k)
	if _, err := l.Record(ctx, "v1", samplePredicate(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	before, _ := os.ReadFile(filepath.Join(dir, DBFile))
	other := newKeys(t, "example.test/two")
	_, err := Open(ctx, dir, Options{Keys: other, Create: true})
	if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), `belongs to origin "example.test/one"`) {
		t.Fatalf("other origin: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, DBFile))
	if !bytes.Equal(before, after) {
		t.Fatal("ledger file changed by a refused open")
	}
	// A directory without a ledger is not created read-only or without Create.
	if _, err := Open(ctx, t.TempDir(), Options{Keys: k}); KindOf(err) != KindNotFound {
		t.Fatalf("missing ledger: %v", err)
	}
}

func TestCheckpointAndProofFormats(t *testing.T) {
	k := newKeys(t, "example.test/log")
	c := Checkpoint{Origin: "example.test/log", Size: 7, Root: emptyRoot()}
	sc, err := SignCheckpoint(c, k.CheckpointSigner())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(sc.Note, []byte("example.test/log\n7\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\u2014 example.test/log ")) {
		t.Fatalf("note %q", sc.Note)
	}
	got, err := OpenCheckpoint(sc.Note, k.CheckpointVerifier())
	if err != nil || got.Checkpoint != c {
		t.Fatalf("%v %v", got, err)
	}
	other := newKeys(t, "example.test/log")
	if _, err := OpenCheckpoint(sc.Note, other.CheckpointVerifier()); err == nil {
		t.Fatal("checkpoint verified with another key")
	}
	for _, bad := range []string{"", "o\n1\n", "o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "o\n1\nAAAA\n", "o o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"} {
		if _, err := ParseCheckpoint([]byte(bad)); KindOf(err) != KindInvalid {
			t.Errorf("ParseCheckpoint(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "c2sp.org/tlog-proof@v1\nindex 1\n", "x\n\ncp", "c2sp.org/tlog-proof@v1\nindex -1\n\ncp", "c2sp.org/tlog-proof@v1\nindex 1\nnot-base64\n\ncp"} {
		if _, err := ParseTlogProof([]byte(bad)); KindOf(err) != KindInvalid {
			t.Errorf("ParseTlogProof(%q) = %v", bad, err)
		}
	}
}
