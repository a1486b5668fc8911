package evidence

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleLeaf is a leaf as the ledger writes it, with every field set.
func sampleLeaf(tb testing.TB, traceIDs int) []byte {
	tb.Helper()
	rec := EntryRecord{V: 1, Index: 123456, Time: time.Date(2026, 12, 7, 11, 0, 0, 123456789, time.UTC), Revision: "v1.2.3",
		Subjects: []string{"v1.2.3", "aggregator"}, Experiment: "gameday-7", RunID: "run-42", PredicateType: PredicateType,
		EnvelopeSHA256: strings.Repeat("ab", 32), Blobs: []Digest{DigestOf([]byte("a")), DigestOf([]byte("b"))}, External: true}
	for i := 0; i < traceIDs; i++ {
		rec.TraceIDs = append(rec.TraceIDs, fmt.Sprintf("%032x", i*7919+1))
	}
	leaf, err := json.Marshal(&rec)
	if err != nil {
		tb.Fatal(err)
	}
	return leaf
}

// decodeBoth decodes leaf with the fast path and with encoding/json and
// fails when the fast path accepts it and the two disagree. It returns
// whether the fast path took it.
func decodeBoth(t *testing.T, leaf []byte) bool {
	t.Helper()
	var fast, general leafFields
	ok := decodeLeafFast(leaf, &fast)
	gerr := json.Unmarshal(leaf, &general)
	if !ok {
		return false
	}
	if gerr != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", leaf, gerr)
	}
	if !reflect.DeepEqual(fast, general) || !fast.Time.Equal(general.Time) || fast.Time.String() != general.Time.String() {
		t.Fatalf("leaf %q:\nfast    %+v\ngeneral %+v", leaf, fast, general)
	}
	return true
}

func TestDecodeLeaf(t *testing.T) {
	full := sampleLeaf(t, 20)
	if !decodeBoth(t, full) {
		t.Fatalf("the fast path refused a leaf the ledger writes: %s", full)
	}
	var minimal EntryRecord
	minimal.V, minimal.PredicateType = 1, "https://example.com/ci/v1"
	b, _ := json.Marshal(&minimal)
	if !decodeBoth(t, b) {
		t.Fatalf("the fast path refused %s", b)
	}
	// Forms chaosgate never writes go to encoding/json, which gives the
	// same fields or the error.
	for _, leaf := range []string{
		`{"index":1, "time":"2026-12-07T11:00:00Z"}`, // whitespace
		`{"index":1,"revision":"a\"b"}`,              // escape
		"{\"index\":1,\"revision\":\"\xff\"}",        // invalid UTF-8
		`{"index":1,"Index":2}`,                      // another case
		`{"index":1,"index":2}`,                      // repeated
		`{"index":1,"future":true}`,                  // unknown
		`{"index":1,"subjects":null}`,                // null
		`{"index":01}`,                               // leading zero
		`{"index":1e3}`,                              // exponent
		`{"index":-1}`,                               // negative
		`{"index":18446744073709551616}`,             // overflow
		`{"index":1,"time":"yesterday"}`,             // bad time
		`{"index":1}x`,                               // trailing data
		`{"index":1,"external":truth}`,               // bad literal
		`{"index":1,"subjects":["a",]}`,              // bad array
		`{"index":1`,                                 // cut short
		`[]`,                                         // not an object
	} {
		if decodeBoth(t, []byte(leaf)) {
			t.Errorf("fast path took %s", leaf)
		}
		var viaDecode, viaJSON leafFields
		derr := decodeLeaf([]byte(leaf), &viaDecode)
		jerr := json.Unmarshal([]byte(leaf), &viaJSON)
		if (derr == nil) != (jerr == nil) || derr == nil && !reflect.DeepEqual(viaDecode, viaJSON) {
			t.Errorf("decodeLeaf(%s) = %+v, %v; encoding/json %+v, %v", leaf, viaDecode, derr, viaJSON, jerr)
		}
	}
	// Valid UTF-8 is read as encoding/json reads it.
	if !decodeBoth(t, []byte(`{"index":1,"revision":"é"}`)) {
		t.Fatal("the fast path refused valid UTF-8")
	}
	// Empty arrays stay empty, not nil, as encoding/json leaves them.
	if !decodeBoth(t, []byte(`{"index":7,"subjects":[],"trace_ids":[],"blobs":[],"external":false}`)) {
		t.Fatal("the fast path refused empty arrays")
	}
}

func FuzzDecodeLeaf(f *testing.F) {
	f.Add(sampleLeaf(f, 20))
	f.Add(sampleLeaf(f, 0))
	f.Add([]byte(`{"index":7,"subjects":[],"trace_ids":[],"blobs":[],"external":false}`))
	f.Add([]byte(`{"index":1,"index":2}`))
	f.Add([]byte(`{"v":1,"index":3,"time":"2026-12-07T11:00:00.5+01:00","run_id":"r"}`))
	f.Fuzz(func(t *testing.T, leaf []byte) {
		decodeBoth(t, leaf)
		var rec leafFields
		_ = decodeLeaf(leaf, &rec) // never panics
	})
}

func BenchmarkDecodeLeaf(b *testing.B) {
	leaf := sampleLeaf(b, 20)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(leaf)))
		for i := 0; i < b.N; i++ {
			var rec leafFields
			if err := decodeLeaf(leaf, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(leaf)))
		for i := 0; i < b.N; i++ {
			var rec leafFields
			if err := json.Unmarshal(leaf, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
