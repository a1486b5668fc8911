package evidence

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base64Std = base64.StdEncoding

// Checkpoint is the body of a C2SP tlog-checkpoint: origin, tree size, root.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
}

// SignedCheckpoint is a checkpoint and the signed note that carries it.
type SignedCheckpoint struct {
	Checkpoint
	Note []byte // the full signed note text (body, blank line, signatures)
}

// Marshal returns the checkpoint body: "<origin>\n<size>\n<base64 root>\n"
// (transparency-dev/formats/log's C2SP tlog-checkpoint encoding).
func (c Checkpoint) Marshal() []byte {
	return fmtlog.Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Root[:]}.Marshal()
}

// ParseCheckpoint parses a checkpoint body with
// transparency-dev/formats/log, then applies the rules that package leaves
// to its callers, each reported with its line: a valid origin, a canonical
// decimal size, a 32-byte root, and non-empty extension lines (C2SP
// tlog-checkpoint; extensions are allowed and ignored).
func ParseCheckpoint(body []byte) (Checkpoint, error) {
	var c Checkpoint
	if !bytes.HasSuffix(body, []byte("\n")) {
		return c, errorf(KindInvalid, "checkpoint", "body does not end in a newline")
	}
	lines := strings.Split(string(body[:len(body)-1]), "\n")
	if len(lines) < 3 {
		return c, errorf(KindInvalid, "checkpoint", "body has %d lines, want at least 3 (origin, size, root hash)", len(lines))
	}
	if err := ValidOrigin(lines[0]); err != nil {
		return c, errorf(KindInvalid, "checkpoint", "line 1: %v", err)
	}
	var lc fmtlog.Checkpoint
	rest, err := lc.Unmarshal(body)
	switch {
	case err != nil && strings.Contains(err.Error(), "size"), err == nil && len(lines[1]) > 1 && lines[1][0] == '0':
		return c, errorf(KindInvalid, "checkpoint", "line 2: tree size %q is not a decimal number", lines[1])
	case err != nil && strings.Contains(err.Error(), "hash"), err == nil && len(lc.Hash) != tlog.HashSize:
		return c, errorf(KindInvalid, "checkpoint", "line 3: root %q is not a base64 SHA-256 hash", lines[2])
	case err != nil:
		return c, errorf(KindInvalid, "checkpoint", "%v", err)
	}
	if len(rest) > 0 {
		for i, l := range strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n") {
			if l == "" {
				return c, errorf(KindInvalid, "checkpoint", "line %d: empty extension line", i+4)
			}
		}
	}
	c.Origin = lc.Origin
	c.Size = lc.Size
	copy(c.Root[:], lc.Hash)
	return c, nil
}

// SignCheckpoint signs c as a note with signer.
func SignCheckpoint(c Checkpoint, signer note.Signer) (SignedCheckpoint, error) {
	msg, err := note.Sign(&note.Note{Text: string(c.Marshal())}, signer)
	if err != nil {
		return SignedCheckpoint{}, wrap(KindInternal, "sign checkpoint", err)
	}
	return SignedCheckpoint{Checkpoint: c, Note: msg}, nil
}

// OpenCheckpoint verifies a signed checkpoint note with v and parses it. The
// checkpoint origin must equal the verifier's name.
func OpenCheckpoint(msg []byte, v note.Verifier) (SignedCheckpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		kind := KindInvalid
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		if errors.As(err, &inv) || errors.As(err, &unv) {
			kind = KindTampered
		}
		return SignedCheckpoint{}, &Error{Kind: kind, Op: "checkpoint", Err: err, Hint: "check it with the verifier key printed by `chaosgate ledger pubkey`"}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return SignedCheckpoint{}, err
	}
	if c.Origin != v.Name() {
		return SignedCheckpoint{}, errorf(KindInvalid, "checkpoint", "origin %q does not match the verifier key name %q", c.Origin, v.Name())
	}
	return SignedCheckpoint{Checkpoint: c, Note: msg}, nil
}

// ProofHeader is the first line of a C2SP tlog-proof.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// TlogProof is a C2SP tlog-proof: an inclusion proof of one entry against a
// signed checkpoint, verifiable offline.
type TlogProof struct {
	Extra      []byte
	Index      uint64
	Hashes     []tlog.Hash
	Checkpoint []byte // signed note
}

// Marshal encodes the proof in the c2sp.org/tlog-proof@v1 text format.
func (p *TlogProof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if len(p.Extra) > 0 {
		b.WriteString("extra " + base64Std.EncodeToString(p.Extra) + "\n")
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64Std.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseTlogProof decodes a c2sp.org/tlog-proof@v1 file. It checks the shape
// only; Verify checks the proof.
func ParseTlogProof(data []byte) (*TlogProof, error) {
	head, cp, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, errorf(KindInvalid, "tlog-proof", "no blank line between the proof and the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != ProofHeader {
		return nil, errorf(KindInvalid, "tlog-proof", "line 1: %q, want %q", lines[0], ProofHeader)
	}
	p := &TlogProof{Checkpoint: cp}
	i := 1
	if i < len(lines) && strings.HasPrefix(lines[i], "extra ") {
		x, err := base64Std.DecodeString(strings.TrimPrefix(lines[i], "extra "))
		if err != nil {
			return nil, errorf(KindInvalid, "tlog-proof", "line %d: extra is not base64", i+1)
		}
		p.Extra = x
		i++
	}
	if i >= len(lines) || !strings.HasPrefix(lines[i], "index ") {
		return nil, errorf(KindInvalid, "tlog-proof", "line %d: want \"index N\"", i+1)
	}
	s := strings.TrimPrefix(lines[i], "index ")
	idx, err := strconv.ParseUint(s, 10, 64)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return nil, errorf(KindInvalid, "tlog-proof", "line %d: index %q is not a decimal number", i+1, s)
	}
	p.Index = idx
	for j, l := range lines[i+1:] {
		h, err := base64Std.DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return nil, errorf(KindInvalid, "tlog-proof", "line %d: %q is not a base64 SHA-256 hash", i+2+j, l)
		}
		p.Hashes = append(p.Hashes, tlog.Hash(h))
	}
	if len(p.Hashes) > 64 {
		return nil, errorf(KindInvalid, "tlog-proof", "%d proof hashes, at most 64 are possible", len(p.Hashes))
	}
	return p, nil
}

// VerifyTlogProof checks that leaf (the exact leaf bytes) is entry p.Index of
// the tree committed to by p's checkpoint, signed by v.
func VerifyTlogProof(p *TlogProof, leaf []byte, v note.Verifier) (SignedCheckpoint, error) {
	sc, err := OpenCheckpoint(p.Checkpoint, v)
	if err != nil {
		return sc, err
	}
	if p.Index >= sc.Size {
		return sc, errorf(KindInvalid, "tlog-proof", "index %d is outside the checkpoint's tree of size %d", p.Index, sc.Size)
	}
	if err := tlog.CheckRecord(tlog.RecordProof(p.Hashes), int64(sc.Size), sc.Root, int64(p.Index), tlog.RecordHash(leaf)); err != nil {
		return sc, wrap(KindTampered, fmt.Sprintf("tlog-proof for entry %d", p.Index), err)
	}
	return sc, nil
}
