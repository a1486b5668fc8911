// Package textclip shortens text quoted in error messages, logs and
// evidence without cutting a UTF-8 sequence in half.
package textclip

import "unicode/utf8"

// Ellipsis marks text that was shortened.
const Ellipsis = "…"

// String returns s when it is at most n bytes long. Otherwise it returns
// the longest prefix of s of at most n bytes that ends on a rune boundary,
// followed by Ellipsis.
func String(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Ellipsis
}

// Bytes is String of b (a response body, a line read from a stream).
// Only the bytes it keeps, and one more, are copied.
func Bytes(b []byte, n int) string {
	n = max(n, 0)
	if len(b) > n {
		b = b[:n+1] // the byte after the cut tells whether it splits a rune
	}
	return String(string(b), n)
}
