package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/sumdb/note"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Every ledger append verifies one DSSE signature, and so does every entry
// of `verify --from-scratch`: on a small host that verification is the
// largest single cost of building a ledger. The signatures are checked
// with curve25519-voi (the Ed25519 implementation of Oasis Core, also used
// by CometBFT) on a public key expanded once into precomputed tables, with
// its VerifyOptionsStdLib: exactly the acceptance rules of crypto/ed25519
// (cofactorless equation, S < ℓ, small-order and non-canonical A and small-
// order R accepted as the standard library does). It takes about half the
// CPU of crypto/ed25519.Verify. ed25519verify_test.go checks the two agree
// on valid, altered and crafted edge-case signatures.

// verifyOpts are crypto/ed25519's acceptance rules.
var verifyOpts = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// expandedKeys caches the precomputed tables of the public keys seen, by
// the key's bytes; a process verifies with a handful of evidence keys. It
// is read on every append, so a lookup takes no lock.
var expandedKeys sync.Map

// expandedCount counts the keys in expandedKeys.
var expandedCount atomic.Int32

// maxExpandedKeys bounds the cache: past it a key is expanded per call.
const maxExpandedKeys = 64

func expandedKey(pub ed25519.PublicKey) (*voi.ExpandedPublicKey, error) {
	if x, ok := expandedKeys.Load(string(pub)); ok {
		return x.(*voi.ExpandedPublicKey), nil
	}
	x, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		return nil, err
	}
	if expandedCount.Load() < maxExpandedKeys {
		if _, loaded := expandedKeys.LoadOrStore(string(pub), x); !loaded {
			expandedCount.Add(1)
		}
	}
	return x, nil
}

// verifyEd25519 reports whether sig is pub's valid signature of msg, by
// crypto/ed25519's rules.
func verifyEd25519(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	x, err := expandedKey(pub)
	if err != nil {
		// A key that does not decode to a point: crypto/ed25519 rejects
		// every signature under it too.
		return false
	}
	return voi.VerifyExpandedWithOptions(x, msg, sig, verifyOpts)
}

// noteVerifier is note.NewVerifier's verifier for vkey, checking Ed25519
// signatures with verifyEd25519: a verify opens a signed block and a
// signed checkpoint per commit, and crypto/ed25519 took twice the CPU. The
// acceptance rules are crypto/ed25519's, as note's own verifier applies
// them. A key of another algorithm keeps note's verifier.
func noteVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	// vkey is name+hash+base64(algorithm byte ‖ key); note.NewVerifier
	// accepted it, so it has these three parts.
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return v, nil
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != noteAlgEd25519 {
		return v, nil
	}
	return &ed25519NoteVerifier{Verifier: v, pub: ed25519.PublicKey(key[1:])}, nil
}

// noteAlgEd25519 is note's algorithm byte of an Ed25519 key.
const noteAlgEd25519 = 1

// ed25519NoteVerifier is a note verifier whose signatures are checked by
// verifyEd25519; its name and key hash are note's.
type ed25519NoteVerifier struct {
	note.Verifier
	pub ed25519.PublicKey
}

// Verify reports whether sig is the key's signature of msg.
func (v *ed25519NoteVerifier) Verify(msg, sig []byte) bool { return verifyEd25519(v.pub, msg, sig) }
