package evidence

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// buildTamperLedger creates a closed ledger of 20 entries in 20 blocks, the
// first one referencing a blob.
func buildTamperLedger(t *testing.T) (dir string, k *Keys, blob Digest) {
	t.Helper()
	ctx := context.Background()
	k = newKeys(t, "example.test/tamper")
	dir = filepath.Join(t.TempDir(), "ledger")
	l := openLedger(t, dir, k)
	ref, err := l.PutBlob("log", "text/plain", []byte("log fragment\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		p := samplePredicate(i)
		if i == 0 {
			p.Blobs = []BlobRef{ref}
		}
		if _, err := l.Record(ctx, revisionFor(i), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, k, ref.Digest
}

func mutateDB(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// editStored replaces the bytes entry i of b stands for with edit's result,
// stored compressed, as a writer that knew the storage format would.
func editStored(b *bolt.Bucket, i uint64, edit func([]byte) []byte) error {
	v, err := unpackStored(b.Get(u64(i)))
	if err != nil {
		return err
	}
	nv := edit(append([]byte(nil), v...))
	return b.Put(u64(i), packWith(0, nv, nv))
}

func flipAt(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

func TestTamperDetected(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string, blob Digest)
		want   string
	}{
		{"flip a byte of an entry", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				return editStored(tx.Bucket(bEntries), 5, func(v []byte) []byte {
					i := bytes.Index(v, []byte(`"revision":"v1.5"`)) + len(`"revision":"v1.`)
					return flipAt(v, i)
				})
			})
		}, "entry 5"},
		{"flip a byte of an entry's compressed stored form", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bEntries)
				v := b.Get(u64(5))
				if !isStorageTag(v) {
					t.Fatalf("entry 5 is stored uncompressed (%d bytes)", len(v))
				}
				return b.Put(u64(5), flipAt(v, len(v)/2))
			})
		}, "entry 5"},
		{"flip a byte of an envelope", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				return editStored(tx.Bucket(bEnvelopes), 7, func(v []byte) []byte { return flipAt(v, len(v)/2) })
			})
		}, "envelope 7"},
		{"flip a byte of an envelope's compressed stored form", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bEnvelopes)
				v := b.Get(u64(7))
				if len(v) == 0 || v[0] != tagStoredHexEnvelope {
					t.Fatalf("envelope 7 is not stored as compressed parts")
				}
				return b.Put(u64(7), flipAt(v, len(v)-3))
			})
		}, "envelope 7"},
		{"flip a byte of a blob", func(t *testing.T, dir string, d Digest) {
			bs := &BlobStore{dir: filepath.Join(dir, BlobDir)}
			data, err := os.ReadFile(bs.Path(d))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bs.Path(d), flipAt(data, 3), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "blob log (sha256:"},
		{"delete a blob", func(t *testing.T, dir string, d Digest) {
			bs := &BlobStore{dir: filepath.Join(dir, BlobDir)}
			if err := os.Remove(bs.Path(d)); err != nil {
				t.Fatal(err)
			}
		}, "blob log (sha256:"},
		{"flip a byte of a block header", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bBlocks)
				v := b.Get(u64(3))
				i := bytes.Index(v, []byte("\ntime ")) + len("\ntime 2026-11-22T10:00:00.0")
				return b.Put(u64(3), flipAt(v, i))
			})
		}, "block 3"},
		{"flip a byte of a checkpoint signature", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bCheckpoints)
				v := b.Get(u64(4))
				i := bytes.LastIndex(v, []byte(" ")) + 12
				return b.Put(u64(4), flipAt(v, i))
			})
		}, "checkpoint at size 4"},
		{"delete an entry", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bEntries).Delete(u64(6)) })
		}, "entry 6"},
		{"reorder two entries", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				e, v := tx.Bucket(bEntries), tx.Bucket(bEnvelopes)
				a, b := append([]byte(nil), e.Get(u64(8))...), append([]byte(nil), e.Get(u64(9))...)
				ea, eb := append([]byte(nil), v.Get(u64(8))...), append([]byte(nil), v.Get(u64(9))...)
				for _, err := range []error{e.Put(u64(8), b), e.Put(u64(9), a), v.Put(u64(8), eb), v.Put(u64(9), ea)} {
					if err != nil {
						return err
					}
				}
				return nil
			})
		}, "entry 8"},
		{"rewrite a stored tree hash", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bHashes)
				v := b.Get(u64(2))
				return b.Put(u64(2), flipAt(v, 0))
			})
		}, "tree hash|block 1"},
		{"drop the last block", func(t *testing.T, dir string, _ Digest) {
			mutateDB(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bBlocks).Delete(u64(19)) })
		}, "block 19"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, k, blob := buildTamperLedger(t)
			tc.mutate(t, dir, blob)
			for _, fromScratch := range []bool{false, true} {
				l, err := Open(context.Background(), dir, Options{Public: k.Verifier(), ReadOnly: true})
				if err != nil {
					// Opening already recomputes the root: detection at open is fine
					// only for damage to the tree hashes themselves.
					if KindOf(err) != KindTampered || !strings.Contains(tc.want, "tree hash") {
						t.Fatalf("open: %v", err)
					}
					return
				}
				_, err = l.Verify(context.Background(), fromScratch)
				l.Close()
				if err == nil {
					t.Fatalf("verify(fromScratch=%v) passed after %s", fromScratch, tc.name)
				}
				if KindOf(err) != KindTampered {
					t.Fatalf("kind %v: %v", KindOf(err), err)
				}
				var e *Error
				if !errorsAs(err, &e) || !hasAnyPrefix(e.Op, strings.Split(tc.want, "|")) {
					t.Fatalf("verify(fromScratch=%v) named %q, want %q: %v", fromScratch, opOf(err), tc.want, err)
				}
			}
		})
	}
}

func opOf(err error) string {
	var e *Error
	if errorsAs(err, &e) {
		return e.Op
	}
	return ""
}

func TestUntamperedLedgerVerifiesWithRecordedKeys(t *testing.T) {
	dir, _, _ := buildTamperLedger(t)
	l, err := Open(context.Background(), dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rep, err := l.Verify(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Keys, "not independent") || rep.Blocks != 20 || rep.Checkpoints != 21 || rep.Blobs != 1 {
		t.Fatalf("report %+v", rep)
	}
	_ = binary.BigEndian
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func TestOpenRecomputesRootAgainstCheckpoint(t *testing.T) {
	cases := map[string]func(tx *bolt.Tx) error{
		"subtree hash": func(tx *bolt.Tx) error {
			b := tx.Bucket(bHashes)
			k := u64(uint64(tlog.StoredHashIndex(4, 0))) // the 16-entry subtree under the root
			return b.Put(k, flipAt(b.Get(k), 0))
		},
		"latest checkpoint signature": func(tx *bolt.Tx) error {
			m := tx.Bucket(bMeta)
			v := m.Get(kCheckpoint)
			return m.Put(kCheckpoint, flipAt(v, len(v)-12))
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			dir, k, _ := buildTamperLedger(t)
			mutateDB(t, dir, mutate)
			_, err := Open(context.Background(), dir, Options{Keys: k})
			if KindOf(err) != KindTampered || !strings.Contains(err.Error(), "open ledger") {
				t.Fatalf("open after %s: %v", name, err)
			}
		})
	}
}

// A blob that does not verify is named by the name its entry's signed
// statement gives it, with its digest, and says whether it changed or is
// missing.
func TestTamperedBlobIsNamed(t *testing.T) {
	for _, c := range []struct {
		name string
		do   func(path string) error
		want string
	}{
		{"changed", func(p string) error { return os.WriteFile(p, []byte("other content\n"), 0o600) }, "content does not match its digest"},
		{"missing", os.Remove, "missing from the blob store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, k, d := buildTamperLedger(t)
			bs := &BlobStore{dir: filepath.Join(dir, BlobDir)}
			if err := c.do(bs.Path(d)); err != nil {
				t.Fatal(err)
			}
			l, err := Open(context.Background(), dir, Options{Public: k.Verifier(), ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_, err = l.Verify(context.Background(), false)
			want := "blob log (" + string(d) + "), entry 0: " + c.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("verify: %v\nwant it to start with %q", err, want)
			}
		})
	}
}
