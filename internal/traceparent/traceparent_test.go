package traceparent

import (
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var format = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)

func TestNewIsVersion00SampledAndRandom(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tp := New()
		s := tp.String()
		if len(s) != Len || !format.MatchString(s) {
			t.Fatalf("New().String() = %q, want 00-<32 hex>-<16 hex>-01", s)
		}
		if !tp.Sampled() {
			t.Fatalf("%q: not sampled", s)
		}
		if seen[tp.TraceIDString()] {
			t.Fatalf("trace id %s repeated", tp.TraceIDString())
		}
		seen[tp.TraceIDString()] = true
		back, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if back != tp {
			t.Fatalf("Parse(%q) = %+v, want %+v", s, back, tp)
		}
		if !ValidTraceID(tp.TraceIDString()) || tp.SpanIDString() != s[36:52] {
			t.Fatalf("%q: trace id %q / span id %q", s, tp.TraceIDString(), tp.SpanIDString())
		}
	}
}

func TestParseSpecExamplesAndErrors(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tp, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if tp.TraceIDString() != "4bf92f3577b34da6a3ce929d0e0e4736" || tp.SpanIDString() != "00f067aa0ba902b7" || !tp.Sampled() {
		t.Fatalf("Parse(%q) = %+v", good, tp)
	}
	if tp, err := Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); err != nil || tp.Sampled() {
		t.Fatalf("unsampled: %+v %v", tp, err)
	}
	// A future version may carry more fields after a '-'.
	if _, err := Parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"); err != nil {
		t.Fatalf("future version: %v", err)
	}
	for _, c := range []struct{ in, want string }{
		{"", "0 characters, want 55"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "54 characters"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "version 00 is 55 characters"},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "character 5 of the trace id"},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "character 3: want '-'"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "trace id is all zeros"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "parent id is all zeros"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "character 55 of the flags"},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "want '-' after the flags"},
	} {
		_, err := Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestValidTraceID(t *testing.T) {
	for s, want := range map[string]bool{
		"4bf92f3577b34da6a3ce929d0e0e4736":  true,
		"00000000000000000000000000000000":  false,
		"4BF92F3577B34DA6A3CE929D0E0E4736":  false,
		"4bf92f3577b34da6a3ce929d0e0e473":   false,
		"4bf92f3577b34da6a3ce929d0e0e47360": false,
	} {
		if got := ValidTraceID(s); got != want {
			t.Errorf("ValidTraceID(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"", "00-", New().String(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Parse(s)
		if err != nil {
			if tp != (TraceParent{}) {
				t.Fatalf("Parse(%q) failed but returned %+v", s, tp)
			}
			return
		}
		if !ValidTraceID(tp.TraceIDString()) {
			t.Fatalf("Parse(%q): trace id %q is not valid", s, tp.TraceIDString())
		}
		// Re-encoding as version 00 keeps ids and flags, and parses back.
		out := tp.String()
		if len(out) != Len || out[3:52] != s[3:52] || out[53:55] != s[53:55] {
			t.Fatalf("Parse(%q).String() = %q", s, out)
		}
		if back, err := Parse(out); err != nil || back != tp {
			t.Fatalf("Parse(%q) = %+v, %v; want %+v", out, back, err, tp)
		}
	})
}
