package router

import (
	"strings"
	"testing"
)

// FuzzParseSplitChange: any body gives a change within 0..100 or an error
// that names a JSON path; never a panic.
func FuzzParseSplitChange(f *testing.F) {
	for _, s := range []string{`{"canary_weight": 10}`, `{"canary_weight": 10, "reset_counts": true}`, `{}`, `[]`, `{"canary_weight": -1}`, `{"canary_weight": 1e9}`, ``, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseSplitChange(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "$") {
				t.Fatalf("error without a JSON path: %v", err)
			}
			return
		}
		if c.CanaryWeight == nil || *c.CanaryWeight < 0 || *c.CanaryWeight > 100 {
			t.Fatalf("accepted %q as %+v", b, c)
		}
	})
}

// FuzzParseHeaderMatch: an accepted match has a valid name and a value.
func FuzzParseHeaderMatch(f *testing.F) {
	for _, s := range []string{"x-canary=always", "x-deployment-id=canary", "=", "a", "x y=1", "é=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseHeaderMatch(s)
		if err != nil {
			return
		}
		if validHeaderName(m.Name) != nil || m.Value == "" {
			t.Fatalf("accepted %q as %+v", s, m)
		}
	})
}
