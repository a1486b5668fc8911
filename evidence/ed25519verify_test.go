package evidence

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"math/big"
	"math/rand/v2"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// The order ℓ of the prime subgroup, little-endian as in a signature's S.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

func le32(n *big.Int) []byte {
	b := n.FillBytes(make([]byte, 32))
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b
}

func fromLE(b []byte) *big.Int {
	r := make([]byte, len(b))
	for i := range b {
		r[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(r)
}

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edgePoints are encodings crypto/ed25519 treats specially: the small-order
// points (identity, order 2, 4 and 8, both signs) and non-canonical
// encodings (y ≥ p, and x = 0 with the sign bit set).
var edgePoints = []string{
	"0100000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0000000000000000000000000000000000000000000000000000000000000080",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// The ledger's verifier accepts exactly what crypto/ed25519 accepts: on
// valid signatures, on signatures with one bit of the key, the message or
// the signature flipped, on S + ℓ (malleated), and on every combination of
// small-order and non-canonical keys and R with S = 0, 1 and a random S.
func TestVerifyEd25519AgreesWithStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	agree := func(what string, pub, msg, sig []byte) bool {
		t.Helper()
		std := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
		got := verifyEd25519(pub, msg, sig)
		if std != got {
			t.Fatalf("%s: crypto/ed25519 says %v, the ledger's verifier %v (pub %x sig %x msg %x)", what, std, got, pub, sig, msg)
		}
		return std
	}
	accepted, rejected := 0, 0
	count := func(ok bool) {
		if ok {
			accepted++
		} else {
			rejected++
		}
	}
	seed := make([]byte, ed25519.SeedSize)
	for i := 0; i < 200; i++ {
		for j := range seed {
			seed[j] = byte(rng.UintN(256))
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := []byte(priv.Public().(ed25519.PublicKey))
		msg := make([]byte, rng.IntN(2000))
		for j := range msg {
			msg[j] = byte(rng.UintN(256))
		}
		sig := ed25519.Sign(priv, msg)
		if !agree("valid", pub, msg, sig) {
			t.Fatal("a valid signature was rejected by both")
		}
		count(true)
		for _, target := range []*[]byte{&pub, &msg, &sig} {
			if len(*target) == 0 {
				continue
			}
			b := append([]byte(nil), *target...)
			b[rng.IntN(len(b))] ^= 1 << rng.UintN(8)
			p, m, s := pub, msg, sig
			switch target {
			case &pub:
				p = b
			case &msg:
				m = b
			default:
				s = b
			}
			count(agree("one bit flipped", p, m, s))
		}
		// S + ℓ: the same signature, malleated; crypto/ed25519 rejects it.
		if sPlus := new(big.Int).Add(fromLE(sig[32:]), groupOrder); sPlus.BitLen() <= 256 {
			m := append(append([]byte(nil), sig[:32]...), le32(sPlus)...)
			count(agree("S + ℓ", pub, msg, m))
		}
	}
	scalars := [][]byte{make([]byte, 32), le32(big.NewInt(1)),
		le32(new(big.Int).Mod(new(big.Int).SetBytes(mustHex(t, "9f3c1a55d7e2b4c6a8e0f2143658bad0c2e4f60819a3b5c7d9e1f3051729384b")), groupOrder))}
	for _, a := range edgePoints {
		for _, r := range edgePoints {
			for _, s := range scalars {
				sig := append(mustHex(t, r), s...)
				for _, msg := range [][]byte{nil, []byte("chaosgate"), mustHex(t, a)} {
					count(agree("edge A "+a[:8]+" R "+r[:8], mustHex(t, a), msg, sig))
				}
			}
		}
	}
	t.Logf("%d accepted, %d rejected, every one alike", accepted, rejected)
	if accepted <= 200 || rejected == 0 {
		t.Fatalf("the cases exercised only one side: %d accepted, %d rejected", accepted, rejected)
	}
}

// FuzzVerifyEd25519 checks the ledger's verifier against crypto/ed25519 on
// arbitrary keys, messages and signatures.
func FuzzVerifyEd25519(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	msg := []byte("chaosgate evidence")
	f.Add([]byte(priv.Public().(ed25519.PublicKey)), msg, ed25519.Sign(priv, msg))
	for _, p := range edgePoints {
		b, _ := hex.DecodeString(p)
		f.Add(b, msg, append(append([]byte(nil), b...), make([]byte, 32)...))
	}
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		std := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
		if got := verifyEd25519(pub, msg, sig); got != std {
			t.Fatalf("crypto/ed25519 says %v, the ledger's verifier %v", std, got)
		}
	})
}

// TestNoteVerifier: the checkpoint and block verifier takes note's name
// and key hash, accepts what note's own verifier accepts and refuses an
// altered note.
func TestNoteVerifier(t *testing.T) {
	skey, vkey, err := note.GenerateKey(crand.Reader, "example.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := noteVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := note.NewVerifier(vkey)
	if _, ok := ours.(*ed25519NoteVerifier); !ok {
		t.Fatalf("an Ed25519 key got %T", ours)
	}
	if ours.Name() != theirs.Name() || ours.KeyHash() != theirs.KeyHash() {
		t.Fatalf("name/hash %s/%x, note's %s/%x", ours.Name(), ours.KeyHash(), theirs.Name(), theirs.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "example.test/log\n7\nroot\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range [][]byte{msg, bytes.Replace(msg, []byte("7\n"), []byte("8\n"), 1)} {
		_, errOurs := note.Open(m, note.VerifierList(ours))
		_, errTheirs := note.Open(m, note.VerifierList(theirs))
		if (errOurs == nil) != (errTheirs == nil) || (i == 0) != (errOurs == nil) {
			t.Fatalf("note %d: ours %v, note's %v", i, errOurs, errTheirs)
		}
	}
	if _, err := noteVerifier("not a key"); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}
