package evidence

import (
	"encoding/json"
	"time"
)

// PredicateType is the in-toto predicate type of a chaosgate run record.
const PredicateType = "https://chaosgate.io/evidence/v1"

// PayloadType is the DSSE payload type of an in-toto statement.
const PayloadType = "application/vnd.in-toto+json"

// Predicate is the evidence of one run: what was targeted and injected, what
// the probes observed, what was decided and from which inputs. The engine
// fills it; fields it does not know stay empty. Raw material (samples, trace
// id lists, log fragments) lives in the blob store and is referenced by
// digest in Blobs.
type Predicate struct {
	RunID      string            `json:"run_id"`
	Experiment Experiment        `json:"experiment"`
	Targets    []Target          `json:"targets,omitempty"`
	Injections []Injection       `json:"injections,omitempty"`
	Probes     []ProbeSummary    `json:"probes,omitempty"`
	Decision   *Decision         `json:"decision,omitempty"`
	ConfigHash string            `json:"config_hash,omitempty"`
	Versions   map[string]string `json:"versions,omitempty"`
	TraceIDs   []string          `json:"trace_ids,omitempty"`
	Blobs      []BlobRef         `json:"blobs,omitempty"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
}

// Experiment names the experiment or game day and pins its definition.
type Experiment struct {
	Name         string `json:"name"`
	ScenarioHash string `json:"scenario_hash,omitempty"` // sha256:... of the scenario file
	Kind         string `json:"kind,omitempty"`          // experiment | gameday
	Step         int    `json:"step,omitempty"`          // canary step weight, when relevant
}

// Target is one system under test.
type Target struct {
	Arm     string `json:"arm,omitempty"` // canary | control
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
}

// Injection records one fault as applied and recovered.
type Injection struct {
	Kind        string          `json:"kind"`
	Arm         string          `json:"arm,omitempty"`
	Target      string          `json:"target,omitempty"`
	AppliedAt   time.Time       `json:"applied_at,omitzero"`
	RecoveredAt time.Time       `json:"recovered_at,omitzero"`
	Confirmed   string          `json:"confirmed,omitempty"` // confirmed | mismatch | inconclusive
	Detail      json.RawMessage `json:"detail,omitempty"`
}

// ProbeSummary is what one probe observed on one arm.
type ProbeSummary struct {
	Probe   string          `json:"probe"` // availability | consistency | metrics | logs
	Arm     string          `json:"arm,omitempty"`
	Summary json.RawMessage `json:"summary,omitempty"`
	Blobs   []BlobRef       `json:"blobs,omitempty"`
}

// Decision is the verdict and everything it was computed from.
type Decision struct {
	Verdict    string          `json:"verdict"` // promote | hold | block
	Score      float64         `json:"score"`
	Coverage   float64         `json:"coverage"`
	ConfigHash string          `json:"config_hash,omitempty"`
	Dimensions json.RawMessage `json:"dimensions,omitempty"`
	Inputs     json.RawMessage `json:"inputs,omitempty"`
}

// BlobRef points at a blob in the blob store.
type BlobRef struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type,omitempty"`
	Digest    Digest `json:"digest"`
	Size      int64  `json:"size"`
}

// BlobRefs returns every blob the predicate references: the run's own
// (Blobs) and then each probe's, in order.
func (p *Predicate) BlobRefs() []BlobRef {
	out := append([]BlobRef(nil), p.Blobs...)
	for _, pr := range p.Probes {
		out = append(out, pr.Blobs...)
	}
	return out
}

// allBlobs returns every blob digest the predicate references.
func (p *Predicate) allBlobs() []Digest {
	var out []Digest
	for _, b := range p.Blobs {
		out = append(out, b.Digest)
	}
	for _, pr := range p.Probes {
		for _, b := range pr.Blobs {
			out = append(out, b.Digest)
		}
	}
	return out
}
