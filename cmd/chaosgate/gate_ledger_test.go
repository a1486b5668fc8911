package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chaosgate/chaosgate/evidence"
)

// gateLedger5000 fills DATA/ledger with 5,000 signed run records: entries
// 0..4997 for rev (promote, some hold) and another revision, 4998 a block
// for rev, 4999 a promote for the other revision. It returns the index of
// the block.
func gateLedger5000(t *testing.T, data, rev, other string) uint64 {
	t.Helper()
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pred := func(i int, verdict string) *evidence.Predicate {
		exp := []string{"pod-kill", "network-delay", "split-brain"}[i%3]
		return &evidence.Predicate{RunID: fmt.Sprintf("run-%d", i), Experiment: evidence.Experiment{Name: exp, Kind: "experiment"},
			TraceIDs: []string{fmt.Sprintf("trace-%d", i)}, Decision: &evidence.Decision{Verdict: verdict, Score: 0.99, Coverage: 0.9}}
	}
	// Entry 0 is a promote for rev, as the oldest match.
	if _, err := l.Record(ctx, rev, pred(0, "promote")); err != nil {
		t.Fatal(err)
	}
	next := make(chan int, 4997)
	for i := 1; i < 4998; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ { // concurrent writers share commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, v := rev, "promote"
				switch {
				case i%7 == 0:
					r = other
				case i%10 == 3:
					v = "hold"
				}
				if _, err := l.Record(ctx, r, pred(i, v)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rb, err := l.Record(ctx, rev, pred(4998, "block"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(ctx, other, pred(4999, "promote")); err != nil {
		t.Fatal(err)
	}
	if l.Size() != 5000 || rb.Index != 4998 {
		t.Fatalf("ledger size %d, block at %d", l.Size(), rb.Index)
	}
	return rb.Index
}

// gateAnswers asks a running serve's Argo endpoint and Flagger's
// confirm-promotion, pre-rollout and rollback webhooks about rev.
func gateAnswers(t *testing.T, p *serveProc, token, rev string) (argo string, confirm, pre, rollback int) {
	t.Helper()
	code, body := p.do(token, "GET", "/api/v1/gate/"+rev, "")
	var a struct {
		Verdict string `json:"verdict"`
		Error   string `json:"error"`
	}
	json.Unmarshal(body, &a)
	argo = a.Verdict
	if code != 200 {
		argo = fmt.Sprintf("%d %s", code, a.Error)
	}
	payload := fmt.Sprintf(`{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":%q}}`, rev)
	confirm, _ = p.do(token, "POST", "/api/v1/gate/flagger/confirm-promotion", payload)
	pre, _ = p.do(token, "POST", "/api/v1/gate/flagger/pre-rollout", payload)
	rollback, _ = p.do(token, "POST", "/api/v1/gate/flagger/rollback", payload)
	return argo, confirm, pre, rollback
}

// TestGateAndVerifyOver5000Entries: a running serve over a ledger of 5,000
// entries whose newest entry for the revision is a block answers block on
// both gate endpoints (Argo Rollouts and Flagger). Then index keys of every
// index — those of the block, of the oldest entry and of one in the middle
// — are deleted or edited in the file, one at a time: plain `ledger
// verify` exits 1 naming the key, and the gate still never answers
// promote.
func TestGateAndVerifyOver5000Entries(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 5,000 ledger entries")
	}
	bin := chaosgateBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	rev := "sha256:" + strings.Repeat("9c", 32)
	other := "sha256:" + strings.Repeat("0d", 32)
	block := gateLedger5000(t, data, rev, other)

	p := startServe(t, bin, "--http", "127.0.0.1:0", "--data-dir", data)
	tok := readTokens(t, filepath.Join(data, "tokens.yaml"))["viewer"]
	start := time.Now()
	argo, confirm, pre, rollback := gateAnswers(t, p, tok, rev)
	t.Logf("5,000 entries: Argo %q, Flagger confirm-promotion %d, pre-rollout %d, rollback %d (%s)", argo, confirm, pre, rollback, time.Since(start))
	if argo != "block" || confirm != 412 || pre != 412 || rollback != 200 {
		t.Fatalf("gate over 5,000 entries: Argo %q, confirm-promotion %d, pre-rollout %d, rollback %d", argo, confirm, pre, rollback)
	}
	if argo, confirm, _, _ := gateAnswers(t, p, tok, other); argo != "promote" || confirm != 200 {
		t.Fatalf("the other revision: Argo %q, confirm-promotion %d", argo, confirm)
	}

	ledger, keys := filepath.Join(data, evidence.LedgerSubdir), filepath.Join(data, evidence.KeysSubdir)
	db := filepath.Join(ledger, evidence.DBFile)
	start = time.Now()
	if out, errs, code := runBinary(t, bin, "ledger", "verify", "--ledger", ledger, "--keys", keys); code != 0 {
		t.Fatalf("verify of the untouched ledger: %d\n%s\n%s", code, out, errs)
	}
	t.Logf("ledger verify over 5,000 entries: %s", time.Since(start))
	orig, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	// The keys of entries 0, 2500 and the block, in every index. The trace
	// index keeps one value per index batch: there, a key is a record of
	// its batch's value (8 bytes of the trace id's SHA-256 ‖ the entry's
	// offset in the batch, 4 bytes).
	type indexKey struct {
		bucket string
		key    []byte // a bucket key; for ix_trace, the batch's key
		record int    // ix_trace: the record's position in the value
	}
	var cases []indexKey
	var batch uint64
	bdb, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bdb.View(func(tx *bolt.Tx) error {
		batch = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("index_batch")))
		for _, b := range []string{"ix_revision", "ix_experiment", "ix_trace", "ix_time"} {
			tx.Bucket([]byte(b)).ForEach(func(k, v []byte) error {
				if b == "ix_trace" {
					for r := 0; r < len(v)/12; r++ {
						switch binary.BigEndian.Uint64(k)*batch + uint64(binary.BigEndian.Uint32(v[12*r+8:])) {
						case 0, 2500, block:
							cases = append(cases, indexKey{b, append([]byte(nil), k...), r})
						}
					}
					return nil
				}
				switch binary.BigEndian.Uint64(k[len(k)-8:]) {
				case 0, 2500, block:
					cases = append(cases, indexKey{bucket: b, key: append([]byte(nil), k...)})
				}
				return nil
			})
		}
		return nil
	})
	bdb.Close()
	if len(cases) != 12 || batch == 0 {
		t.Fatalf("%d index keys for entries 0, 2500 and %d (index batch %d)", len(cases), block, batch)
	}
	for _, c := range cases {
		for _, edit := range []bool{false, true} {
			if err := os.WriteFile(db, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			key := c.key
			var named string // how verify names the key it finds deleted or added
			bdb, err := bolt.Open(db, 0o600, &bolt.Options{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = bdb.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(c.bucket))
				if c.bucket == "ix_trace" {
					v := append([]byte(nil), b.Get(key)...)
					rec := v[12*c.record : 12*c.record+12]
					n, off := binary.BigEndian.Uint64(key), binary.BigEndian.Uint32(rec[8:])
					named = fmt.Sprintf("trace-id hash %x → entry %d", rec[:8], n*batch+uint64(off))
					if !edit {
						return b.Put(key, append(v[:12*c.record:12*c.record], v[12*c.record+12:]...))
					}
					// The record now names another entry of its batch.
					off ^= 1
					binary.BigEndian.PutUint32(rec[8:], off)
					named = fmt.Sprintf("trace-id hash %x → entry %d", rec[:8], n*batch+uint64(off))
					return b.Put(key, v)
				}
				named = describeKey(c.bucket, key)
				if err := b.Delete(key); err != nil {
					return err
				}
				if !edit {
					return nil
				}
				// The key now names the newest entry of the ledger instead.
				nk := append(append([]byte(nil), key[:len(key)-8]...), binary.BigEndian.AppendUint64(nil, 4999)...)
				if b.Get(nk) != nil || bytes.Equal(nk, key) {
					nk = append(append([]byte(nil), key[:len(key)-8]...), binary.BigEndian.AppendUint64(nil, 5000)...)
				}
				named = describeKey(c.bucket, nk)
				return b.Put(nk, nil)
			})
			bdb.Close()
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s key %q (edited %v)", c.bucket, key, edit)
			out, errs, code := runBinary(t, bin, "ledger", "verify", "--ledger", ledger, "--keys", keys)
			if code != exitBlock || !strings.Contains(out+errs, "index "+c.bucket+" key "+named) {
				t.Fatalf("%s: ledger verify exit %d, want 1 naming %s\n%s\n%s", what, code, named, out, errs)
			}
			argo, confirm, pre, rollback := gateAnswers(t, p, tok, rev)
			if argo == "promote" || confirm == 200 || pre == 200 {
				t.Fatalf("%s: the gate answered Argo %q, confirm-promotion %d, pre-rollout %d", what, argo, confirm, pre)
			}
			if argo != "block" || rollback != 200 {
				t.Fatalf("%s: Argo %q, rollback %d, want block", what, argo, rollback)
			}
		}
	}
}

// describeKey is how ledger verify names an index key.
func describeKey(bucket string, k []byte) string {
	if bucket == "ix_time" {
		t := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC()
		return fmt.Sprintf("time %s → entry %d", t.Format(time.RFC3339Nano), binary.BigEndian.Uint64(k[8:]))
	}
	return fmt.Sprintf("%q → entry %d", k[:len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:]))
}
