package kubelettest

import (
	"strings"
	"testing"
	"time"
)

// TestParseCRILine reads the CRI log format as containerd writes it, and
// says what is wrong with a line that is not.
func TestParseCRILine(t *testing.T) {
	at, tag, msg, err := ParseCRILine(`2026-12-05T19:00:01.123456789Z stderr F time=2026-12-05T19:00:01Z level=WARN msg="dropped message after acknowledging it"`)
	if err != nil || tag != "F" || !strings.HasPrefix(msg, "time=") || !at.Equal(time.Date(2026, 12, 5, 19, 0, 1, 123456789, time.UTC)) {
		t.Fatalf("full line: %v %q %q %v", at, tag, msg, err)
	}
	if _, tag, msg, err := ParseCRILine(`2026-12-05T19:00:01Z stdout P `); err != nil || tag != "P" || msg != "" {
		t.Fatalf("empty partial: %q %q %v", tag, msg, err)
	}
	for line, want := range map[string]string{
		"":                                "no time",
		"yesterday stdout F x":            "time",
		"2026-12-05T19:00:01Z stdin F x":  "stream",
		"2026-12-05T19:00:01Z stdout X x": "tag",
		"2026-12-05T19:00:01Z stdout":     "stream",
	} {
		if _, _, _, err := ParseCRILine(line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCRILine(%q) = %v, want an error about the %s", line, err, want)
		}
	}
}

// FuzzParseCRILine: any line is read or refused, never a panic.
func FuzzParseCRILine(f *testing.F) {
	f.Add("2026-12-05T19:00:01.123456789Z stderr F hello")
	f.Add("2026-12-05T19:00:01Z stdout P ")
	f.Fuzz(func(t *testing.T, line string) {
		if _, tag, _, err := ParseCRILine(line); err == nil && tag != "F" && tag != "P" {
			t.Fatalf("tag %q accepted", tag)
		}
	})
}

// TestPodOfLogFile reads pod and container from the kubelet's log paths.
func TestPodOfLogFile(t *testing.T) {
	pod, c, ok := podOfLogFile("/var/log/pods/gate-pods_aggregator-canary-1_5f0c2a4e-1b2c-4d3e-9f00-0123456789ab/aggregator/0.log", "gate-pods")
	if !ok || pod != "aggregator-canary-1" || c != "aggregator" {
		t.Fatalf("%q %q %v", pod, c, ok)
	}
	if _, _, ok := podOfLogFile("/var/log/pods/other_x_1/c/0.log", "gate-pods"); ok {
		t.Fatal("another namespace's file read")
	}
}
