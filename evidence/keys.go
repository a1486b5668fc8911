package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Key file names inside a keys directory.
const (
	EvidenceKeyFile      = "evidence.key"    // Ed25519 private key, PKCS#8 PEM (DSSE signing)
	EvidencePubFile      = "evidence.pub"    // Ed25519 public key, PKIX PEM
	CheckpointKeyFile    = "checkpoint.key"  // signed-note signer key (PRIVATE+KEY+name+hash+base64)
	CheckpointVerifyFile = "checkpoint.vkey" // signed-note verifier key (name+hash+base64)
)

// DefaultOrigin is the checkpoint origin (log identity) used when none is given.
const DefaultOrigin = "chaosgate.local/evidence"

// KeyInfo describes a generated or loaded key set.
type KeyInfo struct {
	Dir              string `json:"dir"`
	Origin           string `json:"origin"`
	EvidenceKeyID    string `json:"evidence_key_id"`   // hex SHA-256 of the PKIX public key
	CheckpointKeyID  string `json:"checkpoint_key_id"` // note key hash, 8 hex digits
	CheckpointVerify string `json:"checkpoint_verifier"`
}

// Keys holds the signing keys of a ledger: the Ed25519 key that signs DSSE
// envelopes and the note signer that signs checkpoints and block headers.
type Keys struct {
	Info       KeyInfo
	evidence   ed25519.PrivateKey
	cpSigner   note.Signer
	cpVerifier note.Verifier
	cpPriv     ed25519.PrivateKey // same key as cpSigner, for block header signatures
}

// EvidenceKeyID is the hex SHA-256 of the PKIX encoding of an Ed25519 public
// key; `openssl pkey -pubin -in evidence.pub -outform DER | sha256sum` prints it.
func EvidenceKeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil { // cannot happen for a 32-byte Ed25519 key
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ValidOrigin reports whether origin can name a log (a note key name: no
// spaces, no '+', not empty).
func ValidOrigin(origin string) error {
	if origin == "" || strings.ContainsAny(origin, "+ \t\n\r") || strings.ContainsFunc(origin, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errorf(KindInvalid, "origin", "%q is not a valid log origin (no spaces, '+' or control characters, not empty)", origin)
	}
	return nil
}

// GenerateKeys creates a new key set in dir (created with mode 0700 when
// missing). Every file is written with mode 0600. It refuses to overwrite any
// existing key file.
func GenerateKeys(dir, origin string) (*Keys, error) {
	if err := ValidOrigin(origin); err != nil {
		return nil, err
	}
	for _, f := range []string{EvidenceKeyFile, EvidencePubFile, CheckpointKeyFile, CheckpointVerifyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return nil, &Error{Kind: KindPermission, Op: "keygen", Err: fmt.Errorf("%s already exists", filepath.Join(dir, f)),
				Hint: "keys are never overwritten; choose another --dir or move the old keys away"}
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, wrap(KindInternal, "keygen", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, wrap(KindInternal, "keygen", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, wrap(KindInternal, "keygen", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, wrap(KindInvalid, "keygen", err)
	}
	files := []keyFile{
		{EvidenceKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})},
		{EvidencePubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})},
		{CheckpointKeyFile, []byte(skey + "\n")},
		{CheckpointVerifyFile, []byte(vkey + "\n")},
	}
	if err := writeKeySet(dir, files); err != nil {
		return nil, err
	}
	return LoadKeys(dir)
}

type keyFile struct {
	name string
	data []byte
}

// writeKeySet writes a whole key set into dir, or nothing: the files are
// written and fsynced in a staging directory first. A new dir is the
// staging directory renamed into place (atomic, even across a crash); in
// an existing dir each file is hard-linked into place (never replacing a
// file) and the links made so far are removed if one fails.
func writeKeySet(dir string, files []keyFile) error {
	stage := func(tmp string) error {
		for _, f := range files {
			p := filepath.Join(tmp, f.name)
			fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return wrap(KindUnavailable, "keygen", err)
			}
			_, werr := fh.Write(f.data)
			serr := fh.Sync()
			cerr := fh.Close()
			if err := errors.Join(werr, serr, cerr); err != nil {
				return wrap(KindUnavailable, "keygen "+p, err)
			}
		}
		return syncDir(tmp)
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(dir)
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return wrap(KindInvalid, "keygen", err)
		}
		tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
		if err != nil {
			return wrap(KindUnavailable, "keygen", err)
		}
		if err := stage(tmp); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return &Error{Kind: KindPermission, Op: "keygen", Err: err, Hint: "keys are never overwritten"}
		}
		return wrapIf(KindUnavailable, "keygen", syncDir(parent))
	}
	tmp, err := os.MkdirTemp(dir, ".keygen-")
	if err != nil {
		return wrap(KindUnavailable, "keygen", err)
	}
	defer os.RemoveAll(tmp)
	if err := stage(tmp); err != nil {
		return err
	}
	var linked []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.Link(filepath.Join(tmp, f.name), p); err != nil {
			for _, l := range linked {
				os.Remove(l)
			}
			syncDir(dir)
			return &Error{Kind: KindPermission, Op: "keygen", Err: err, Hint: "keys are never overwritten"}
		}
		linked = append(linked, p)
	}
	return wrapIf(KindUnavailable, "keygen", syncDir(dir))
}

func wrapIf(kind Kind, op string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(kind, op, err)
}

// LoadKeys reads a key set from dir. Private key files readable or writable
// by group or others are refused.
func LoadKeys(dir string) (*Keys, error) {
	evPEM, err := readKeyFile(dir, EvidenceKeyFile)
	if err != nil {
		return nil, err
	}
	skey, err := readKeyFile(dir, CheckpointKeyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(evPEM)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, &Error{Kind: KindInvalid, Op: "load keys", Err: fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" block", filepath.Join(dir, EvidenceKeyFile)), Hint: "create keys with `chaosgate keygen --dir DIR`"}
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, wrap(KindInvalid, "load keys "+filepath.Join(dir, EvidenceKeyFile), err)
	}
	evKey, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errorf(KindInvalid, "load keys "+filepath.Join(dir, EvidenceKeyFile), "key is %T, want Ed25519", k)
	}
	skeyStr := strings.TrimSpace(string(skey))
	signer, err := note.NewSigner(skeyStr)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Op: "load keys " + filepath.Join(dir, CheckpointKeyFile), Err: err, Hint: "the file must hold one PRIVATE+KEY+name+hash+base64 line"}
	}
	cpPriv, err := notePrivateKey(skeyStr)
	if err != nil {
		return nil, wrap(KindInvalid, "load keys "+filepath.Join(dir, CheckpointKeyFile), err)
	}
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), cpPriv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, wrap(KindInternal, "load keys", err)
	}
	verifier, err := noteVerifier(vkey)
	if err != nil {
		return nil, wrap(KindInternal, "load keys", err)
	}
	return &Keys{
		Info: KeyInfo{
			Dir:              dir,
			Origin:           signer.Name(),
			EvidenceKeyID:    EvidenceKeyID(evKey.Public().(ed25519.PublicKey)),
			CheckpointKeyID:  fmt.Sprintf("%08x", signer.KeyHash()),
			CheckpointVerify: vkey,
		},
		evidence:   evKey,
		cpSigner:   signer,
		cpVerifier: verifier,
		cpPriv:     cpPriv,
	}, nil
}

// LoadOrGenerateKeys loads the keys in dir, creating them with origin when
// the directory holds no key files at all (the embedded default on a fresh
// machine). A partial key set is an error, never silently replaced.
func LoadOrGenerateKeys(dir, origin string) (*Keys, bool, error) {
	_, err1 := os.Stat(filepath.Join(dir, EvidenceKeyFile))
	_, err2 := os.Stat(filepath.Join(dir, CheckpointKeyFile))
	if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
		k, err := GenerateKeys(dir, origin)
		return k, true, err
	}
	k, err := LoadKeys(dir)
	return k, false, err
}

// EvidencePublic returns the public key that verifies DSSE envelopes.
func (k *Keys) EvidencePublic() ed25519.PublicKey { return k.evidence.Public().(ed25519.PublicKey) }

// CheckpointVerifier returns the note verifier of checkpoints.
func (k *Keys) CheckpointVerifier() note.Verifier { return k.cpVerifier }

// CheckpointSigner returns the note signer of checkpoints.
func (k *Keys) CheckpointSigner() note.Signer { return k.cpSigner }

// EvidencePublicPEM returns the PKIX PEM of the evidence public key.
func (k *Keys) EvidencePublicPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.EvidencePublic())
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Verifier returns the verification half of the key set.
func (k *Keys) Verifier() *PublicKeys {
	return &PublicKeys{Origin: k.Info.Origin, Evidence: k.EvidencePublic(), EvidenceKeyID: k.Info.EvidenceKeyID, Checkpoint: k.cpVerifier, CheckpointVKey: k.Info.CheckpointVerify}
}

// PublicKeys verifies what a key set signed; auditors hold only these.
type PublicKeys struct {
	Origin         string
	Evidence       ed25519.PublicKey
	EvidenceKeyID  string
	Checkpoint     note.Verifier
	CheckpointVKey string
}

// ParsePublicKeys builds PublicKeys from an evidence public key PEM and a
// checkpoint verifier key in note format.
func ParsePublicKeys(evidencePEM []byte, vkey string) (*PublicKeys, error) {
	blk, _ := pem.Decode(evidencePEM)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errorf(KindInvalid, "public keys", "evidence key is not a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, wrap(KindInvalid, "public keys", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errorf(KindInvalid, "public keys", "evidence key is %T, want Ed25519", k)
	}
	v, err := noteVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, wrap(KindInvalid, "public keys: checkpoint verifier", err)
	}
	return &PublicKeys{Origin: v.Name(), Evidence: pub, EvidenceKeyID: EvidenceKeyID(pub), Checkpoint: v, CheckpointVKey: strings.TrimSpace(vkey)}, nil
}

// LoadPublicKeys reads evidence.pub and checkpoint.vkey from dir.
func LoadPublicKeys(dir string) (*PublicKeys, error) {
	ev, err := os.ReadFile(filepath.Join(dir, EvidencePubFile))
	if err != nil {
		return nil, &Error{Kind: KindNotFound, Op: "public keys", Err: err, Hint: "create keys with `chaosgate keygen --dir DIR`"}
	}
	vk, err := os.ReadFile(filepath.Join(dir, CheckpointVerifyFile))
	if err != nil {
		return nil, &Error{Kind: KindNotFound, Op: "public keys", Err: err, Hint: "create keys with `chaosgate keygen --dir DIR`"}
	}
	return ParsePublicKeys(ev, string(vk))
}

func readKeyFile(dir, name string) ([]byte, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Kind: KindNotFound, Op: "load keys", Err: fmt.Errorf("%s does not exist", p), Hint: "create keys with `chaosgate keygen --dir " + dir + "`"}
		}
		return nil, wrap(KindInvalid, "load keys", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errorf(KindInvalid, "load keys", "%s is not a regular file", p)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &Error{Kind: KindPermission, Op: "load keys", Err: fmt.Errorf("%s has mode %04o: private keys must not be readable or writable by group or others", p, perm), Hint: "chmod 600 " + p}
	}
	return os.ReadFile(p)
}

// notePrivateKey extracts the Ed25519 private key from a note signer key
// string (PRIVATE+KEY+name+hash+base64(alg||seed)).
func notePrivateKey(skey string) (ed25519.PrivateKey, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, errors.New("malformed signer key")
	}
	raw, err := base64Std.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("malformed signer key: want an Ed25519 seed")
	}
	return ed25519.NewKeyFromSeed(raw[1:]), nil
}

// signEvidence signs msg with the evidence key (Ed25519).
func (k *Keys) signEvidence(_ context.Context, msg []byte) []byte {
	return ed25519.Sign(k.evidence, msg)
}

// EvidencePEM returns the evidence public key as PKIX PEM.
func (p *PublicKeys) EvidencePEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(p.Evidence)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
