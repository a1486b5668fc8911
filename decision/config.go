package decision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Kind names a built-in dimension: what is measured and how it is tested.
type Kind string

// The built-in dimensions.
const (
	ErrorRate           Kind = "error_rate"
	LatencyP99          Kind = "latency_p99"
	GCPause             Kind = "gc_pause"
	SessionInterruption Kind = "session_interruption"
	DependencySLA       Kind = "dependency_sla"
	Consistency         Kind = "consistency"
	MemoryGrowth        Kind = "memory_growth"
	// LogGuards compares the share of requests that logged a line matching
	// a log guard (a silent drop, a crash): what no metric shows.
	LogGuards Kind = "log_guards"
)

// Kinds lists every built-in dimension in evaluation order.
var Kinds = []Kind{ErrorRate, LatencyP99, GCPause, SessionInterruption, DependencySLA, Consistency, MemoryGrowth, LogGuards}

// Config is the decision matrix: dimensions, score lines, pair rules and the
// baseline and hold policies. Load it with decision/config; Default returns
// the defaults documented in docs/decision.md.
type Config struct {
	Score      ScoreConfig       `json:"score"`
	Alpha      float64           `json:"alpha"`
	Freshness  time.Duration     `json:"freshness"`
	Baseline   BaselineConfig    `json:"baseline"`
	Dimensions []DimensionConfig `json:"dimensions"`
	Rules      []Rule            `json:"rules"`
	Hold       HoldPolicy        `json:"hold"`
	// Hash identifies the configuration; every verdict carries it.
	Hash string `json:"-"`
}

// ScoreConfig holds the score and coverage lines.
type ScoreConfig struct {
	Promote               float64 `json:"promote"`                 // S at or above this (with coverage) promotes
	Block                 float64 `json:"block"`                   // S below this blocks
	MinCoverage           float64 `json:"min_coverage"`            // C needed to promote
	CriticalMinConfidence float64 `json:"critical_min_confidence"` // a critical failure blocks at this confidence
}

// BaselineConfig says how baseline history is used for adaptive limits.
type BaselineConfig struct {
	Window time.Duration `json:"window"` // how far back history counts (7 days)
	Bucket time.Duration `json:"bucket"` // width of the time-of-day bucket
	// Shrink is the pseudo-count of the global σ when the bucket is thin.
	Shrink float64 `json:"shrink"`
	// MinWindows is the number of history windows of the judged window's
	// context from which σ̂ is the history's own: below it σ̂ is shrunk
	// toward the dimension's prior and floored, and its confidence is
	// lowered.
	MinWindows int `json:"min_windows"`
	// IntensityTolerance is how far apart the intensities of two windows
	// under the same faults may be for one to be a peer of the other.
	IntensityTolerance float64 `json:"intensity_tolerance"`
	// SigmaUncertainty widens σ̂ by its own measured uncertainty (see
	// decision/context_model.go): "" (off, the default) takes σ̂ as
	// estimated; SigmaUncertaintyContexts widens a σ̂ a fault context
	// borrows from other contexts by how much the contexts the history has
	// seen differ; SigmaUncertaintyFull also widens the σ-adaptive and
	// drift σ̂ by their sampling error (fewer false alarms on a short
	// history, at a measured cost in detection: `chaosgate bench judge -c`).
	SigmaUncertainty string `json:"sigma_uncertainty,omitempty"`
}

// The values of baseline.sigma_uncertainty besides off.
const (
	SigmaUncertaintyContexts = "contexts"
	SigmaUncertaintyFull     = "full"
)

// DimensionConfig configures one dimension.
type DimensionConfig struct {
	Kind      Kind      `json:"kind"`
	Enabled   bool      `json:"enabled"`
	Direction Direction `json:"direction"`
	Weight    float64   `json:"weight"`
	Critical  bool      `json:"critical"`
	// K is the z threshold of the adaptive limit.
	K float64 `json:"k"`
	// MinEffect is the practical effect floor: an absolute rate difference
	// for rates, a relative change for latency, an absolute difference in
	// the dimension's unit otherwise.
	MinEffect float64 `json:"min_effect"`
	// HardLimit is the SLO: the largest acceptable rate (error, session
	// interruption, dependency failure). Zero means none.
	HardLimit float64 `json:"hard_limit"`
	// MaxPauseMS and LongPauseMS/MaxLongPerMinute are the GC pause limits.
	MaxPauseMS       float64 `json:"max_pause_ms,omitempty"`
	LongPauseMS      float64 `json:"long_pause_ms,omitempty"`
	MaxLongPerMinute float64 `json:"max_long_per_minute,omitempty"`
	// CycleRatio: the canary fails when it pauses for GC (pauses of any
	// length: one or two per GC cycle) clearly more often per minute than
	// the control, by at least this factor beyond what A/A windows of the
	// same context show between healthy arms. Zero: not compared.
	CycleRatio float64 `json:"cycle_ratio,omitempty"`
	// SigmaPrior is σ when there is no history; SigmaFloor bounds σ̂ below.
	// Both apply only while the judged window's context has fewer than
	// baseline.min_windows history windows.
	SigmaPrior float64 `json:"sigma_prior"`
	SigmaFloor float64 `json:"sigma_floor"`
	// DriftPrior is, for a rate dimension, how far two healthy arms' rates
	// are taken to drift apart beyond their counts, as a share of the rate,
	// while the judged window's context has fewer than
	// baseline.min_windows history windows; a rich history measures it.
	DriftPrior float64 `json:"drift_prior,omitempty"`
	// SigmaPriorShare raises the prior of an absolute dimension (memory
	// growth) to this share of the control's own value: how far two
	// healthy arms' memory growth differ scales with how fast they grow.
	SigmaPriorShare float64 `json:"sigma_prior_share,omitempty"`
	// MinSamples is the sample count for full confidence.
	MinSamples float64 `json:"min_samples"`
	// Exposure names a rate dimension whose per-arm rate measures how hard
	// the injected faults hit each arm (dependency_sla for error_rate):
	// the comparison with the control judges what that difference does not
	// explain. Empty: no adjustment.
	Exposure Kind `json:"exposure,omitempty"`
	// Required makes the dimension's absence from every source a HOLD.
	// Otherwise a dimension absent from both arms and from every history
	// window is not collected: explained as such and left out of the
	// coverage.
	Required bool `json:"required,omitempty"`
}

// Rule is a declarative pair rule: when every condition holds, the action
// applies and the diagnosis is shown in the explanation.
type Rule struct {
	Name      string      `json:"name"`
	When      []Condition `json:"when"`
	Action    RuleAction  `json:"action"`
	Diagnosis string      `json:"diagnosis"`
}

// Condition is one clause of a rule: a dimension's outcome or trend, or a
// named signal below a value.
type Condition struct {
	Dimension Kind    `json:"dimension,omitempty"`
	Outcome   Outcome `json:"outcome,omitempty"`
	Trend     Trend   `json:"trend,omitempty"`
	Signal    Signal  `json:"signal,omitempty"`
	Below     float64 `json:"below,omitempty"`
}

// Trend is the sign of a dimension's movement, canary against control.
type Trend int

// Trends.
const (
	Worse Trend = 1 + iota
	Better
)

// String names the trend.
func (t Trend) String() string {
	switch t {
	case Worse:
		return "worse"
	case Better:
		return "better"
	}
	return ""
}

// MarshalText encodes the trend by name.
func (t Trend) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Signal names a derived signal a rule can test.
type Signal string

// TrafficRatio is the canary's share of traffic relative to its share in the
// baseline history (1 = normal, 0 = collapsed).
const TrafficRatio Signal = "traffic_ratio"

// RuleAction is what a rule does when it fires.
type RuleAction int

// Rule actions, ranked by severity.
const (
	Annotate   RuleAction = 1 + iota // explain only; the outcomes stand
	ForceHold                        // never promote; hold unless something blocks
	ForceBlock                       // block
)

// String names the action.
func (a RuleAction) String() string {
	switch a {
	case Annotate:
		return "annotate"
	case ForceHold:
		return "hold"
	case ForceBlock:
		return "block"
	}
	return "invalid"
}

// MarshalText encodes the action by name.
func (a RuleAction) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// HoldPolicy says what the gate does with a HOLD: extend the window up to
// MaxExtensions times, then escalate.
type HoldPolicy struct {
	MaxExtensions int `json:"max_extensions"`
	// EscalateTo is Block or Hold. Holds caused by missing data are never
	// escalated to Block.
	EscalateTo Decision `json:"escalate_to"`
	// EscalateRepeated escalates a score hold at once when every failure
	// in it also failed in the step's previous verdict, with evidence that
	// grew since (see Repeats): a failure that persists as the window grows is
	// not a one-off, and extending the window again only delays the
	// rollback.
	EscalateRepeated bool `json:"escalate_repeated"`
}

// Default returns the defaults documented in docs/decision.md.
func Default() *Config {
	c := &Config{
		Score:     ScoreConfig{Promote: 0.97, Block: 0.9, MinCoverage: 0.8, CriticalMinConfidence: 0.5},
		Alpha:     0.01,
		Freshness: 2 * time.Minute,
		Baseline:  BaselineConfig{Window: 7 * 24 * time.Hour, Bucket: 2 * time.Hour, Shrink: 8, MinWindows: 12, IntensityTolerance: 0.25},
		Dimensions: []DimensionConfig{
			{Kind: ErrorRate, Enabled: true, Direction: HigherIsWorse, Weight: 3, K: 3, MinEffect: 0.0005, HardLimit: 0.0015, SigmaPrior: 0.002, SigmaFloor: 0.0001, DriftPrior: 0.25, MinSamples: 500, Exposure: DependencySLA},
			{Kind: LatencyP99, Enabled: true, Direction: HigherIsWorse, Weight: 3, K: 3, MinEffect: 0.1, SigmaPrior: 0.15, SigmaFloor: 0.12, MinSamples: 200},
			{Kind: GCPause, Enabled: true, Direction: HigherIsWorse, Weight: 1, K: 3, MinEffect: 1, MaxPauseMS: 120, LongPauseMS: 10, MaxLongPerMinute: 3, CycleRatio: 2, SigmaPrior: 1, SigmaFloor: 0.5, MinSamples: 1},
			{Kind: SessionInterruption, Enabled: true, Direction: HigherIsWorse, Weight: 2, K: 3, MinEffect: 0.0002, HardLimit: 0.0002, SigmaPrior: 0.0005, SigmaFloor: 0.00005, DriftPrior: 0.25, MinSamples: 200},
			{Kind: DependencySLA, Enabled: true, Direction: HigherIsWorse, Weight: 1, K: 3, MinEffect: 0.0005, HardLimit: 0.0005, SigmaPrior: 0.001, SigmaFloor: 0.0001, DriftPrior: 0.25, MinSamples: 500},
			{Kind: Consistency, Enabled: true, Direction: HigherIsWorse, Weight: 5, Critical: true, K: 0, MinEffect: 1, MinSamples: 1},
			{Kind: MemoryGrowth, Enabled: true, Direction: HigherIsWorse, Weight: 1, K: 3, MinEffect: 1, SigmaPrior: 0.5, SigmaPriorShare: 0.2, SigmaFloor: 0.1, MinSamples: 1},
			{Kind: LogGuards, Enabled: true, Direction: HigherIsWorse, Weight: 2, K: 3, MinEffect: 0.001, SigmaPrior: 0.002, SigmaFloor: 0.0001, DriftPrior: 0.25, MinSamples: 500},
		},
		Rules: []Rule{
			{
				Name:      "retries-suspected",
				When:      []Condition{{Dimension: LatencyP99, Outcome: Fail}, {Dimension: ErrorRate, Trend: Better}},
				Action:    Annotate,
				Diagnosis: "p99 up while errors fall: the canary is probably retrying failed calls; the latency failure stands",
			},
			{
				Name:      "canary-traffic-collapse",
				When:      []Condition{{Signal: TrafficRatio, Below: 0.5}},
				Action:    ForceHold,
				Diagnosis: "traffic to the canary collapsed: its metrics do not represent the release; hold",
			},
		},
		Hold: HoldPolicy{MaxExtensions: 2, EscalateTo: Block, EscalateRepeated: true},
	}
	c.Hash = c.ComputeHash()
	return c
}

// Dimension returns the configuration of kind and whether it is present.
func (c *Config) Dimension(k Kind) (DimensionConfig, bool) {
	for _, d := range c.Dimensions {
		if d.Kind == k {
			return d, true
		}
	}
	return DimensionConfig{}, false
}

// ComputeHash returns "sha256:<hex>" over the canonical JSON of the config.
func (c *Config) ComputeHash() string {
	b, err := json.Marshal(c)
	if err != nil {
		// Every field is a plain number, string or slice: Marshal cannot fail.
		panic(fmt.Sprintf("decision: hashing config: %v", err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
