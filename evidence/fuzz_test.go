package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"
)

var (
	fuzzKeysOnce sync.Once
	fuzzKeys     *Keys
)

func keysForFuzz(t testing.TB) *Keys {
	fuzzKeysOnce.Do(func() {
		k, err := GenerateKeys(t.TempDir()+"/keys", "example.test/fuzz")
		if err != nil {
			t.Fatal(err)
		}
		fuzzKeys = k
	})
	return fuzzKeys
}

func validStatement(t testing.TB) []byte {
	st, err := BuildStatement("v1", samplePredicate(1))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func FuzzParseStatement(f *testing.F) {
	f.Add(validStatement(f))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"gitCommit":"` + strings.Repeat("a", 40) + `"}}],"predicateType":"x","predicate":{}}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"` + PredicateType + `","predicate":{"run_id":"r","future_field":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseStatement(data)
		// The single pass for chaosgate's own statements must agree with
		// the general path on every input.
		general, gerr := parseStatementGeneral(data)
		if (err == nil) != (gerr == nil) || err != nil && err.Error() != gerr.Error() {
			t.Fatalf("ParseStatement: %v; general path: %v", err, gerr)
		}
		if err == nil && (!proto.Equal(info.Statement, general.Statement) || !reflect.DeepEqual(info.Predicate, general.Predicate) ||
			!reflect.DeepEqual(info.Subjects, general.Subjects) || info.PredicateType != general.PredicateType || info.Experiment != general.Experiment ||
			info.RunID != general.RunID || !slices.Equal(info.TraceIDs, general.TraceIDs) || !slices.Equal(info.Blobs, general.Blobs)) {
			t.Fatalf("ParseStatement %+v, general path %+v", info, general)
		}
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("kind %v: %v", KindOf(err), err)
			}
			return
		}
		if len(info.Statement.GetSubject()) == 0 || info.PredicateType == "" {
			t.Fatal("accepted a statement without subject or predicate type")
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	k := keysForFuzz(f)
	env, err := k.SignStatement(context.Background(), validStatement(f))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := EnvelopeBytes(env)
	f.Add(b)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{"payloadType":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("kind %v: %v", KindOf(err), err)
			}
			return
		}
		// Verification must never panic; only our own signature verifies.
		if _, err := k.Verifier().VerifyEnvelope(context.Background(), env); err == nil {
			if _, err := ParseStatement(mustPayload(t, env)); err != nil {
				t.Fatalf("verified envelope with a bad statement: %v", err)
			}
		}
	})
}

func mustPayload(t *testing.T, env *Envelope) []byte {
	b, err := env.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.test/log\n7\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("example.test/log\n7\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"))
	f.Add([]byte("o\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCheckpoint(data)
		if err != nil {
			return
		}
		// Round trip: the body of a parsed checkpoint re-parses to itself.
		c2, err := ParseCheckpoint(c.Marshal())
		if err != nil || c2 != c {
			t.Fatalf("round trip %v -> %v (%v)", c, c2, err)
		}
	})
}

func FuzzOpenCheckpointNote(f *testing.F) {
	k := keysForFuzz(f)
	sc, err := SignCheckpoint(Checkpoint{Origin: k.Info.Origin, Size: 3, Root: emptyRoot()}, k.CheckpointSigner())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sc.Note)
	f.Add([]byte("x\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenCheckpoint(data, k.CheckpointVerifier())
		if err != nil {
			return
		}
		if got.Origin != k.Info.Origin {
			t.Fatalf("origin %q", got.Origin)
		}
		if _, err := note.Open(data, note.VerifierList(k.CheckpointVerifier())); err != nil {
			t.Fatalf("accepted a note that does not verify: %v", err)
		}
	})
}

func FuzzParseTlogProof(f *testing.F) {
	k := keysForFuzz(f)
	sc, _ := SignCheckpoint(Checkpoint{Origin: k.Info.Origin, Size: 1, Root: emptyRoot()}, k.CheckpointSigner())
	p := &TlogProof{Index: 0, Checkpoint: sc.Note, Extra: []byte("x")}
	f.Add(p.Marshal())
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\ncp"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseTlogProof(data)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("kind %v", KindOf(err))
			}
			return
		}
		p2, err := ParseTlogProof(p.Marshal())
		if err != nil || p2.Index != p.Index || len(p2.Hashes) != len(p.Hashes) {
			t.Fatalf("round trip: %v", err)
		}
		_, _ = VerifyTlogProof(p, []byte("leaf"), k.CheckpointVerifier())
	})
}

func FuzzParseBlockHeader(f *testing.F) {
	h := blockHeader{Origin: "o", Height: 1, First: 2, Count: 3, Size: 5, Root: emptyRoot()}
	f.Add(string(h.marshal()))
	f.Add("o block\nheight x\n")
	f.Fuzz(func(t *testing.T, text string) {
		b, err := parseBlockHeader(text)
		if err != nil {
			return
		}
		if _, err := parseBlockHeader(string(b.marshal())); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0", 64))
	f.Add("sha256:XYZ")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err == nil && string(d) != s {
			t.Fatal("digest changed")
		}
	})
}

// FuzzIndexKeys checks that the index keys Verify rebuilds from a stored
// leaf are the ones the writer made from the record before encoding it.
func FuzzIndexKeys(f *testing.F) {
	f.Add(uint64(7), "v1", "v1", "exp", "trace", int64(1795314240182969680))
	f.Add(uint64(0), `",\"index\":9,`, "", "", "", int64(-1))
	f.Add(uint64(1<<63), "a\x00b", "<&>", "", "\u2028", int64(0))
	f.Fuzz(func(t *testing.T, idx uint64, rev, subj, exp, trace string, ns int64) {
		for _, s := range []string{rev, subj, exp, trace} {
			if !utf8.ValidString(s) {
				t.Skip() // the ledger indexes what JSON stores: see commit
			}
		}
		rec := EntryRecord{V: 1, Index: idx, Time: time.Unix(0, ns).UTC(), Revision: rev, Subjects: []string{subj, rev}, Experiment: exp, TraceIDs: []string{trace, trace}}
		leaf, err := json.Marshal(&rec)
		if err != nil {
			t.Skip()
		}
		var back leafFields
		if err := json.Unmarshal(leaf, &back); err != nil {
			t.Fatal(err)
		}
		for _, f := range []indexFormat{{batch: 1}, {batch: 4096, batchedTraces: true}, {batch: 3, batchedTraces: true}} {
			want := f.entryIndexKeys(rec.Revision, rec.Subjects, rec.Experiment, rec.TraceIDs, rec.Time, idx)
			if got := f.indexKeys(&back, idx); !reflect.DeepEqual(got, want) {
				t.Fatalf("%+v: rebuilt %q, written %q from %s", f, got, want, leaf)
			}
			for _, k := range want[2] {
				if p := f.tracePrefix(trace, idx/f.batch); !bytes.HasPrefix(k, p) || len(k) != len(p)+8 {
					t.Fatalf("%+v: trace key %q is not the prefix of %q and the index", f, k, trace)
				}
			}
		}
	})
}

func FuzzParsePublicKeys(f *testing.F) {
	k := keysForFuzz(f)
	f.Add(k.EvidencePublicPEM(), k.Info.CheckpointVerify)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "a+00000000+AQ==")
	f.Fuzz(func(t *testing.T, pemBytes []byte, vkey string) {
		p, err := ParsePublicKeys(pemBytes, vkey)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("kind %v", KindOf(err))
			}
			return
		}
		if len(p.Evidence) != 32 || p.Origin == "" {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func FuzzNotePrivateKey(f *testing.F) {
	f.Add("PRIVATE+KEY+o+01234567+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("PRIVATE+KEY")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := notePrivateKey(s)
		if err == nil && len(k) != 64 {
			t.Fatalf("key of %d bytes", len(k))
		}
	})
}
