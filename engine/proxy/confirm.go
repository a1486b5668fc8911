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
	_, s := measure(ctx, rt, addr, n, timeout)
	return s
}

// measure takes the round trips and returns the successful ones' times,
// fastest first, with their summary.
func measure(ctx context.Context, rt RoundTrip, addr string, n int, timeout time.Duration) ([]time.Duration, Sample) {
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
	return ds, s
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

// Transfer measures one bulk transfer from addr: the bytes it carried and
// how long it took.
type Transfer func(ctx context.Context, addr string) (int64, time.Duration, error)

// HTTPTransfer returns a Transfer that GETs http://ADDR+path on a fresh
// connection (so it crosses the proxy each time) and reads the whole body,
// uncompressed: the bytes counted are the bytes that crossed the proxy.
func HTTPTransfer(path string) Transfer {
	return func(ctx context.Context, addr string) (int64, time.Duration, error) {
		tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return n, 0, err
		}
		return n, time.Since(start), nil
	}
}

// Throughput is a set of transfer measurements.
type Throughput struct {
	N      int   `json:"n"`
	Failed int   `json:"failed"`
	Bytes  int64 `json:"bytes"` // the size of the last transfer
	// BytesPerSecond is the median throughput of the transfers that
	// succeeded, Fastest the highest.
	BytesPerSecond float64 `json:"bytes_per_second"`
	Fastest        float64 `json:"fastest"`
	LastErr        string  `json:"last_error,omitempty"`
}

// MeasureThroughput takes n transfers from addr, each bounded by timeout.
func MeasureThroughput(ctx context.Context, tr Transfer, addr string, n int, timeout time.Duration) Throughput {
	var s Throughput
	var rates []float64
	for range n {
		if ctx.Err() != nil {
			break
		}
		c, cancel := context.WithTimeout(ctx, timeout)
		b, d, err := tr(c, addr)
		cancel()
		s.N++
		if err != nil || d <= 0 {
			s.Failed++
			if err != nil {
				s.LastErr = err.Error()
			}
			continue
		}
		s.Bytes = b
		rates = append(rates, float64(b)/d.Seconds())
	}
	if len(rates) > 0 {
		sort.Float64s(rates)
		s.BytesPerSecond, s.Fastest = rates[len(rates)/2], rates[len(rates)-1]
	}
	return s
}

// ConfirmBandwidth compares the throughput of an edge before and after a
// cap of capBytes per second: confirmed when its median fell to at most
// 1.5 × the cap (a transfer also pays for its connection, so it never
// beats the cap by much), mismatch when it stayed above twice the cap
// although the edge had been faster than that, inconclusive when too few
// transfers succeeded or no transfer before was faster than twice the cap
// (a cap the edge never reached cannot be seen). Before, the fastest
// transfer says what the edge can carry: a busy host slows some transfers,
// never speeds one up.
func ConfirmBandwidth(before, after Throughput, capBytes int64) engine.ConfirmResult {
	m := fmt.Sprintf("throughput %s (fastest %s) → %s per transfer of %d bytes (cap %s; %d/%d and %d/%d transfers ok)",
		rateString(before.BytesPerSecond), rateString(before.Fastest), rateString(after.BytesPerSecond), after.Bytes, rateString(float64(capBytes)),
		before.N-before.Failed, before.N, after.N-after.Failed, after.N)
	if after.LastErr != "" {
		m += " (last error: " + shortErr(after.LastErr) + ")"
	}
	c := float64(capBytes)
	switch {
	case before.N-before.Failed < 1 || after.N-after.Failed < 1:
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
	case after.BytesPerSecond <= 1.5*c:
		if before.Fastest < 2*c {
			// Slow before and after: the cap may not be what held it.
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m + "; the edge was no faster than twice the cap before"}
		}
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	case after.BytesPerSecond > 2*c && before.Fastest > 2*c:
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
}

// rateString writes bytes per second with a decimal unit.
func rateString(b float64) string {
	switch {
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB/s", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB/s", b/1e3)
	}
	return fmt.Sprintf("%.0f B/s", b)
}
