package scenarios

import (
	"strconv"
	"testing"
)

func TestParseBandwidthRate(t *testing.T) {
	for in, want := range map[string]int64{"1mbit": 125000, "64kbps": 64000, "8bit": 1, "1000bps": 1000, " 2 MBIT ": 250000, "1gbit": 125000000} {
		got, err := ParseBandwidthRate(in)
		if err != nil || got != want {
			t.Errorf("%q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1000", "1.5mbit", "-1kbit", "mbit", "1 mbs", "99999999999999999999bit"} {
		if got, err := ParseBandwidthRate(in); err == nil {
			t.Errorf("%q = %d, want an error", in, got)
		}
	}
}

// FuzzParseBandwidthRate: any text is a rate or an error, never a panic; a
// rate is never negative and reads back the same in bytes per second.
func FuzzParseBandwidthRate(f *testing.F) {
	for _, s := range []string{"1mbit", "64kbps", "0bit", "1.5gbit", "18446744073709551615tbps", "bps"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseBandwidthRate(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q = %d", s, v)
		}
		back, err := ParseBandwidthRate(strconv.FormatInt(v, 10) + "bps")
		if err != nil || back != v {
			t.Fatalf("%q = %d, reads back as %d (%v)", s, v, back, err)
		}
	})
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "512KB": 512000, "64 mib": 64 << 20, "100B": 100, "2GB": 2e9} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"256", "1.5GiB", "-1MiB", "MiB", "12 parsecs", ""} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

// FuzzParseByteSize: any text is a size or an error, never a panic; a
// size is never negative and reads back the same in bytes.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"256MiB", "1GiB", "512KB", "0B", "1.5GiB", "18446744073709551615TiB", "B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q = %d", s, v)
		}
		back, err := ParseByteSize(strconv.FormatInt(v, 10) + "B")
		if err != nil || back != v {
			t.Fatalf("%q = %d, reads back as %d (%v)", s, v, back, err)
		}
	})
}
