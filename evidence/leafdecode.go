package evidence

import (
	"bytes"
	"encoding/json"

	"github.com/chaosgate/chaosgate/internal/jsonscan"
)

// decodeLeaf reads the fields Verify, Search and the index tail need from a
// leaf (an EntryRecord as json.Marshal wrote it). Every entry of a verify
// is decoded, and encoding/json spends most of its time on reflection for
// a record whose shape is always the same; decodeLeafFast reads the shape
// chaosgate writes in one pass (internal/jsonscan), and anything else
// (whitespace, escapes, invalid UTF-8, an unknown or repeated key, null, a
// malformed value) goes to encoding/json, which gives the same fields or
// the same error.
// FuzzDecodeLeaf checks that the two agree on every input the fast path
// accepts.
func decodeLeaf(leaf []byte, rec *leafFields) error {
	if decodeLeafFast(leaf, rec) {
		return nil
	}
	*rec = leafFields{}
	return json.Unmarshal(leaf, rec)
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
	s := jsonscan.New(leaf)
	if !s.Lit('{') {
		return false
	}
	seen := 0
	if s.Lit('}') {
		return s.I == len(s.B)
	}
	for {
		key, ok := s.Str()
		if !ok || !s.Lit(':') {
			return false
		}
		bit := 0
		switch key {
		case "v":
			bit = leafKeyV
			_, ok = s.Uint() // not a leafFields field: only checked
		case "index":
			bit = leafKeyIndex
			rec.Index, ok = s.Uint()
		case "time":
			bit = leafKeyTime
			start := s.I
			if _, ok = s.Str(); ok {
				ok = rec.Time.UnmarshalJSON(s.B[start:s.I]) == nil
			}
		case "revision":
			bit = leafKeyRevision
			rec.Revision, ok = s.Str()
		case "subjects":
			bit = leafKeySubjects
			rec.Subjects, ok = s.Strings()
		case "experiment":
			bit = leafKeyExperiment
			rec.Experiment, ok = s.Str()
		case "run_id":
			bit = leafKeyRunID
			_, ok = s.Str() // not a leafFields field: only checked
		case "trace_ids":
			bit = leafKeyTraceIDs
			rec.TraceIDs, ok = s.Strings()
		case "predicate_type":
			bit = leafKeyPredicateType
			rec.PredicateType, ok = s.Str()
		case "envelope_sha256":
			bit = leafKeyEnvelopeSHA256
			rec.EnvelopeSHA256, ok = s.Str()
		case "blobs":
			bit = leafKeyBlobs
			var v []string
			v, ok = s.Strings()
			if ok {
				rec.Blobs = make([]Digest, len(v))
				for i, d := range v {
					rec.Blobs[i] = Digest(d)
				}
			}
		case "external":
			bit = leafKeyExternal
			switch {
			case bytes.HasPrefix(s.B[s.I:], []byte("true")):
				rec.External, s.I = true, s.I+4
			case bytes.HasPrefix(s.B[s.I:], []byte("false")):
				rec.External, s.I = false, s.I+5
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
		switch {
		case s.Lit('}'):
			return s.I == len(s.B)
		case !s.Lit(','):
			return false
		}
	}
}
