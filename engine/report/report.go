// Package report writes the run report (report/v1, docs/report-v1.md) as
// JSON and as JUnit XML, and maps verdicts to process exit codes
// (docs/exit-codes.md).
package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// Schema is the contract version written in every report.
const Schema = "report/v1"

// Report is one run's report.
type Report struct {
	Schema    string    `json:"schema"`
	RunID     string    `json:"run_id"`
	Revision  string    `json:"revision"`
	Verdict   string    `json:"verdict"`
	ExitCode  int       `json:"exit_code"`
	Steps     []Step    `json:"steps"`
	Faults    []Fault   `json:"faults"`
	Probes    Probes    `json:"probes"`
	Evidence  *Evidence `json:"evidence,omitempty"`
	DurationS float64   `json:"duration_s"`
	// Resilience sums up the faults per kind and arm (ResilienceOf).
	Resilience []KindResilience `json:"resilience,omitempty"`
}

// Step is the judgement at one canary weight.
type Step struct {
	Weight     int                        `json:"weight"`
	Verdict    string                     `json:"verdict"`
	Score      float64                    `json:"score"`
	Coverage   float64                    `json:"coverage"`
	ConfigHash string                     `json:"config_hash,omitempty"`
	Reason     string                     `json:"reason,omitempty"`
	Windows    int                        `json:"windows,omitempty"` // windows judged, extensions included
	Dimensions []decision.DimensionResult `json:"dimensions"`
}

// Fault is one injected fault.
type Fault struct {
	Kind        string     `json:"kind"` // a fault kind of the experiment files: podKill, networkDelay, clockSkew, cpuStress, ...
	Arm         string     `json:"arm"`  // canary|control|calibration (the game day's A/A twin of the canary)
	Target      string     `json:"target"`
	AppliedAt   time.Time  `json:"applied_at"`
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
	Confirmed   string     `json:"confirmed"` // confirmed|mismatch|inconclusive
	// Measurement is what the confirmation measured (the effect seen, or
	// why it was not).
	Measurement string `json:"measurement,omitempty"`
	// Availability is the arm's load through the fault (nil where the arm
	// carried no measured load, e.g. the calibration arm).
	Availability *FaultAvailability `json:"availability,omitempty"`
}

// FaultAvailability is one arm's load through one fault: messages with a
// final outcome and those definitely not stored, attempts with an unknown
// outcome and re-sends while the fault was in place, and how long after
// its removal the arm served load cleanly again (null: not seen in the
// run; resolution one load chunk, 1 s by default).
type FaultAvailability struct {
	Requests  int64    `json:"requests"`
	Failed    int64    `json:"failed"`
	Timeouts  int64    `json:"timeouts"`
	Retries   int64    `json:"retries"`
	RecoveryS *float64 `json:"recovery_s"`
	// SteadyP99MS is the arm's p99 latency over the 5 s before the fault,
	// the latency recovery is measured against (0: none measured).
	SteadyP99MS float64 `json:"steady_p99_ms,omitempty"`
}

// KindResilience sums up the faults of one kind on one arm: how many, the
// mean and the longest time to recover (MTTR and its worst case), how
// many never recovered within the run, the messages lost and the re-sends
// while they were in place.
type KindResilience struct {
	Kind           string  `json:"kind"`
	Arm            string  `json:"arm"`
	Faults         int     `json:"faults"`
	MeanRecoveryS  float64 `json:"mean_recovery_s"`
	MaxRecoveryS   float64 `json:"max_recovery_s"`
	Unrecovered    int     `json:"unrecovered"`
	RequestsFailed int64   `json:"requests_failed"`
	Retries        int64   `json:"retries"`
}

// ResilienceOf sums up faults per kind and arm, in order of first
// injection.
func ResilienceOf(faults []Fault) []KindResilience {
	var out []KindResilience
	index := map[[2]string]int{}
	for _, f := range faults {
		if f.Availability == nil {
			continue
		}
		k := [2]string{f.Kind, f.Arm}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, KindResilience{Kind: f.Kind, Arm: f.Arm})
		}
		r := &out[i]
		r.Faults++
		r.RequestsFailed += f.Availability.Failed
		r.Retries += f.Availability.Retries
		if f.Availability.RecoveryS == nil {
			r.Unrecovered++
			continue
		}
		v := *f.Availability.RecoveryS
		r.MeanRecoveryS += v
		r.MaxRecoveryS = max(r.MaxRecoveryS, v)
	}
	for i := range out {
		if n := out[i].Faults - out[i].Unrecovered; n > 0 {
			out[i].MeanRecoveryS /= float64(n)
		}
	}
	return out
}

// Arms holds one value per arm.
type Arms[T any] struct {
	Canary  T `json:"canary"`
	Control T `json:"control"`
}

// Availability is the availability probe's summary of one arm.
type Availability struct {
	Requests     int64   `json:"requests"`
	SuccessRatio float64 `json:"success_ratio"`
	P99MS        float64 `json:"p99_ms"`
}

// Probes holds the probe summaries per arm. Consistency carries the
// consistency checker's output (docs/check-output.md) verbatim.
type Probes struct {
	Availability *Arms[Availability]       `json:"availability,omitempty"`
	Consistency  *Arms[json.RawMessage]    `json:"consistency,omitempty"`
	Metrics      *Arms[map[string]float64] `json:"metrics,omitempty"`
}

// Evidence points at the run's evidence record in the ledger.
type Evidence struct {
	LedgerIndex    uint64 `json:"ledger_index"`
	TreeSize       uint64 `json:"tree_size"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
}

// StepFromVerdict builds a report step from the verdict that decided it.
// d is the decision acted on (after hold escalation).
func StepFromVerdict(weight int, d decision.Decision, v decision.Verdict, windows int) Step {
	return Step{Weight: weight, Verdict: d.String(), Score: v.Score, Coverage: v.Coverage, ConfigHash: v.ConfigHash,
		Reason: v.Reason, Windows: windows, Dimensions: v.Dimensions}
}

// New returns a report with its schema, verdict and exit code set.
func New(runID, revision string, d decision.Decision) Report {
	return Report{Schema: Schema, RunID: runID, Revision: revision, Verdict: d.String(), ExitCode: d.ExitCode(),
		Steps: []Step{}, Faults: []Fault{}}
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	if r.Schema == "" {
		r.Schema = Schema
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: writing JSON: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes r as JUnit XML: one test suite per canary step and one
// test case per dimension; a failed dimension is a failure carrying its
// reason, an inconclusive one is skipped with its reason.
func WriteJUnit(w io.Writer, r Report) error {
	out := junitSuites{Name: "chaosgate " + r.RunID, Time: r.DurationS}
	for _, s := range r.Steps {
		suite := junitSuite{Name: fmt.Sprintf("canary step %d%%", s.Weight), Properties: []junitProperty{
			{"verdict", s.Verdict}, {"score", fmt.Sprintf("%.4f", s.Score)}, {"coverage", fmt.Sprintf("%.4f", s.Coverage)},
			{"config_hash", s.ConfigHash}, {"revision", r.Revision},
		}}
		for _, d := range s.Dimensions {
			c := junitCase{Name: string(d.Name), Classname: fmt.Sprintf("chaosgate.canary.step%d", s.Weight),
				SystemOut: fmt.Sprintf("inputs: %s\nz=%.3f k=%.3f sigma=%.4g effect=%.4g confidence=%.3f weight=%g contribution=%.4f rule=%s",
					d.Query, d.Z, d.K, d.Sigma, d.Effect, d.Confidence, d.Weight, d.Contribution, d.Rule)}
			switch d.Outcome {
			case decision.Fail:
				c.Failure = &junitMessage{Message: d.Reason, Type: string(d.Rule), Text: d.Reason}
				suite.Failures++
			case decision.Inconclusive:
				c.Skipped = &junitMessage{Message: d.Reason}
				suite.Skipped++
			}
			suite.Cases = append(suite.Cases, c)
			suite.Tests++
		}
		out.Tests += suite.Tests
		out.Failures += suite.Failures
		out.Skipped += suite.Skipped
		out.Suites = append(out.Suites, suite)
	}
	if len(r.Resilience) > 0 {
		// The resilience figures as properties of their own suite (no
		// test cases: they inform, the verdict decides).
		suite := junitSuite{Name: "resilience"}
		for _, k := range r.Resilience {
			p := fmt.Sprintf("%s.%s.", k.Kind, k.Arm)
			suite.Properties = append(suite.Properties,
				junitProperty{p + "faults", fmt.Sprint(k.Faults)},
				junitProperty{p + "mttr_s", fmt.Sprintf("%.1f", k.MeanRecoveryS)},
				junitProperty{p + "max_recovery_s", fmt.Sprintf("%.1f", k.MaxRecoveryS)},
				junitProperty{p + "unrecovered", fmt.Sprint(k.Unrecovered)},
				junitProperty{p + "requests_failed", fmt.Sprint(k.RequestsFailed)},
				junitProperty{p + "retries", fmt.Sprint(k.Retries)})
		}
		out.Suites = append(out.Suites, suite)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("report: writing JUnit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("report: writing JUnit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
