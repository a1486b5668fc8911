package evidence

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	fuzzLedgerOnce sync.Once
	fuzzLedgerDB   []byte
	fuzzLedgerKeys *Keys
	fuzzLedgerErr  error
)

// fuzzLedger returns the bytes of a small closed ledger file (6 entries,
// indexes, blocks, checkpoints) and its keys, built once per process.
func fuzzLedger(t testing.TB) ([]byte, *Keys) {
	fuzzLedgerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chaosgate-fuzz-ledger-")
		if err != nil {
			fuzzLedgerErr = err
			return
		}
		defer os.RemoveAll(dir)
		k, err := GenerateKeys(filepath.Join(dir, "keys"), "example.test/fuzz")
		if err != nil {
			fuzzLedgerErr = err
			return
		}
		l, err := Open(context.Background(), filepath.Join(dir, "ledger"), Options{Keys: k, Clock: newClock(), Create: true})
		if err != nil {
			fuzzLedgerErr = err
			return
		}
		for i := 0; i < 6; i++ {
			if _, err := l.Record(context.Background(), revisionFor(i%2), samplePredicate(i)); err != nil {
				fuzzLedgerErr = err
				l.Close()
				return
			}
		}
		l.Close()
		fuzzLedgerDB, fuzzLedgerErr = os.ReadFile(filepath.Join(dir, "ledger", DBFile))
		fuzzLedgerKeys = k
	})
	if fuzzLedgerErr != nil {
		t.Fatal(fuzzLedgerErr)
	}
	return fuzzLedgerDB, fuzzLedgerKeys
}

// readEverything runs every read path of the ledger in dir; it must end
// with a result or an error, never a panic.
func readEverything(t *testing.T, dir string, k *Keys, rev, term string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := Open(ctx, dir, Options{Public: k.Verifier(), ReadOnly: true})
	if err != nil {
		return
	}
	defer l.Close()
	l.Verify(ctx, false)
	l.LatestDecision(ctx, rev)
	for _, q := range []Query{{Revision: rev}, {Experiment: term}, {TraceID: term}, {Since: time.Unix(0, 1), Limit: 3}} {
		l.Search(ctx, q)
	}
	for i := uint64(0); i < 8; i++ {
		l.Entry(ctx, i)
		l.Block(ctx, i)
	}
	l.TlogProof(ctx, 1, 0)
	l.Blocks(ctx, 0, 10)
}

// FuzzSearchAndReadEntry puts fuzzed keys and values into the indexes and
// the entries of a real ledger: Search, Entry and LatestDecision answer or
// fail with an error, and Verify names the damage.
func FuzzSearchAndReadEntry(f *testing.F) {
	f.Add(uint8(0), []byte("v1.0\x00\x00\x00\x00\x00\x00\x00\x00\x09"), []byte{}, uint8(0), []byte(nil), "v1.0", "exp-1")
	f.Add(uint8(3), []byte{1, 2, 3}, []byte("x"), uint8(2), []byte(`{"v":1,"index":2}`), "v1.1", "trace-shared")
	f.Add(uint8(1), []byte("exp-1\x00"), []byte{}, uint8(9), []byte(`not json`), "", "")
	f.Add(uint8(4), []byte("size"), []byte{1}, uint8(0), []byte(nil), "v1.0", "")
	f.Fuzz(func(t *testing.T, bucket uint8, key, val []byte, entry uint8, leaf []byte, rev, term string) {
		db, k := fuzzLedger(t)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DBFile), db, 0o600); err != nil {
			t.Fatal(err)
		}
		names := [][]byte{bIxRevision, bIxExp, bIxTrace, bIxTime, bMeta, bEntries}
		b, _ := bolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
		err := b.Update(func(tx *bolt.Tx) error {
			if len(key) > 0 && len(key) <= bolt.MaxKeySize {
				if err := tx.Bucket(names[int(bucket)%len(names)]).Put(key, val); err != nil {
					return err
				}
			}
			if leaf != nil {
				return tx.Bucket(bEntries).Put(binary.BigEndian.AppendUint64(nil, uint64(entry%8)), leaf)
			}
			return nil
		})
		b.Close()
		if err != nil {
			t.Skip()
		}
		readEverything(t, dir, k, rev, term)
	})
}

// FuzzVerifyCorruptedFile flips bytes of a real ledger file anywhere (bbolt
// pages, metadata, free space): opening, verifying and every read answer or
// fail with an error, never crash.
func FuzzVerifyCorruptedFile(f *testing.F) {
	f.Add(uint32(0), []byte{0xff})
	f.Add(uint32(4096), []byte{0, 0, 0, 0})
	f.Add(uint32(4096*3+16), []byte{0x10, 0x00})
	f.Add(uint32(4096*5), []byte("\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Add(uint32(4096*2+40), []byte{0x7f, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		db, k := fuzzLedger(t)
		if len(patch) == 0 || len(patch) > 64 {
			t.Skip()
		}
		c := append([]byte(nil), db...)
		at := int(off) % len(c)
		for i, p := range patch {
			c[(at+i)%len(c)] ^= p
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DBFile), c, 0o600); err != nil {
			t.Fatal(err)
		}
		readEverything(t, dir, k, "v1.0", "exp-1")
	})
}
