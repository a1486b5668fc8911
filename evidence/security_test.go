package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// indexKeyList lists every key of the index buckets of the ledger in dir.
func indexKeyList(t *testing.T, dir string) [][2]string {
	t.Helper()
	var out [][2]string
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"ix_revision", "ix_experiment", "ix_trace", "ix_time"} {
			tx.Bucket([]byte(b)).ForEach(func(k, _ []byte) error {
				out = append(out, [2]string{b, string(k)})
				return nil
			})
		}
		return nil
	})
	return out
}

func copyLedger(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ledger")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", dir+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

func verifyWith(t *testing.T, dir string, k *Keys) error {
	t.Helper()
	l, err := Open(context.Background(), dir, Options{Public: k.Verifier(), ReadOnly: true})
	if err != nil {
		return err
	}
	defer l.Close()
	_, err = l.Verify(context.Background(), false)
	return err
}

// TestVerifyChecksEveryIndexKey: deleting, editing or adding any key of the
// revision, experiment, trace id or time index makes the default verify
// fail with an error that names the index and the key.
func TestVerifyChecksEveryIndexKey(t *testing.T) {
	dir, k, _ := buildTamperLedger(t)
	if err := verifyWith(t, dir, k); err != nil {
		t.Fatalf("untouched ledger: %v", err)
	}
	keys := indexKeyList(t, dir)
	if len(keys) < 60 {
		t.Fatalf("only %d index keys", len(keys))
	}
	for n, kv := range keys {
		bucket, key := kv[0], kv[1]
		if n%3 != 0 && testing.Short() {
			continue
		}
		for _, how := range []string{"delete", "edit"} {
			c := copyLedger(t, dir)
			mutateDB(t, c, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(bucket))
				if err := b.Delete([]byte(key)); err != nil {
					return err
				}
				if how == "edit" {
					e := []byte(key)
					e[0] ^= 0x20
					return b.Put(e, nil)
				}
				return nil
			})
			err := verifyWith(t, c, k)
			if KindOf(err) != KindTampered || !strings.Contains(err.Error(), "index "+bucket+" key ") {
				t.Fatalf("%s %s key %q: verify says %v", how, bucket, key, err)
			}
			os.RemoveAll(c)
		}
	}
	// A key added that no entry makes, and a value put on a key.
	trace1 := sha256.Sum256([]byte("trace-1"))
	for _, tc := range []struct{ bucket, key, val, want string }{
		{"ix_revision", "v9.9\x00\x00\x00\x00\x00\x00\x00\x00\x03", "", `index ix_revision key "v9.9" → entry 3: matches no entry`},
		{"ix_experiment", "exp-1\x00\x00\x00\x00\x00\x00\x00\x00\x01", "x", `index ix_experiment key "exp-1" → entry 1: has a value`},
	} {
		c := copyLedger(t, dir)
		mutateDB(t, c, func(tx *bolt.Tx) error { return tx.Bucket([]byte(tc.bucket)).Put([]byte(tc.key), []byte(tc.val)) })
		if err := verifyWith(t, c, k); KindOf(err) != KindTampered || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: verify says %v, want %q", tc.key, err, tc.want)
		}
	}
	// The trace index holds one value per index batch: a record added in
	// order (trace-1 for entry 2), records out of order, a damaged value.
	record := append(append([]byte(nil), trace1[:8]...), 0, 0, 0, 2)
	for _, tc := range []struct {
		name string
		edit func(v []byte) []byte
		want string
	}{
		{"record added", func(v []byte) []byte {
			i := 0
			for i < len(v) && bytes.Compare(v[i:i+traceRecordSize], record) < 0 {
				i += traceRecordSize
			}
			return append(append(append([]byte(nil), v[:i]...), record...), v[i:]...)
		}, fmt.Sprintf("index ix_trace key trace-id hash %x → entry 2: matches no entry", trace1[:8])},
		{"records swapped", func(v []byte) []byte {
			w := append([]byte(nil), v[traceRecordSize:2*traceRecordSize]...)
			return append(append(w, v[:traceRecordSize]...), v[2*traceRecordSize:]...)
		}, "index ix_trace: batch 0: record 1 is out of order"},
		{"value cut", func(v []byte) []byte { return v[:len(v)-1] }, "index ix_trace: batch 0: "},
	} {
		c := copyLedger(t, dir)
		mutateDB(t, c, func(tx *bolt.Tx) error {
			b := tx.Bucket(bIxTrace)
			return b.Put(u64(0), tc.edit(append([]byte(nil), b.Get(u64(0))...)))
		})
		if err := verifyWith(t, c, k); KindOf(err) != KindTampered || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: verify says %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestLatestDecisionIgnoresIndexes: the newest verdict for a revision comes
// from the log, whatever the indexes say, and reading it proves the
// entries it passed over.
func TestLatestDecisionIgnoresIndexes(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/gate")
	dir := filepath.Join(t.TempDir(), "ledger")
	l := openLedger(t, dir, k)
	rec := func(rev, verdict string) {
		p := samplePredicate(1)
		p.Decision.Verdict = verdict
		if _, err := l.Record(ctx, rev, p); err != nil {
			t.Fatal(err)
		}
	}
	rec("r1", "promote")
	rec("r2", "promote")
	rec("r1", "block")
	st := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r1","digest":{"sha256":"` + strings.Repeat("b", 64) + `"}}],"predicateType":"https://example.com/ci/v1","predicate":{"pipeline":"build"}}`)
	if _, err := l.SignAndAppend(ctx, st, "r1"); err != nil {
		t.Fatal(err)
	}
	rec("r2", "hold")
	l.Close()
	read := func(d, rev string) (RecordedVerdict, bool, error) {
		t.Helper()
		r, err := Open(ctx, d, Options{Public: k.Verifier(), ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		return r.LatestDecision(ctx, rev)
	}
	v, ok, err := read(dir, "r1")
	if err != nil || !ok || v.Entry.Index != 2 || v.Predicate.Decision.Verdict != "block" || v.TreeSize != 5 {
		t.Fatalf("r1: %+v %v %v", v, ok, err)
	}
	if _, ok, err := read(dir, "r3"); ok || err != nil {
		t.Fatalf("r3: %v %v", ok, err)
	}
	// Every index key gone: the same answer.
	c := copyLedger(t, dir)
	mutateDB(t, c, func(tx *bolt.Tx) error {
		for _, b := range []string{"ix_revision", "ix_experiment", "ix_trace", "ix_time"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if v, ok, err := read(c, "r1"); err != nil || !ok || v.Entry.Index != 2 {
		t.Fatalf("without indexes: %+v %v %v", v, ok, err)
	}
	// An entry the scan passes over (entry 4, r2) edited to name another
	// revision: the proof over the scanned entries fails, no older verdict.
	c = copyLedger(t, dir)
	mutateDB(t, c, func(tx *bolt.Tx) error {
		return editStored(tx.Bucket(bEntries), 4, func(v []byte) []byte { return bytes.Replace(v, []byte(`"r2"`), []byte(`"r9"`), -1) })
	})
	if _, _, err := read(c, "r1"); KindOf(err) != KindTampered || !strings.Contains(err.Error(), "entries [2, 5)") {
		t.Fatalf("an edited newer entry: %v", err)
	}
	// The block's envelope swapped for the promote's: refused.
	c = copyLedger(t, dir)
	mutateDB(t, c, func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvelopes)
		return b.Put(u64(2), append([]byte(nil), b.Get(u64(0))...))
	})
	if _, _, err := read(c, "r1"); KindOf(err) != KindTampered || !strings.Contains(err.Error(), "envelope 2") {
		t.Fatalf("a swapped envelope: %v", err)
	}
}

// TestExternalStatementsNeverGate: `ledger append` cannot record
// chaosgate's own predicate type, and its entries are marked external.
func TestExternalStatementsNeverGate(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	st, err := BuildStatement("r1", samplePredicate(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.SignAndAppend(ctx, st, "r1"); KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "chaosgate's own run evidence") {
		t.Fatalf("a chaosgate verdict through append: %v", err)
	}
	if l.Size() != 0 {
		t.Fatalf("size %d", l.Size())
	}
	ci := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r1","digest":{"sha256":"` + strings.Repeat("b", 64) + `"}}],"predicateType":"https://example.com/ci/v1","predicate":{}}`)
	r, err := l.SignAndAppend(ctx, ci, "r1")
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Entry(ctx, r.Index)
	if err != nil || !e.Record.External {
		t.Fatalf("external entry: %+v %v", e.Record, err)
	}
	if _, ok, err := l.LatestDecision(ctx, "r1"); ok || err != nil {
		t.Fatalf("an external entry answered: %v %v", ok, err)
	}
}

// TestVerifyRecomputesInteriorHashes: a damaged interior tree hash that no
// checkpoint root reads (an odd subtree) fails the default verify, and no
// proof through it is handed out.
func TestVerifyRecomputesInteriorHashes(t *testing.T) {
	ctx := context.Background()
	dir, k, _ := buildTamperLedger(t)
	mutateDB(t, dir, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("hashes"))
		key := binary.BigEndian.AppendUint64(nil, uint64(tlog.StoredHashIndex(1, 1)))
		return b.Put(key, flipAt(b.Get(key), 3))
	})
	err := verifyWith(t, dir, k)
	if KindOf(err) != KindTampered || !strings.Contains(err.Error(), "tree hash (level 1, index 1)") {
		t.Fatalf("verify: %v", err)
	}
	l, err := Open(ctx, dir, Options{Public: k.Verifier(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := l.TlogProof(ctx, 0, 0)
	if err == nil {
		if _, verr := VerifyTlogProof(p, mustEntry(t, l, 0).Leaf, k.CheckpointVerifier()); verr != nil {
			t.Fatalf("an invalid proof was handed out: %v", verr)
		}
		t.Fatal("a proof through a damaged tree hash was handed out")
	}
	if KindOf(err) != KindTampered || !strings.Contains(err.Error(), "entry 0") {
		t.Fatalf("proof: %v", err)
	}
}

func mustEntry(t *testing.T, l *Ledger, i uint64) Entry {
	t.Helper()
	e, err := l.Entry(context.Background(), i)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestSearchKeepsNewestMatches: with more matches than the limit, Search
// returns the newest ones.
func TestSearchKeepsNewestMatches(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	for i := 0; i < 12; i++ {
		if _, err := l.Record(ctx, "same", samplePredicate(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Search(ctx, Query{Revision: "same", Limit: 5})
	if err != nil || len(got) != 5 || got[0].Index != 7 || got[4].Index != 11 {
		var idx []uint64
		for _, e := range got {
			idx = append(idx, e.Index)
		}
		t.Fatalf("search: %v %v", idx, err)
	}
}

// TestGenerateKeysNeverLeavesAPartialSet: when the disk fills up in the
// middle of writing the key files, no key file is left behind, so the next
// start generates a whole set instead of refusing a partial one. The disk
// is a real tmpfs with room for two files (root only).
func TestGenerateKeysNeverLeavesAPartialSet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	dir := filepath.Join(mnt, "keys")
	if _, err := GenerateKeys(dir, DefaultOrigin); err == nil {
		t.Fatal("keygen succeeded on a disk with room for two files")
	}
	for _, f := range []string{EvidenceKeyFile, EvidencePubFile, CheckpointKeyFile, CheckpointVerifyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			left, _ := os.ReadDir(dir)
			t.Fatalf("a failed keygen left %s (directory holds %v)", f, left)
		}
	}
}

// A run recorded with aliases answers the gate for each of them, its own
// revision included; an alias equal to the revision is not repeated, and a
// bad alias refuses the record (nothing written).
func TestRecordAliasesAnswerTheGate(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/log")
	l := openLedger(t, t.TempDir(), k)
	defer l.Close()
	rev := "Deployment/shop/web@sha256:" + strings.Repeat("c", 64)
	if _, err := l.Record(ctx, rev, samplePredicate(1), "bad\nalias"); KindOf(err) != KindInvalid || l.Size() != 0 {
		t.Fatalf("a bad alias: %v, size %d", err, l.Size())
	}
	r, err := l.Record(ctx, rev, samplePredicate(1), "7d9f8c6b5", "sha256:"+strings.Repeat("c", 64), rev, "7d9f8c6b5")
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Entry(ctx, r.Index)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Record.Subjects, ","); got != "Deployment/shop/web,7d9f8c6b5,sha256:"+strings.Repeat("c", 64) {
		t.Fatalf("subjects %s", got)
	}
	for _, ask := range []string{rev, "7d9f8c6b5", "sha256:" + strings.Repeat("c", 64)} {
		if v, ok, err := l.LatestDecision(ctx, ask); err != nil || !ok || v.Entry.Index != r.Index {
			t.Fatalf("gate by %q: %v %v", ask, ok, err)
		}
	}
	if _, ok, err := l.LatestDecision(ctx, "other"); ok || err != nil {
		t.Fatalf("an unrelated revision answered: %v %v", ok, err)
	}
}
