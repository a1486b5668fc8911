// Package decision is the canary judge: it compares a canary with its
// concurrent control across weighted dimensions, adapts its thresholds to the
// spread seen in baseline (A/A) history, and returns a verdict with a full
// explanation. It is pure and deterministic: no clock reads, no I/O.
package decision

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Decision is the verdict of one judgement. Ranked: a higher value is worse.
type Decision int

// Decisions, ranked from best to worst.
const (
	Promote Decision = 1 + iota
	Hold
	Block
)

// Process exit codes of every command that gates — run, gate, demo,
// decide (docs/exit-codes.md).
const (
	ExitPromote   = 0
	ExitBlock     = 1
	ExitNoVerdict = 2 // the platform could not judge: usage, configuration or infrastructure error
	ExitHold      = 3
)

// ExitCode is the process exit code of a decision: the one mapping from
// verdict to exit code in chaosgate. No decision (the zero value) is
// ExitNoVerdict.
func (d Decision) ExitCode() int {
	switch d {
	case Promote:
		return ExitPromote
	case Block:
		return ExitBlock
	case Hold:
		return ExitHold
	}
	return ExitNoVerdict
}

// String returns the lower-case name used in JSON and tables.
func (d Decision) String() string {
	switch d {
	case Promote:
		return "promote"
	case Hold:
		return "hold"
	case Block:
		return "block"
	}
	return "invalid"
}

// ParseDecision parses "promote", "hold" or "block".
func ParseDecision(s string) (Decision, bool) {
	switch s {
	case "promote":
		return Promote, true
	case "hold":
		return Hold, true
	case "block":
		return Block, true
	}
	return 0, false
}

// MarshalText encodes the decision by name.
func (d Decision) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a decision name, so recorded verdicts read back.
func (d *Decision) UnmarshalText(b []byte) error {
	v, ok := ParseDecision(string(b))
	if !ok {
		return fmt.Errorf("decision %q: want promote, hold or block", b)
	}
	*d = v
	return nil
}

// Outcome is the result of one dimension. Ranked: a higher value is worse.
type Outcome int

// Dimension outcomes.
const (
	Pass Outcome = 1 + iota
	Inconclusive
	Fail
)

// String returns the lower-case name used in JSON and tables.
func (o Outcome) String() string {
	switch o {
	case Pass:
		return "pass"
	case Inconclusive:
		return "inconclusive"
	case Fail:
		return "fail"
	}
	return "invalid"
}

// MarshalText encodes the outcome by name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText decodes an outcome name, so recorded explanations read back.
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, v := range []Outcome{Pass, Inconclusive, Fail} {
		if v.String() == string(b) {
			*o = v
			return nil
		}
	}
	return fmt.Errorf("outcome %q: want pass, inconclusive or fail", b)
}

// Direction says which way a dimension gets worse.
type Direction int

// Directions.
const (
	HigherIsWorse Direction = 1 + iota
	LowerIsWorse
)

// String returns the configuration name of the direction.
func (d Direction) String() string {
	switch d {
	case HigherIsWorse:
		return "higher_is_worse"
	case LowerIsWorse:
		return "lower_is_worse"
	}
	return "invalid"
}

// MarshalText encodes the direction by name.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// sign is +1 when higher is worse, -1 otherwise.
func (d Direction) sign() float64 {
	if d == LowerIsWorse {
		return -1
	}
	return 1
}

// State tells whether a value was observed. The zero value means the field
// was never set, which is missing data — never zero.
type State int

// Value states. Missing is the zero value on purpose.
const (
	Missing State = iota
	Present
	NaN
	QueryError
)

// String names the state.
func (s State) String() string {
	switch s {
	case Missing:
		return "missing"
	case Present:
		return "ok"
	case NaN:
		return "nan"
	case QueryError:
		return "query_error"
	}
	return "invalid"
}

// Value is one scalar observation with its data state.
type Value struct {
	V     float64
	State State
	// Err is the query error when State is QueryError; when Missing, why
	// a source that queried the value got nothing. A missing value with
	// a reason is missing data, never "not collected".
	Err string
}

// Num returns a present value; a NaN or infinite float becomes a NaN state.
func Num(v float64) Value {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Value{State: NaN}
	}
	return Value{V: v, State: Present}
}

// OK reports whether the value is present and finite.
func (v Value) OK() bool { return v.State == Present && !math.IsNaN(v.V) && !math.IsInf(v.V, 0) }

// Samples is a series of observations with its data state.
type Samples struct {
	V     []float64
	State State
	Err   string
}

// Series returns present samples; any NaN inside makes the series NaN.
func Series(v []float64) Samples {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Samples{State: NaN}
		}
	}
	return Samples{V: v, State: Present}
}

// OK reports whether the series is present.
func (s Samples) OK() bool { return s.State == Present }

// ArmInput is what one arm (canary or control) reported for a window. Counts are
// cumulative over the evaluation window so the sequential tests can be
// checked at every interval.
type ArmInput struct {
	Requests Value
	Errors   Value
	// LatencyMS holds raw latency samples; LatencyP50/LatencyP99 are used
	// when samples are absent.
	LatencyMS  Samples
	LatencyP50 Value
	LatencyP99 Value
	// LatencySamples is how many latency observations the quantiles (or
	// the raw samples) rest on — a source may time a sample of the
	// requests. Absent: the raw samples' count, else the requests.
	LatencySamples        Value
	GCPausesMS            Samples
	WindowS               Value
	Sessions              Value
	SessionInterruptions  Value
	DependencyCalls       Value
	DependencyFailures    Value
	ConsistencyViolations Value
	// LogGuardMatches is how many log lines matched a log guard (silent
	// drops, crashes) in the window; the log_guards dimension compares its
	// share of Requests.
	LogGuardMatches Value
	// MemoryGrowthMBPerMin is the resident-memory slope over the window.
	MemoryGrowthMBPerMin Value
	// CollectedAt is when the data was collected; zero means "at the
	// judgement time". Data older than the configured freshness is stale.
	CollectedAt time.Time
}

// HistoryWindow is one A/A baseline window: two arms running the same build.
type HistoryWindow struct {
	At      time.Time
	Canary  ArmInput
	Control ArmInput
	// Context is what the window was observed under; nil: not recorded.
	Context *Context
}

// Input is everything one judgement sees.
type Input struct {
	At      time.Time
	Canary  ArmInput
	Control ArmInput
	History []HistoryWindow
	// Context is what the judged window was observed under; nil: not
	// given, and every history window is a peer of it.
	Context *Context
}

// Context is the conditions a window was observed under: the faults active
// in it and how hard they hit. Two healthy arms drift apart more under a
// partition than in a steady state, so the judge takes σ̂ (and the
// overdispersion of counts) from the history windows of the same context,
// shrunk toward the whole history when that context has few windows.
type Context struct {
	// Faults are the kinds of fault active in the window (podKill,
	// networkDelay, partition, ...), sorted, without repeats. Empty: no
	// fault, the steady state.
	Faults []string `json:"faults"`
	// Intensity is how hard the faults hit, from 0 to 1 (the share of
	// replicas or edges impaired, or the source's own scale); 0 when not
	// given. It is ignored for a steady window.
	Intensity float64 `json:"intensity,omitempty"`
}

// Steady reports whether the context has no fault active.
func (c *Context) Steady() bool { return c != nil && len(c.Faults) == 0 }

// String names the context: "steady", or the faults and the intensity
// ("networkDelay+partition@0.5").
func (c *Context) String() string {
	switch {
	case c == nil:
		return "unknown"
	case len(c.Faults) == 0:
		return "steady"
	case c.Intensity > 0:
		return strings.Join(c.Faults, "+") + "@" + strconv.FormatFloat(c.Intensity, 'g', 3, 64)
	}
	return strings.Join(c.Faults, "+")
}

// NewContext returns the context of faults (sorted, repeats dropped) at
// intensity.
func NewContext(intensity float64, faults ...string) *Context {
	fs := append([]string(nil), faults...)
	sort.Strings(fs)
	fs = slices.Compact(fs)
	return &Context{Faults: fs, Intensity: intensity}
}

// Matches reports whether a window observed under o is a peer of one
// observed under c: both known, the same faults and, under faults,
// intensities within tolerance of each other.
func (c *Context) Matches(o *Context, tolerance float64) bool {
	if c == nil || o == nil || !slices.Equal(c.Faults, o.Faults) {
		return false
	}
	if len(c.Faults) == 0 {
		return true
	}
	return math.Abs(c.Intensity-o.Intensity) <= tolerance+1e-12
}
