// Package jsonscan reads, in one pass and without reflection, the plain
// JSON that chaosgate's hot paths meet: objects of known keys whose
// strings have no escapes and whose numbers are plain unsigned integers.
// A caller tries it first and leaves any other form to encoding/json, so
// what it accepts must be read exactly as encoding/json reads it; each
// caller checks that with a differential fuzz test.
package jsonscan

import "unicode/utf8"

// Scanner reads B from offset I. S holds the same bytes as B: strings are
// slices of it, one allocation for all of them.
type Scanner struct {
	B []byte
	S string
	I int
}

// New returns a Scanner at the start of b (copied once into S).
func New(b []byte) *Scanner { return &Scanner{B: b, S: string(b)} }

// WS skips JSON whitespace.
func (s *Scanner) WS() {
	for s.I < len(s.B) && (s.B[s.I] == ' ' || s.B[s.I] == '\n' || s.B[s.I] == '\t' || s.B[s.I] == '\r') {
		s.I++
	}
}

// SkipWS skips whitespace and reports true, for use inside conditions.
func (s *Scanner) SkipWS() bool { s.WS(); return true }

// Lit consumes the byte c, or reports false.
func (s *Scanner) Lit(c byte) bool {
	if s.I < len(s.B) && s.B[s.I] == c {
		s.I++
		return true
	}
	return false
}

// PeekKey reports whether the string "k" comes next.
func (s *Scanner) PeekKey(k string) bool {
	return len(s.B)-s.I >= len(k)+2 && s.B[s.I] == '"' && string(s.B[s.I+1:s.I+1+len(k)]) == k && s.B[s.I+1+len(k)] == '"'
}

// Str reads a string without escapes or control characters, in valid
// UTF-8 (which encoding/json reads unchanged).
func (s *Scanner) Str() (string, bool) {
	if !s.Lit('"') {
		return "", false
	}
	start := s.I
	ascii := true
	for s.I < len(s.B) {
		c := s.B[s.I]
		switch {
		case c == '"':
			v := s.S[start:s.I]
			s.I++
			if !ascii && !utf8.ValidString(v) {
				return "", false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		s.I++
	}
	return "", false
}

// Uint reads a plain unsigned integer (no sign, fraction, exponent or
// leading zero) that fits in 64 bits.
func (s *Scanner) Uint() (uint64, bool) {
	start := s.I
	var v uint64
	for s.I < len(s.B) && s.B[s.I] >= '0' && s.B[s.I] <= '9' {
		d := uint64(s.B[s.I] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
		s.I++
	}
	n := s.I - start
	if n == 0 || (n > 1 && s.B[start] == '0') {
		return 0, false
	}
	if s.I < len(s.B) && (s.B[s.I] == '.' || s.B[s.I] == 'e' || s.B[s.I] == 'E') {
		return 0, false
	}
	return v, true
}

// Strings reads an array of strings (Str's) without whitespace; an empty
// array gives an empty, non-nil slice, as encoding/json does.
func (s *Scanner) Strings() ([]string, bool) {
	if !s.Lit('[') {
		return nil, false
	}
	// The capacity is a guess (a string may hold a bracket); it saves
	// the slice's growth steps.
	n := 0
	for j := s.I; j < len(s.B) && s.B[j] != ']'; j++ {
		if s.B[j] == '"' {
			n++
		}
	}
	out := make([]string, 0, n/2)
	if s.Lit(']') {
		return out, true
	}
	for {
		v, ok := s.Str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.Lit(']') {
			return out, true
		}
		if !s.Lit(',') {
			return nil, false
		}
	}
}
