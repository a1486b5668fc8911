package windows

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// Encode writes a judge input as a windows/v1 document that Decode reads
// back to the same input. A missing value is left out (missing, never
// zero), a NaN value is written as "NaN", and a query error goes to the
// arm's query_errors with its text; a missing value with a reason (a
// source queried it and got nothing) goes to no_data. windows/v1 has one query_errors entry
// for both latency quantiles: when either failed, both are written as
// failed with the first error; a quantile's no-data reason is kept only
// when both are missing.
func Encode(in decision.Input) ([]byte, error) {
	doc := map[string]any{"schema": Schema, "at": in.At.UTC().Format(time.RFC3339Nano),
		"canary": encodeArm(in.Canary), "control": encodeArm(in.Control)}
	if in.Context != nil {
		doc["context"] = encodeContext(in.Context)
	}
	if len(in.History) > 0 {
		hs := make([]any, 0, len(in.History))
		for _, h := range in.History {
			w := map[string]any{"at": h.At.UTC().Format(time.RFC3339Nano), "canary": encodeArm(h.Canary), "control": encodeArm(h.Control)}
			if h.Context != nil {
				w["context"] = encodeContext(h.Context)
			}
			hs = append(hs, w)
		}
		doc["history"] = hs
	}
	return json.MarshalIndent(doc, "", "  ")
}

func encodeContext(c *decision.Context) map[string]any {
	m := map[string]any{"faults": append([]string{}, c.Faults...)}
	if c.Intensity > 0 {
		m["intensity"] = c.Intensity
	}
	return m
}

// number is a finite float as a JSON number, anything else as "NaN".
func number(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "NaN"
	}
	return json.Number(strconv.FormatFloat(v, 'g', -1, 64))
}

func encodeArm(a decision.ArmInput) map[string]any {
	m := map[string]any{}
	qe := map[string]any{}
	nd := map[string]any{}
	put := func(key string, v decision.Value) {
		switch v.State {
		case decision.Missing:
			if v.Err != "" {
				nd[key] = v.Err
			}
		case decision.Present:
			m[key] = number(v.V)
		case decision.NaN:
			m[key] = "NaN"
		case decision.QueryError:
			qe[key] = v.Err
		}
	}
	for _, f := range []struct {
		key string
		v   decision.Value
	}{
		{"requests", a.Requests}, {"errors", a.Errors}, {"latency_samples", a.LatencySamples}, {"window_s", a.WindowS},
		{"sessions", a.Sessions}, {"session_interruptions", a.SessionInterruptions}, {"dependency_calls", a.DependencyCalls},
		{"dependency_failures", a.DependencyFailures}, {"consistency_violations", a.ConsistencyViolations},
		{"memory_growth_mb_per_min", a.MemoryGrowthMBPerMin}, {"log_guard_matches", a.LogGuardMatches},
	} {
		put(f.key, f.v)
	}
	for _, s := range []struct {
		key string
		v   decision.Samples
	}{{"latency_ms", a.LatencyMS}, {"gc_pauses_ms", a.GCPausesMS}} {
		switch s.v.State {
		case decision.Present:
			xs := make([]any, len(s.v.V))
			for i, x := range s.v.V {
				xs[i] = number(x)
			}
			m[s.key] = xs
		case decision.NaN:
			m[s.key] = []any{"NaN"}
		case decision.QueryError:
			qe[s.key] = s.v.Err
		case decision.Missing:
			if s.v.Err != "" {
				nd[s.key] = s.v.Err
			}
		}
	}
	switch {
	case a.LatencyP50.State == decision.QueryError:
		qe["latency_quantiles"] = a.LatencyP50.Err
	case a.LatencyP99.State == decision.QueryError:
		qe["latency_quantiles"] = a.LatencyP99.Err
	case a.LatencyP50.State == decision.Missing && a.LatencyP99.State == decision.Missing && (a.LatencyP50.Err != "" || a.LatencyP99.Err != ""):
		nd["latency_quantiles"] = a.LatencyP50.Err
		if a.LatencyP50.Err == "" {
			nd["latency_quantiles"] = a.LatencyP99.Err
		}
	default:
		q := map[string]any{}
		for _, f := range []struct {
			key string
			v   decision.Value
		}{{"p50", a.LatencyP50}, {"p99", a.LatencyP99}} {
			switch f.v.State {
			case decision.Present:
				q[f.key] = number(f.v.V)
			case decision.NaN:
				q[f.key] = "NaN"
			}
		}
		if len(q) > 0 {
			m["latency_quantiles"] = q
		}
	}
	if !a.CollectedAt.IsZero() {
		m["collected_at"] = a.CollectedAt.UTC().Format(time.RFC3339Nano)
	}
	if len(qe) > 0 {
		m["query_errors"] = qe
	}
	if len(nd) > 0 {
		m["no_data"] = nd
	}
	return m
}
