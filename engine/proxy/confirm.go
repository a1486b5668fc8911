package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// RoundTrip measures one request/response round trip to addr.
type RoundTrip func(ctx context.Context, addr string) (time.Duration, error)

// HTTPRoundTrip returns a RoundTrip that GETs http://ADDR+path on a fresh
// connection (so it crosses the proxy each time) and reads the body.
func HTTPRoundTrip(path string) RoundTrip {
	return func(ctx context.Context, addr string) (time.Duration, error) {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), nil
	}
}

// EchoRoundTrip returns a RoundTrip that writes one byte on a fresh TCP
// connection and waits for it to come back (for echo servers).
func EchoRoundTrip() RoundTrip {
	return func(ctx context.Context, addr string) (time.Duration, error) {
		c, err := Dial(ctx, addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		start := time.Now()
		if _, err := c.Write([]byte{'p'}); err != nil {
			return 0, err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}

// Sample is a set of round-trip measurements.
type Sample struct {
	N       int           `json:"n"`
	Failed  int           `json:"failed"`
	Median  time.Duration `json:"median"`
	Min     time.Duration `json:"min"`
	LastErr string        `json:"last_error,omitempty"`
}

// Measure takes n round trips to addr, each bounded by timeout.
func Measure(ctx context.Context, rt RoundTrip, addr string, n int, timeout time.Duration) Sample {
	var s Sample
	var ds []time.Duration
	for range n {
		if ctx.Err() != nil {
			break
		}
		c, cancel := context.WithTimeout(ctx, timeout)
		d, err := rt(c, addr)
		cancel()
		s.N++
		if err != nil {
			s.Failed++
			s.LastErr = err.Error()
			continue
		}
		ds = append(ds, d)
	}
	if len(ds) > 0 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		s.Median, s.Min = ds[len(ds)/2], ds[0]
	}
	return s
}

// ConfirmDelay compares round trips before and after a delay of expected
// (± jitter) was added: confirmed when the median or the fastest round trip
// grew by at least half the expected delay minus the jitter, mismatch when
// neither did, inconclusive when too few round trips succeeded. The delay
// slows every round trip, the fastest included, while a busy host inflates
// some of them: the fastest stays steady where a median of a few round
// trips does not.
func ConfirmDelay(before, after Sample, expected, jitter time.Duration) engine.ConfirmResult {
	m := fmt.Sprintf("rtt median %s → %s, fastest %s → %s (expected +%s ± %s; %d/%d and %d/%d round trips ok)",
		before.Median.Round(10*time.Microsecond), after.Median.Round(10*time.Microsecond),
		before.Min.Round(10*time.Microsecond), after.Min.Round(10*time.Microsecond), expected, jitter,
		before.N-before.Failed, before.N, after.N-after.Failed, after.N)
	if before.N-before.Failed < 2 || after.N-after.Failed < 2 {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
	}
	shift := max(after.Median-before.Median, after.Min-before.Min)
	need := expected/2 - jitter
	if need < expected/4 {
		need = expected / 4
	}
	if shift >= need {
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
}

// ConfirmCut checks that round trips through a black-holed edge fail (or
// time out): confirmed when every one failed, mismatch when any went
// through.
func ConfirmCut(ctx context.Context, rt RoundTrip, addr string, n int, timeout time.Duration) engine.ConfirmResult {
	s := Measure(ctx, rt, addr, n, timeout)
	m := fmt.Sprintf("%d of %d round trips through %s failed within %s", s.Failed, s.N, addr, timeout)
	if s.LastErr != "" {
		m += " (last: " + shortErr(s.LastErr) + ")"
	}
	switch {
	case s.N == 0:
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
	case s.Failed == s.N:
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
}

func shortErr(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
