package evidence

import (
	"crypto/ed25519"
	"sync"
	"sync/atomic"

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
