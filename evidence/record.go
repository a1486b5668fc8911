package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	ita1 "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envelope is a DSSE envelope (payloadType, base64 payload, signatures).
type Envelope = dsse.Envelope

var (
	reSHA256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reGitCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// SubjectFor turns a deployment revision into an in-toto subject: an image
// digest ("sha256:<hex>" or "name@sha256:<hex>") becomes a sha256 digest, a
// 40-hex git commit a gitCommit digest; any other label is kept as the
// subject name with the SHA-256 of the label as its digest.
func SubjectFor(revision string) (*ita1.ResourceDescriptor, error) {
	if revision == "" || strings.ContainsAny(revision, "\x00\n\r") {
		return nil, &Error{Kind: KindInvalid, Op: "revision", Err: fmt.Errorf("%q is not a revision", revision), Hint: "pass an image digest (sha256:...), a git commit or a release label"}
	}
	name, dig, hasAt := strings.Cut(revision, "@")
	if !hasAt {
		dig, name = revision, revision
	}
	if h, ok := strings.CutPrefix(dig, "sha256:"); ok && reSHA256Hex.MatchString(h) {
		return &ita1.ResourceDescriptor{Name: name, Digest: map[string]string{"sha256": h}}, nil
	}
	if reGitCommit.MatchString(revision) {
		return &ita1.ResourceDescriptor{Name: revision, Digest: map[string]string{"gitCommit": revision}}, nil
	}
	sum := sha256.Sum256([]byte(revision))
	return &ita1.ResourceDescriptor{Name: revision, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}, nil
}

// BuildStatement returns the in-toto Statement v1 JSON for a run of
// revision. Each alias — another name a gate may ask for the same
// revision: a pod-template hash, an image digest, a CI commit — becomes one
// more subject (once; the revision itself is not repeated).
func BuildStatement(revision string, p *Predicate, aliases ...string) ([]byte, error) {
	subj, err := SubjectFor(revision)
	if err != nil {
		return nil, err
	}
	subjects := []*ita1.ResourceDescriptor{subj}
	seen := map[string]bool{revision: true, subj.Name: true}
	for _, a := range aliases {
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		s, err := SubjectFor(a)
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, s)
	}
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, wrap(KindInvalid, "predicate", err)
	}
	var ps structpb.Struct
	if err := protojson.Unmarshal(pj, &ps); err != nil {
		return nil, wrap(KindInvalid, "predicate", err)
	}
	st := &ita1.Statement{Type: ita1.StatementTypeUri, Subject: subjects, PredicateType: PredicateType, Predicate: &ps}
	if err := st.Validate(); err != nil {
		return nil, wrap(KindInvalid, "statement", err)
	}
	out, err := protojson.Marshal(st)
	if err != nil {
		return nil, wrap(KindInternal, "statement", err)
	}
	// protojson output is deliberately unstable in whitespace; compact it so
	// equal statements have equal bytes.
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return nil, wrap(KindInternal, "statement", err)
	}
	return buf.Bytes(), nil
}

// StatementInfo is what the ledger indexes from a statement.
type StatementInfo struct {
	Statement     *ita1.Statement
	PredicateType string
	Subjects      []string // subject names
	Experiment    string
	RunID         string
	TraceIDs      []string
	Blobs         []Digest
	Predicate     *Predicate // nil unless PredicateType is ours
}

// statementJSON mirrors the in-toto Statement v1 JSON (and its
// ResourceDescriptor) so parsing needs one pass of encoding/json.
type statementJSON struct {
	Type          string           `json:"_type"`
	Subject       []descriptorJSON `json:"subject"`
	PredicateType string           `json:"predicateType"`
	Predicate     json.RawMessage  `json:"predicate"`
}

type descriptorJSON struct {
	Name             string            `json:"name"`
	URI              string            `json:"uri"`
	Digest           map[string]string `json:"digest"`
	Content          []byte            `json:"content"`
	DownloadLocation string            `json:"downloadLocation"`
	MediaType        string            `json:"mediaType"`
	Annotations      json.RawMessage   `json:"annotations"`
}

// ParseStatement parses and validates an in-toto Statement v1 with the
// rules of github.com/in-toto/attestation (type, subjects with valid
// digests, predicate type, predicate object). Errors name the line and
// column of malformed JSON, or the JSON path of a wrong field.
func ParseStatement(data []byte) (*StatementInfo, error) {
	if info, ok := parseOwnStatement(data); ok {
		return info, nil
	}
	return parseStatementGeneral(data)
}

// parseStatementGeneral is ParseStatement for any predicate type: the
// header first, then chaosgate's predicate, leniently, from its raw bytes.
func parseStatementGeneral(data []byte) (*StatementInfo, error) {
	var sj statementJSON
	if err := decodeStrict(data, &sj, true); err != nil {
		return nil, &Error{Kind: KindInvalid, Op: "statement", Err: err, Hint: "the file must be one in-toto Statement v1 JSON object; see https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md"}
	}
	isObject := false
	if p := bytes.TrimSpace(sj.Predicate); len(p) > 0 && p[0] == '{' {
		isObject = true
	} else if len(p) > 0 && string(p) != "null" {
		return nil, errorf(KindInvalid, "statement", "$.predicate must be a JSON object")
	}
	info, err := statementInfo(sj.Type, sj.PredicateType, sj.Subject, isObject)
	if err != nil {
		return nil, err
	}
	if sj.PredicateType == PredicateType {
		var p Predicate
		if err := json.Unmarshal(sj.Predicate, &p); err != nil {
			return nil, &Error{Kind: KindInvalid, Op: "statement predicate", Err: jsonPathError(err), Hint: "predicate of type " + PredicateType + " must match the chaosgate evidence schema"}
		}
		if err := info.setPredicate(&p); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// ownStatementJSON is statementJSON with chaosgate's own predicate decoded
// in the same pass.
type ownStatementJSON struct {
	Type          string           `json:"_type"`
	Subject       []descriptorJSON `json:"subject"`
	PredicateType string           `json:"predicateType"`
	Predicate     *Predicate       `json:"predicate"`
}

// parseOwnStatement is ParseStatement's single pass for a valid statement
// of chaosgate's own predicate type with no field unknown to this version:
// every ledger append parses one, and decoding the predicate apart reads
// its bytes three more times. Anything else is left to the general path,
// which gives the same result and the errors (ok false).
func parseOwnStatement(data []byte) (*StatementInfo, bool) {
	var sj ownStatementJSON
	if err := decodeStrict(data, &sj, true); err != nil || sj.PredicateType != PredicateType || sj.Predicate == nil {
		return nil, false
	}
	info, err := statementInfo(sj.Type, sj.PredicateType, sj.Subject, true)
	if err != nil || info.setPredicate(sj.Predicate) != nil {
		return nil, false
	}
	return info, true
}

// statementInfo checks a statement's header and subjects with the in-toto
// rules; isObject says that its predicate is a JSON object.
func statementInfo(typ, predicateType string, subjects []descriptorJSON, isObject bool) (*StatementInfo, error) {
	st := &ita1.Statement{Type: typ, PredicateType: predicateType}
	if isObject {
		st.Predicate = &structpb.Struct{}
	}
	info := &StatementInfo{Statement: st, PredicateType: predicateType}
	for i, d := range subjects {
		if len(d.Annotations) > 0 && bytes.TrimSpace(d.Annotations)[0] != '{' && string(bytes.TrimSpace(d.Annotations)) != "null" {
			return nil, errorf(KindInvalid, "statement", "$.subject[%d].annotations must be a JSON object", i)
		}
		st.Subject = append(st.Subject, &ita1.ResourceDescriptor{Name: d.Name, Uri: d.URI, Digest: d.Digest, Content: d.Content, DownloadLocation: d.DownloadLocation, MediaType: d.MediaType})
		info.Subjects = append(info.Subjects, d.Name)
	}
	if err := st.Validate(); err != nil {
		return nil, &Error{Kind: KindInvalid, Op: "statement", Err: err, Hint: "_type must be " + ita1.StatementTypeUri + ", with subject digests, predicateType and predicate"}
	}
	return info, nil
}

// setPredicate checks chaosgate's predicate p's blob references and
// records it with the fields the ledger indexes.
func (info *StatementInfo) setPredicate(p *Predicate) error {
	for i, b := range p.allBlobs() {
		if _, err := ParseDigest(string(b)); err != nil {
			return &Error{Kind: KindInvalid, Op: fmt.Sprintf("statement predicate: blob reference %d", i), Err: err}
		}
	}
	info.Predicate = p
	info.Experiment = p.Experiment.Name
	info.RunID = p.RunID
	info.TraceIDs = p.TraceIDs
	info.Blobs = p.allBlobs()
	return nil
}

// decodeStrict decodes exactly one JSON object from data into v, reporting
// syntax errors with line:column and type errors with their JSON path.
func decodeStrict(data []byte, v any, disallowUnknown bool) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("line 1:1: not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if disallowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			l, c := lineCol(data, se.Offset)
			return fmt.Errorf("line %d:%d: %v", l, c, se)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			l, c := lineCol(data, te.Offset)
			return fmt.Errorf("line %d:%d: at $.%s: %s is not a valid %s", l, c, te.Field, te.Value, te.Type)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			l, c := lineCol(data, int64(len(data)))
			return fmt.Errorf("line %d:%d: unexpected end of JSON", l, c)
		}
		return err
	}
	if dec.More() {
		l, c := lineCol(data, dec.InputOffset())
		return fmt.Errorf("line %d:%d: trailing data after the JSON object", l, c)
	}
	if _, err := dec.Token(); err != io.EOF {
		l, c := lineCol(data, dec.InputOffset())
		return fmt.Errorf("line %d:%d: trailing data after the JSON object", l, c)
	}
	return nil
}

func jsonPathError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("at $.%s: %s is not a valid %s", te.Field, te.Value, te.Type)
	}
	return err
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// ed25519Signer adapts an Ed25519 key to dsse.Signer / dsse.Verifier.
type ed25519Signer struct {
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
}

func (s *ed25519Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	if s.priv == nil {
		return nil, errors.New("no private key")
	}
	return ed25519.Sign(s.priv, data), nil
}
func (s *ed25519Signer) KeyID() (string, error) { return s.keyID, nil }
func (s *ed25519Signer) Public() crypto.PublicKey {
	return s.pub
}
func (s *ed25519Signer) Verify(_ context.Context, data, sig []byte) error {
	if !verifyEd25519(s.pub, data, sig) {
		return errors.New("ed25519: invalid signature")
	}
	return nil
}

// SignStatement wraps a statement in a DSSE envelope signed with the evidence
// key. The statement is validated first.
func (k *Keys) SignStatement(ctx context.Context, statement []byte) (*Envelope, error) {
	if _, err := ParseStatement(statement); err != nil {
		return nil, err
	}
	es, err := dsse.NewEnvelopeSigner(&ed25519Signer{priv: k.evidence, pub: k.EvidencePublic(), keyID: k.Info.EvidenceKeyID})
	if err != nil {
		return nil, wrap(KindInternal, "sign statement", err)
	}
	env, err := es.SignPayload(ctx, PayloadType, statement)
	if err != nil {
		return nil, wrap(KindInternal, "sign statement", err)
	}
	return env, nil
}

// ParseEnvelope decodes a DSSE envelope from JSON, checking its shape (not
// its signature): payload type, base64 payload and at least one signature.
func ParseEnvelope(data []byte) (*Envelope, error) {
	var env Envelope
	if err := decodeStrict(data, &env, true); err != nil {
		return nil, &Error{Kind: KindInvalid, Op: "envelope", Err: err, Hint: "a DSSE envelope is {\"payloadType\",\"payload\",\"signatures\"}"}
	}
	if env.PayloadType != PayloadType {
		return nil, errorf(KindInvalid, "envelope", "$.payloadType is %q, want %q", env.PayloadType, PayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, errorf(KindInvalid, "envelope", "$.signatures is empty")
	}
	if _, err := env.DecodeB64Payload(); err != nil {
		return nil, errorf(KindInvalid, "envelope", "$.payload: %v", err)
	}
	return &env, nil
}

// VerifyEnvelope checks the envelope's signature with the evidence public key
// and returns the parsed statement it carries.
func (p *PublicKeys) VerifyEnvelope(ctx context.Context, env *Envelope) (*StatementInfo, error) {
	if env == nil {
		return nil, errorf(KindInvalid, "envelope", "missing")
	}
	if env.PayloadType != PayloadType {
		return nil, errorf(KindInvalid, "envelope", "payloadType is %q, want %q", env.PayloadType, PayloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(&ed25519Signer{pub: p.Evidence, keyID: p.EvidenceKeyID})
	if err != nil {
		return nil, wrap(KindInternal, "verify envelope", err)
	}
	_, body, err := ev.VerifyAndDecode(ctx, env)
	if err != nil {
		return nil, &Error{Kind: KindTampered, Op: "verify envelope", Err: err, Hint: "the envelope was not signed by evidence key " + short(p.EvidenceKeyID) + " or was modified"}
	}
	return ParseStatement(body)
}

// EnvelopeBytes is the canonical JSON encoding of env stored in the ledger.
func EnvelopeBytes(env *Envelope) ([]byte, error) {
	if b, ok := appendEnvelopeJSON(nil, env); ok {
		return b, nil
	}
	e := *env
	e.Signatures = slices.Clone(env.Signatures)
	b, err := json.Marshal(&e)
	if err != nil {
		return nil, wrap(KindInternal, "envelope", err)
	}
	return b, nil
}

// appendEnvelopeJSON appends env as json.Marshal writes it, when every
// string in it is plain (see plainJSON): the envelope of every append and
// of every entry a verify reads back is written this way, without
// reflection. false: a string needs escaping, and env is left to
// json.Marshal. FuzzEnvelopeJSON checks that both write the same bytes.
func appendEnvelopeJSON(dst []byte, env *Envelope) ([]byte, bool) {
	if !plainJSON(env.PayloadType) || !plainJSON(env.Payload) {
		return dst, false
	}
	for _, s := range env.Signatures {
		if !plainJSON(s.KeyID) || !plainJSON(s.Sig) {
			return dst, false
		}
	}
	n := len(env.PayloadType) + len(env.Payload) + 64
	for _, s := range env.Signatures {
		n += len(s.KeyID) + len(s.Sig) + 24
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, `{"payloadType":"`...)
	dst = append(dst, env.PayloadType...)
	dst = append(dst, `","payload":"`...)
	dst = append(dst, env.Payload...)
	dst = append(dst, `","signatures":`...)
	dst = appendSignaturesJSON(dst, env.Signatures)
	return append(dst, '}'), true
}

// appendSignaturesJSON appends plain signatures as json.Marshal writes
// them (null for none).
func appendSignaturesJSON(dst []byte, sigs []dsse.Signature) []byte {
	if sigs == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range sigs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"keyid":"`...)
		dst = append(dst, s.KeyID...)
		dst = append(dst, `","sig":"`...)
		dst = append(dst, s.Sig...)
		dst = append(dst, `"}`...)
	}
	return append(dst, ']')
}

// plainJSON reports whether json.Marshal writes s as it is between quotes:
// printable ASCII without the quote, the backslash and the characters it
// escapes for HTML (<, >, &).
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
