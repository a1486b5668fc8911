package textclip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStringKeepsRunesWhole(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 5, "abcde…"},
		{"ab€cd", 3, "ab…"}, // € is 3 bytes: cutting at 3 would split it
		{"ab€cd", 5, "ab€…"},
		{"€€€", 0, "…"},
		{"x", -1, "…"},
	} {
		if got := String(c.in, c.n); got != c.want {
			t.Errorf("String(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
		if got := Bytes([]byte(c.in), c.n); got != c.want {
			t.Errorf("Bytes(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("ab€cd", 3)
	f.Add(strings.Repeat("ü", 100), 81)
	f.Add("\xff\xfe plain", 2)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 512
		got := String(s, n)
		if b := Bytes([]byte(s), n); b != got {
			t.Fatalf("Bytes %q != String %q", b, got)
		}
		if len(s) <= max(n, 0) {
			if got != s {
				t.Fatalf("String(%q, %d) = %q, want it unchanged", s, n, got)
			}
			return
		}
		body, ok := strings.CutSuffix(got, Ellipsis)
		if !ok || !strings.HasPrefix(s, body) || len(body) > max(n, 0) {
			t.Fatalf("String(%q, %d) = %q: want a prefix of at most %d bytes and %q", s, n, got, n, Ellipsis)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("String(%q, %d) = %q cut a rune", s, n, got)
		}
	})
}
