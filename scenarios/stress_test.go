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
