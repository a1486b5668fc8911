package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// FuzzEnvelopeJSON checks that the envelope bytes written without
// reflection are json.Marshal's, and that the envelope rebuilt from its
// stored parts is the envelope.
func FuzzEnvelopeJSON(f *testing.F) {
	f.Add("application/vnd.in-toto+json", "eyJhIjoxfQ==", "key-1", "AAAA", 1)
	f.Add("a<b", "x", "", "", 0)
	f.Add("é", "\x00", "k\"", "s\\", 2)
	f.Add("text/plain", "", "~\x7f", "", 3)
	f.Fuzz(func(t *testing.T, pt, payload, kid, sig string, nsig int) {
		env := &Envelope{PayloadType: pt, Payload: payload}
		switch {
		case nsig < 0 || nsig > 3:
			env.Signatures = []dsse.Signature{} // empty, not nil
		case nsig > 0:
			for i := 0; i < nsig; i++ {
				env.Signatures = append(env.Signatures, dsse.Signature{KeyID: kid, Sig: sig})
			}
		}
		want, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EnvelopeBytes(env)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("EnvelopeBytes = %s, %v; json.Marshal %s", got, err, want)
		}
		// Stored parts hold the decoded base64: use valid base64 here.
		env.Payload = base64.StdEncoding.EncodeToString([]byte(payload))
		for i := range env.Signatures {
			env.Signatures[i].Sig = base64.StdEncoding.EncodeToString([]byte(sig))
		}
		if len(env.Signatures) == 0 {
			env.Signatures = nil // parts keep no difference between none and empty
		}
		eb, err := EnvelopeBytes(env)
		if err != nil {
			t.Fatal(err)
		}
		parts, ok := envelopeParts(env, eb)
		if !ok {
			t.Fatalf("envelope %s has no parts", eb)
		}
		back, err := envelopeFromParts(parts)
		if err != nil || !bytes.Equal(back, eb) {
			t.Fatalf("rebuilt %s, %v; want %s", back, err, eb)
		}
	})
}
