package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The storage dictionary is frozen: stored values name it by id, and a
// changed dictionary would make every compressed value of an existing
// ledger unreadable.
func TestStorageDictionaryIsFrozen(t *testing.T) {
	sum := sha256.Sum256(storageDictV1)
	if got := hex.EncodeToString(sum[:]); got != "0b6ff672230d4ecf84b6515eedd87b34ce82d43c7e2f2c2671c8d0a98f845222" {
		t.Fatalf("storage-dict-v1.json changed (sha256 %s): add a new dictionary with a new id and tag instead", got)
	}
}

// packEnvelope is the stored form of envelope bytes (packEnvelopeOf of
// them parsed).
func packEnvelope(env []byte) []byte {
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		return packWith(0, env, env)
	}
	return packEnvelopeOf(&e, env)
}

func TestStoredFormsRoundTrip(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "example.test/storage")
	st, err := BuildStatement("v1.2.3", samplePredicate(1))
	if err != nil {
		t.Fatal(err)
	}
	env, err := k.SignStatement(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := EnvelopeBytes(env)
	if err != nil {
		t.Fatal(err)
	}
	packed := packEnvelope(eb)
	if packed[0] != tagStoredHexEnvelope || len(packed) >= len(eb)/2 {
		t.Fatalf("envelope of %d bytes stored as %d bytes, tag %#x", len(eb), len(packed), packed[0])
	}
	t.Logf("envelope %d bytes → %d stored", len(eb), len(packed))
	back, err := unpackStored(packed)
	if err != nil || !bytes.Equal(back, eb) {
		t.Fatalf("round trip: %v", err)
	}
	// Bytes that are not a canonical envelope are compressed as they are.
	odd := append([]byte(" "), eb...)
	if p := packEnvelope(odd); p[0] != tagStoredHexCompressed {
		t.Fatalf("a non-canonical envelope stored with tag %#x", p[0])
	} else if back, err := unpackStored(p); err != nil || !bytes.Equal(back, odd) {
		t.Fatalf("round trip of a non-canonical envelope: %v", err)
	}
	// What compression does not shrink is stored as it is; a value that
	// starts with a tag byte is always compressed, so it reads back.
	// Values written before hex packing still read back.
	parts, ok := envelopeParts(env, eb)
	if !ok {
		t.Fatal("a canonical envelope has no parts")
	}
	for _, v := range [][]byte{packWith(tagStoredEnvelope, parts, eb), packWith(tagStoredCompressed, eb, eb)} {
		if back, err := unpackStored(v); err != nil || !bytes.Equal(back, eb) {
			t.Fatalf("a value stored with tag %#x reads back %v", v[0], err)
		}
	}
	for _, raw := range [][]byte{[]byte("{}"), {tagStoredCompressed}, {tagStoredEnvelope, 'x'}, {tagStoredHexEnvelope}} {
		back, err := unpackStored(packLeaf(raw))
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("%q: %q %v", raw, back, err)
		}
	}
	if _, err := unpackStored([]byte{tagStoredCompressed, 1, 2, 3}); err == nil {
		t.Fatal("a damaged frame decoded")
	}
}

// FuzzStoredValue: any stored value decodes or fails with an error, never a
// panic; any bytes stored as a leaf or an envelope read back unchanged.
func FuzzStoredValue(f *testing.F) {
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"k","sig":"AAAA"}]}`))
	f.Add([]byte{tagStoredCompressed, 0x28, 0xb5, 0x2f, 0xfd})
	f.Add([]byte{tagStoredEnvelope, 0, 0})
	f.Add(packLeaf([]byte(`{"v":1,"index":3,"revision":"v1.0"}`)))
	f.Add([]byte("\x01\x00" + strings.Repeat("0123456789abcdef", 5) + "f"))
	f.Fuzz(func(t *testing.T, v []byte) {
		_, _ = unpackStored(v)
		_, _ = envelopeFromParts(v)
		_, _ = hexUnpack(v)
		// A stored trace-id batch: whatever it holds expands or errs, and
		// what expands encodes back to it.
		ixf := indexFormat{batch: 4096, batchedTraces: true}
		if recs, err := ixf.traceBatchRecords(u64(3), v); err == nil && !bytes.Equal(encodeTraceRecords(recs), v) {
			t.Fatalf("trace batch %x reads as records that encode to %x", v, encodeTraceRecords(recs))
		}
		if back, err := hexUnpack(hexPack(v)); err != nil || !bytes.Equal(back, v) {
			t.Fatalf("%q hex-packed reads back %q, %v", v, back, err)
		}
		for _, p := range [][]byte{packLeaf(v), packEnvelope(v)} {
			back, err := unpackStored(p)
			if err != nil || !bytes.Equal(back, v) {
				t.Fatalf("%q stored as %q reads back %q, %v", v, p, back, err)
			}
		}
	})
}

func TestBlobsStoredCompressed(t *testing.T) {
	s, err := NewBlobStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte(`{"arm":"canary","latency_ms":12.5,"ok":true}`+"\n"), 2000)
	small := []byte("log fragment\n")
	for _, data := range [][]byte{big, small} {
		d, err := s.Put(data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(data); err != nil { // twice: one file
			t.Fatal(err)
		}
		got, err := s.Get(d)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes read back as %d: %v", len(data), len(got), err)
		}
	}
	d := DigestOf(big)
	f := s.File(d)
	fi, err := os.Stat(f)
	if err != nil || !strings.HasSuffix(f, ".zst") || fi.Size() > int64(len(big)/20) {
		t.Fatalf("a %d-byte JSON lines blob stored as %s (%v)", len(big), f, err)
	}
	if f := s.File(DigestOf(small)); strings.HasSuffix(f, ".zst") {
		t.Fatalf("a blob compression does not shrink stored compressed: %s", f)
	}
	z, _ := os.ReadFile(f)
	z[len(z)/2] ^= 1
	if err := os.WriteFile(f, z, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(d); KindOf(err) != KindTampered || !strings.Contains(err.Error(), "does not decompress") {
		t.Fatalf("a damaged compressed blob: %v", err)
	}
}

func benchEnvelope(b testing.TB) []byte {
	k := newKeys(b, "example.test/storage")
	st, err := BuildStatement("v1.2.3", samplePredicate(1))
	if err != nil {
		b.Fatal(err)
	}
	env, err := k.SignStatement(context.Background(), st)
	if err != nil {
		b.Fatal(err)
	}
	eb, err := EnvelopeBytes(env)
	if err != nil {
		b.Fatal(err)
	}
	return eb
}

// BenchmarkPackEnvelope is the cost the storage form adds to an append
// (paid by the appending goroutine).
func BenchmarkPackEnvelope(b *testing.B) {
	eb := benchEnvelope(b)
	b.SetBytes(int64(len(eb)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			packEnvelope(eb)
		}
	})
}

// BenchmarkUnpackEnvelope is the cost it adds to reading an entry.
func BenchmarkUnpackEnvelope(b *testing.B) {
	p := packEnvelope(benchEnvelope(b))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := unpackStored(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestHexPack: runs of 16 or more lowercase hex digits are packed to half
// their size, shorter ones, uppercase and literal escape bytes are kept,
// and a damaged run is an error.
func TestHexPack(t *testing.T) {
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		in      string
		maxSize int
	}{
		{`{"trace_ids":["` + trace + `","` + trace + `"]}`, 21 + 2*18},
		{"0123456789abcde", 15},          // too short: kept
		{"0123456789abcdef0", 2 + 8 + 1}, // odd: the last digit stays
		{"0123456789ABCDEF0123", 20},     // uppercase: kept
		{"\x01\x01", 4},                  // literal escapes
		{"", 0},
	} {
		p := hexPack([]byte(tc.in))
		if len(p) > tc.maxSize {
			t.Errorf("%q packed to %d bytes, want at most %d", tc.in, len(p), tc.maxSize)
		}
		back, err := hexUnpack(p)
		if err != nil || string(back) != tc.in {
			t.Errorf("%q reads back %q, %v", tc.in, back, err)
		}
	}
	for _, bad := range [][]byte{{hexEscape}, {hexEscape, 5, 1, 2}, {hexEscape, 0x80}} {
		if _, err := hexUnpack(bad); err == nil {
			t.Errorf("damaged run %x unpacked", bad)
		}
	}
}
