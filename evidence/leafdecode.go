package evidence

import (
	"bytes"
	"encoding/json"
)

// decodeLeaf reads the fields Verify, Search and the index tail need from a
// leaf (an EntryRecord as json.Marshal wrote it). Every entry of a verify
// is decoded, and encoding/json spends most of its time on reflection for
// a record whose shape is always the same; decodeLeafFast reads the shape
// chaosgate writes in one pass, and anything else (whitespace, escapes,
// non-ASCII bytes, an unknown or repeated key, null, a malformed value)
// goes to encoding/json, which gives the same fields or the same error.
// FuzzDecodeLeaf checks that the two agree on every input the fast path
// accepts.
func decodeLeaf(leaf []byte, rec *leafFields) error {
	if decodeLeafFast(leaf, rec) {
		return nil
	}
	*rec = leafFields{}
	return json.Unmarshal(leaf, rec)
}

// leafScanner reads the canonical JSON of an entry record. Its strings
// are slices of one copy of the leaf (ls): one allocation for all of them.
type leafScanner struct {
	b  []byte
	ls string
	i  int
}

// next returns the next byte and advances; ok false at the end.
func (s *leafScanner) next() (byte, bool) {
	if s.i >= len(s.b) {
		return 0, false
	}
	c := s.b[s.i]
	s.i++
	return c, true
}

// expect consumes c or reports false.
func (s *leafScanner) expect(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes, returning its
// content (without the quotes).
func (s *leafScanner) str() (string, bool) {
	if !s.expect('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.ls[start : s.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", false
		}
		s.i++
	}
	return "", false
}

// uint reads a JSON number that is a plain unsigned integer in uint64.
func (s *leafScanner) uint() (uint64, bool) {
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
		s.i++
	}
	n := s.i - start
	if n == 0 || (n > 1 && s.b[start] == '0') {
		return 0, false
	}
	// A fraction or an exponent is not an integer literal.
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	return v, true
}

// strings reads an array of strings (an empty array gives an empty,
// non-nil slice, as encoding/json does).
func (s *leafScanner) strings() ([]string, bool) {
	if !s.expect('[') {
		return nil, false
	}
	// The capacity is a guess (a string may hold a quote's pair of
	// brackets); it saves the slice's growth steps.
	n := 0
	if end := bytes.IndexByte(s.b[s.i:], ']'); end > 0 {
		n = bytes.Count(s.b[s.i:s.i+end], []byte{'"'}) / 2
	}
	out := make([]string, 0, n)
	if s.expect(']') {
		return out, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.expect(']') {
			return out, true
		}
		if !s.expect(',') {
			return nil, false
		}
	}
}

// The keys of an entry record, and a bit for each to refuse repeats.
const (
	leafKeyV = 1 << iota
	leafKeyIndex
	leafKeyTime
	leafKeyRevision
	leafKeySubjects
	leafKeyExperiment
	leafKeyRunID
	leafKeyTraceIDs
	leafKeyPredicateType
	leafKeyEnvelopeSHA256
	leafKeyBlobs
	leafKeyExternal
)

// decodeLeafFast decodes leaf into rec when it is in the form chaosgate
// writes; false leaves the leaf to encoding/json (rec is then undefined).
func decodeLeafFast(leaf []byte, rec *leafFields) bool {
	*rec = leafFields{}
	s := &leafScanner{b: leaf, ls: string(leaf)}
	if !s.expect('{') {
		return false
	}
	seen := 0
	if s.expect('}') {
		return s.i == len(s.b)
	}
	for {
		key, ok := s.str()
		if !ok || !s.expect(':') {
			return false
		}
		bit := 0
		switch string(key) {
		case "v":
			bit = leafKeyV
			_, ok = s.uint() // not a leafFields field: only checked
		case "index":
			bit = leafKeyIndex
			rec.Index, ok = s.uint()
		case "time":
			bit = leafKeyTime
			start := s.i
			if _, ok = s.str(); ok {
				ok = rec.Time.UnmarshalJSON(s.b[start:s.i]) == nil
			}
		case "revision":
			bit = leafKeyRevision
			rec.Revision, ok = s.str()
		case "subjects":
			bit = leafKeySubjects
			rec.Subjects, ok = s.strings()
		case "experiment":
			bit = leafKeyExperiment
			rec.Experiment, ok = s.str()
		case "run_id":
			bit = leafKeyRunID
			_, ok = s.str() // not a leafFields field: only checked
		case "trace_ids":
			bit = leafKeyTraceIDs
			rec.TraceIDs, ok = s.strings()
		case "predicate_type":
			bit = leafKeyPredicateType
			rec.PredicateType, ok = s.str()
		case "envelope_sha256":
			bit = leafKeyEnvelopeSHA256
			rec.EnvelopeSHA256, ok = s.str()
		case "blobs":
			bit = leafKeyBlobs
			var v []string
			v, ok = s.strings()
			if ok {
				rec.Blobs = make([]Digest, len(v))
				for i, d := range v {
					rec.Blobs[i] = Digest(d)
				}
			}
		case "external":
			bit = leafKeyExternal
			switch {
			case bytes.HasPrefix(s.b[s.i:], []byte("true")):
				rec.External, s.i = true, s.i+4
			case bytes.HasPrefix(s.b[s.i:], []byte("false")):
				rec.External, s.i = false, s.i+5
			default:
				ok = false
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		c, ok := s.next()
		switch {
		case !ok:
			return false
		case c == '}':
			return s.i == len(s.b)
		case c != ',':
			return false
		}
	}
}
