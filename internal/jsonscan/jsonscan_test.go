package jsonscan

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestScanner(t *testing.T) {
	s := New([]byte(` {"k":"v","n":42,"a":["x","é"],"e":[]}`))
	s.WS()
	if !s.Lit('{') || !s.PeekKey("k") {
		t.Fatal("object start or key not seen")
	}
	if k, ok := s.Str(); !ok || k != "k" || !s.Lit(':') {
		t.Fatalf("key %q %v", k, ok)
	}
	if v, ok := s.Str(); !ok || v != "v" || !s.Lit(',') {
		t.Fatalf("value %q %v", v, ok)
	}
	s.Str()
	s.Lit(':')
	if n, ok := s.Uint(); !ok || n != 42 || !s.Lit(',') {
		t.Fatalf("number %d %v", n, ok)
	}
	s.Str()
	s.Lit(':')
	if a, ok := s.Strings(); !ok || !reflect.DeepEqual(a, []string{"x", "é"}) || !s.Lit(',') {
		t.Fatalf("array %q %v", a, ok)
	}
	s.Str()
	s.Lit(':')
	if a, ok := s.Strings(); !ok || a == nil || len(a) != 0 || !s.Lit('}') || s.I != len(s.B) {
		t.Fatalf("empty array %q %v", a, ok)
	}
	for _, bad := range []string{`"a\"b"`, "\"\xff\"", "\"a\nb\"", `"open`} {
		if _, ok := New([]byte(bad)).Str(); ok {
			t.Errorf("Str took %q", bad)
		}
	}
	for _, bad := range []string{`01`, `-1`, `1.5`, `1e3`, `18446744073709551616`, ``} {
		if _, ok := New([]byte(bad)).Uint(); ok {
			t.Errorf("Uint took %q", bad)
		}
	}
}

// FuzzScanner: whatever Str, Uint and Strings take whole, encoding/json
// reads as the same value.
func FuzzScanner(f *testing.F) {
	for _, seed := range []string{`"abc"`, `"é"`, `123`, `0`, `["a","b"]`, `[]`, `"a\"b"`, `1e3`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		if v, ok := s.Str(); ok && s.I == len(b) {
			var want string
			if err := json.Unmarshal(b, &want); err != nil || want != v {
				t.Fatalf("Str(%q) = %q; encoding/json %q, %v", b, v, want, err)
			}
		}
		s = New(b)
		if v, ok := s.Uint(); ok && s.I == len(b) {
			var want uint64
			if err := json.Unmarshal(b, &want); err != nil || want != v {
				t.Fatalf("Uint(%q) = %d; encoding/json %d, %v", b, v, want, err)
			}
		}
		s = New(b)
		if v, ok := s.Strings(); ok && s.I == len(b) {
			var want []string
			if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(want, v) {
				t.Fatalf("Strings(%q) = %q; encoding/json %q, %v", b, v, want, err)
			}
		}
	})
}
