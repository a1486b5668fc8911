// Package traceparent writes and reads the W3C Trace Context "traceparent"
// header (https://www.w3.org/TR/trace-context/#traceparent-header):
//
//	00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>
//
// 55 characters for version 00. chaosgate's load generator sends one with a
// fresh random trace id on every request, the reference aggregator logs the
// trace id of every sampled request it serves, and a run's evidence lists a
// sample of the trace ids, so a request named in the evidence can be found
// in the node's log. It has no dependencies beyond the standard library, so
// the aggregator and the platform share it without importing each other.
package traceparent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/chaosgate/chaosgate/internal/textclip"
)

// Header is the HTTP header name (lowercase, as the specification spells it;
// net/http canonicalises it).
const Header = "traceparent"

// Len is the length of a version 00 header value.
const Len = 55

// FlagSampled is the sampled bit of the trace flags.
const FlagSampled byte = 0x01

// TraceParent is one parsed or generated header value.
type TraceParent struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// New returns a sampled trace parent with a random trace id and span id
// (crypto/rand; never all zero).
func New() TraceParent {
	var t TraceParent
	for isZero(t.TraceID[:]) {
		_, _ = rand.Read(t.TraceID[:])
	}
	for isZero(t.SpanID[:]) {
		_, _ = rand.Read(t.SpanID[:])
	}
	t.Flags = FlagSampled
	return t
}

// String is the version 00 header value, 55 characters.
func (t TraceParent) String() string {
	var b [Len]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], t.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], t.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{t.Flags})
	return string(b[:])
}

// TraceIDString is the trace id as 32 lowercase hex digits.
func (t TraceParent) TraceIDString() string { return hex.EncodeToString(t.TraceID[:]) }

// SpanIDString is the parent (span) id as 16 lowercase hex digits.
func (t TraceParent) SpanIDString() string { return hex.EncodeToString(t.SpanID[:]) }

// Sampled reports the sampled flag.
func (t TraceParent) Sampled() bool { return t.Flags&FlagSampled != 0 }

// Parse reads a header value by the rules of W3C Trace Context level 1:
// version 00 is exactly 55 characters; a higher version (not ff) may be
// longer, its extra fields after a '-' are ignored; hex digits are
// lowercase; an all-zero trace id or parent id is invalid. The error says
// at which character the value went wrong.
func Parse(s string) (TraceParent, error) {
	var t TraceParent
	if len(s) < Len {
		return t, fmt.Errorf("traceparent %q: %d characters, want %d (hint: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)", clip(s), len(s), Len)
	}
	ver, err := hexField(s, 0, 2, "version")
	if err != nil {
		return t, err
	}
	if ver[0] == 0xff {
		return t, fmt.Errorf("traceparent %q: version ff is invalid", clip(s))
	}
	if ver[0] == 0 && len(s) != Len {
		return t, fmt.Errorf("traceparent %q: version 00 is %d characters, got %d", clip(s), Len, len(s))
	}
	if ver[0] != 0 && len(s) > Len && s[Len] != '-' {
		return t, fmt.Errorf("traceparent %q: character %d: want '-' after the flags", clip(s), Len+1)
	}
	for _, i := range []int{2, 35, 52} {
		if s[i] != '-' {
			return t, fmt.Errorf("traceparent %q: character %d: want '-'", clip(s), i+1)
		}
	}
	tid, err := hexField(s, 3, 35, "trace id")
	if err != nil {
		return t, err
	}
	sid, err := hexField(s, 36, 52, "parent id")
	if err != nil {
		return t, err
	}
	fl, err := hexField(s, 53, 55, "flags")
	if err != nil {
		return t, err
	}
	copy(t.TraceID[:], tid)
	copy(t.SpanID[:], sid)
	t.Flags = fl[0]
	if isZero(t.TraceID[:]) {
		return TraceParent{}, fmt.Errorf("traceparent %q: the trace id is all zeros (invalid)", clip(s))
	}
	if isZero(t.SpanID[:]) {
		return TraceParent{}, fmt.Errorf("traceparent %q: the parent id is all zeros (invalid)", clip(s))
	}
	return t, nil
}

// ValidTraceID reports whether s is a trace id as this package writes it:
// 32 lowercase hex digits, not all zero.
func ValidTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerHex(c) {
			return false
		}
		if c != '0' {
			zero = false
		}
	}
	return !zero
}

var errHex = errors.New("not a lowercase hex digit")

func hexField(s string, from, to int, what string) ([]byte, error) {
	for i := from; i < to; i++ {
		if !isLowerHex(s[i]) {
			return nil, fmt.Errorf("traceparent %q: character %d of the %s: %w", clip(s), i+1, what, errHex)
		}
	}
	b, err := hex.DecodeString(s[from:to])
	if err != nil {
		return nil, fmt.Errorf("traceparent %q: %s: %w", clip(s), what, err)
	}
	return b, nil
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// clip bounds a value quoted in an error.
func clip(s string) string { return textclip.String(s, 80) }
