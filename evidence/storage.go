package evidence

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	bolt "go.etcd.io/bbolt"
)

// How leaves and envelopes are stored in the bolt database. The leaf and
// envelope bytes that are hashed, signed, served and exported never change;
// only their stored form does:
//
//   - a value whose first byte is none of the tags below is the bytes
//     themselves (every value written before compression, and any value
//     that compression does not shrink);
//   - tagStoredCompressed + S2 block: the bytes compressed with the
//     storage dictionary;
//   - tagStoredEnvelope + S2 block: a DSSE envelope as its parts —
//     payload type, decoded payload and each signature's key id and decoded
//     signature, each length-prefixed (uvarint) — compressed with the
//     storage dictionary. It is used only when re-encoding the parts gives
//     back exactly the envelope's bytes, checked when the value is written;
//   - tagStoredHexCompressed, tagStoredHexEnvelope: the same, of the bytes
//     (or parts) hex-packed first (see hexPack): trace ids, digests and
//     signatures spelled in hex take half the room. What is written now;
//     the two tags above are still read.
//
// The tags are control bytes that cannot start a JSON text, so a stored
// value is never ambiguous. S2 (klauspost/compress, a Snappy extension)
// with a dictionary compresses a 1 kB record about as well as zstd with the
// same dictionary at a seventh of the CPU time; blobs, which are large, use
// zstd. The dictionary is frozen: a new one would get new tags.
const (
	tagStoredCompressed    byte = 0x01
	tagStoredEnvelope      byte = 0x02
	tagStoredHexCompressed byte = 0x03
	tagStoredHexEnvelope   byte = 0x04
	// storageDictID is the zstd dictionary id of storageDictV1 (blobs).
	storageDictID uint32 = 0xC6A0_0001
)

// storageDictV1 is a sample of chaosgate evidence (a game day's statement
// and a leaf): the vocabulary that small records share, so that each one
// compresses on its own.
//
//go:embed storage-dict-v1.json
var storageDictV1 []byte

// storageDict is storageDictV1 as an S2 dictionary (leaves, envelopes).
var storageDict = sync.OnceValue(func() *s2.Dict {
	d := s2.MakeDict(storageDictV1, nil)
	if d == nil {
		panic("evidence: the storage dictionary is not a usable S2 dictionary") // a constant: cannot happen
	}
	return d
})

// blobEncoder compresses blobs: zstd with the same dictionary.
var blobEncoder = sync.OnceValue(func() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderDictRaw(storageDictID, storageDictV1))
	if err != nil {
		panic(fmt.Sprintf("evidence: blob encoder: %v", err)) // a constant dictionary: cannot fail
	}
	return enc
})

// maxStoredValue bounds a decompressed leaf or envelope (a damaged frame
// cannot make the reader allocate more).
const maxStoredValue = 64 << 20

// packLeaf is the stored form of a leaf.
func packLeaf(leaf []byte) []byte {
	return packWith(tagStoredHexCompressed, hexPack(leaf), leaf)
}

// packEnvelopeOf is the stored form of envelope env, whose bytes are eb.
func packEnvelopeOf(env *Envelope, eb []byte) []byte {
	if parts, ok := envelopeParts(env, eb); ok {
		return packWith(tagStoredHexEnvelope, hexPack(parts), eb)
	}
	return packWith(tagStoredHexCompressed, hexPack(eb), eb)
}

// packWith compresses body under tag (0: tagStoredCompressed of raw) and
// keeps raw when that does not shrink it.
func packWith(tag byte, body, raw []byte) []byte {
	if tag == 0 {
		tag = tagStoredCompressed
	}
	out := make([]byte, 1+s2.MaxEncodedLen(len(body)))
	out[0] = tag
	out = out[:1+len(storageDict().Encode(out[1:], body))]
	if len(out) < len(raw) || isStorageTag(raw) {
		return out
	}
	return raw
}

func isStorageTag(v []byte) bool {
	return len(v) > 0 && v[0] >= tagStoredCompressed && v[0] <= tagStoredHexEnvelope
}

// unpackStored returns the bytes a stored value stands for. An error means
// the stored value is damaged.
func unpackStored(v []byte) ([]byte, error) {
	var r storedReader
	return r.unpack(v)
}

// storedReader unpacks stored values into buffers it reuses: a verify
// unpacks two values per entry, and allocating their bytes each time was
// a fifth of its CPU. What unpack returns is valid until its next call.
type storedReader struct {
	body, unhex, out []byte
}

// unpack returns the bytes the stored value v stands for, in r's buffers
// (or v itself when it is stored as it is). An error means v is damaged.
func (r *storedReader) unpack(v []byte) ([]byte, error) {
	if !isStorageTag(v) {
		return v, nil
	}
	n, err := s2.DecodedLen(v[1:])
	if err == nil && n > maxStoredValue {
		err = fmt.Errorf("it claims %d bytes", n)
	}
	var body []byte
	if err == nil {
		body, err = storageDict().Decode(r.body[:0], v[1:])
	}
	if err != nil {
		return nil, fmt.Errorf("stored value does not decompress: %w", err)
	}
	r.body = body
	if v[0] == tagStoredHexCompressed || v[0] == tagStoredHexEnvelope {
		if body, err = hexUnpackAppend(r.unhex[:0], body); err != nil {
			return nil, err
		}
		r.unhex = body
	}
	if v[0] == tagStoredCompressed || v[0] == tagStoredHexCompressed {
		return body, nil
	}
	out, err := envelopeFromPartsAppend(r.out[:0], body)
	if err == nil {
		r.out = out
	}
	return out, err
}

// getStored reads the value of entry i in bucket b (an entries or
// envelopes bucket) as the bytes it stands for; nil when there is none.
// what names the value in errors ("entry", "envelope").
func getStored(b *bolt.Bucket, i uint64, what string) ([]byte, error) {
	v := b.Get(u64(i))
	if v == nil {
		return nil, nil
	}
	return unpackValue(v, fmt.Sprintf("%s %d", what, i))
}

// unpackValue is unpackStored with damage reported as tampering of op.
func unpackValue(v []byte, op string) ([]byte, error) {
	var r storedReader
	return r.unpackValue(v, op)
}

// unpackValue is unpack with damage reported as tampering of op.
func (r *storedReader) unpackValue(v []byte, op string) ([]byte, error) {
	out, err := r.unpack(v)
	if err != nil {
		return nil, unpackError(err, op)
	}
	return out, nil
}

// unpackError reports a stored value of op that does not unpack as
// tampering.
func unpackError(err error, op string) error {
	return &Error{Kind: KindTampered, Op: op, Err: err, Hint: "run `chaosgate ledger verify`; restore the ledger from a copy or an export"}
}

// envelopeParts encodes e as its parts when they re-encode to exactly env,
// its bytes.
func envelopeParts(e *Envelope, env []byte) ([]byte, bool) {
	payload, err := base64.StdEncoding.Strict().DecodeString(e.Payload)
	if err != nil {
		return nil, false
	}
	var b []byte
	b = appendPart(b, []byte(e.PayloadType))
	b = appendPart(b, payload)
	b = binary.AppendUvarint(b, uint64(len(e.Signatures)))
	for _, s := range e.Signatures {
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil {
			return nil, false
		}
		b = appendPart(b, []byte(s.KeyID))
		b = appendPart(b, sig)
	}
	back, err := envelopeFromParts(b)
	if err != nil || !bytes.Equal(back, env) {
		return nil, false
	}
	return b, true
}

func appendPart(b, part []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(part))), part...)
}

var errBadParts = errors.New("stored envelope parts are malformed")

// envelopeFromParts rebuilds the envelope bytes from their parts.
func envelopeFromParts(b []byte) ([]byte, error) {
	return envelopeFromPartsAppend(nil, b)
}

// envelopeFromPartsAppend appends the envelope bytes rebuilt from their
// parts b to dst.
func envelopeFromPartsAppend(dst, b []byte) ([]byte, error) {
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errBadParts
		}
		part := b[k : k+int(n)]
		b = b[k+int(n):]
		return part, nil
	}
	pt, err := next()
	if err != nil {
		return nil, err
	}
	payload, err := next()
	if err != nil {
		return nil, err
	}
	nsig, k := binary.Uvarint(b)
	if k <= 0 || nsig > uint64(len(b)) {
		return nil, errBadParts
	}
	b = b[k:]
	e := Envelope{PayloadType: string(pt), Payload: base64.StdEncoding.EncodeToString(payload)}
	for range nsig {
		kid, err := next()
		if err != nil {
			return nil, err
		}
		sig, err := next()
		if err != nil {
			return nil, err
		}
		e.Signatures = append(e.Signatures, dsse.Signature{KeyID: string(kid), Sig: base64.StdEncoding.EncodeToString(sig)})
	}
	if len(b) != 0 {
		return nil, errBadParts
	}
	if out, ok := appendEnvelopeJSON(dst, &e); ok {
		return out, nil
	}
	eb, err := EnvelopeBytes(&e)
	return append(dst, eb...), err
}

// hexEscape starts a packed run in hex-packed bytes (hexPack).
const hexEscape byte = 0x01

// minHexRun is the shortest run of hex digits hexPack packs: shorter ones
// would not pay for the escape and the length.
const minHexRun = 16

var errBadHexRun = errors.New("stored value has a malformed hex-packed run")

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// hexPack replaces each run of at least minHexRun lowercase hex digits in b
// by hexEscape, uvarint(n) and the n bytes the first 2n digits spell (an
// odd run's last digit stays as it is), and each literal hexEscape byte by
// hexEscape, 0. hexUnpack gives b back exactly, whatever b is.
func hexPack(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case isLowerHex(c):
			j := i + 1
			for j < len(b) && isLowerHex(b[j]) {
				j++
			}
			if n := (j - i) &^ 1; n >= minHexRun {
				out = append(out, hexEscape)
				out = binary.AppendUvarint(out, uint64(n/2))
				out, _ = hex.AppendDecode(out, b[i:i+n]) // lowercase hex digits: cannot fail
				i += n
				continue
			}
			out = append(out, b[i:j]...)
			i = j
		case c == hexEscape:
			out = append(out, hexEscape, 0)
			i++
		default:
			out = append(out, c)
			i++
		}
	}
	return out
}

// hexUnpack reverses hexPack; an error means p is damaged.
func hexUnpack(p []byte) ([]byte, error) {
	return hexUnpackAppend(nil, p)
}

// hexUnpackAppend appends what hexPack packed into p to dst.
func hexUnpackAppend(dst, p []byte) ([]byte, error) {
	out := slices.Grow(dst, 2*len(p))
	for len(p) > 0 {
		k := bytes.IndexByte(p, hexEscape)
		if k < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:k]...)
		p = p[k+1:]
		n, m := binary.Uvarint(p)
		if m <= 0 || n > uint64(len(p)-m) {
			return nil, errBadHexRun
		}
		p = p[m:]
		if n == 0 {
			out = append(out, hexEscape)
			continue
		}
		out = hex.AppendEncode(out, p[:n])
		p = p[n:]
	}
	return out, nil
}
