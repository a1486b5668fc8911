package web

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/chaosgate/chaosgate/evidence"
)

// GateAnswer is the answer of GET /api/v1/gate/{revision}; Argo Rollouts'
// web metric provider reads it with jsonPath "{$.verdict}".
type GateAnswer struct {
	Revision    string  `json:"revision"`
	Verdict     string  `json:"verdict"` // promote | hold | block
	RunID       string  `json:"run_id"`
	Score       float64 `json:"score"`
	Coverage    float64 `json:"coverage"`
	LedgerIndex *uint64 `json:"ledger_index"`
	Reason      string  `json:"reason"`
	// Source says where the verdict came from: a run of this server
	// ("run") or, for runs made elsewhere on the same data dir, the
	// ledger's latest evidence for the revision ("ledger").
	Source string `json:"source"`
}

// gateVerdict returns the verdict of the latest finished run for revision:
// serve's own run records first, else the newest evidence record in the
// ledger whose subject is the revision. ok is false when there is none.
func (s *Server) gateVerdict(ctx context.Context, revision string) (GateAnswer, bool, error) {
	recs, err := s.runs.list()
	if err != nil {
		return GateAnswer{}, false, err
	}
	for _, r := range recs { // newest first
		if r.Status != StatusFinished || r.Report == nil || !validVerdict(r.Report.Verdict) {
			continue
		}
		if r.Report.Revision != revision && r.Revision != revision {
			continue
		}
		a := GateAnswer{Revision: revision, Verdict: r.Report.Verdict, RunID: r.ID, Reason: r.Reason, Source: "run"}
		if n := len(r.Report.Steps); n > 0 {
			last := r.Report.Steps[n-1]
			a.Score, a.Coverage = last.Score, last.Coverage
			if a.Reason == "" {
				a.Reason = last.Reason
			}
		}
		if r.Report.Evidence != nil {
			i := r.Report.Evidence.LedgerIndex
			a.LedgerIndex = &i
		}
		if a.Reason == "" {
			a.Reason = fmt.Sprintf("run %s judged %s", r.ID, a.Verdict)
		}
		return a, true, nil
	}
	return s.ledgerVerdict(ctx, revision)
}

func (s *Server) ledgerVerdict(ctx context.Context, revision string) (GateAnswer, bool, error) {
	l, err := s.openLedger(ctx)
	if evidence.KindOf(err) == evidence.KindNotFound {
		return GateAnswer{}, false, nil
	}
	if err != nil {
		return GateAnswer{}, false, err
	}
	defer l.Close()
	ents, err := l.Search(ctx, evidence.Query{Revision: revision, Limit: 1000})
	if err != nil {
		return GateAnswer{}, false, err
	}
	pk := l.PublicKeys()
	for i := len(ents) - 1; i >= 0; i-- {
		// Only evidence whose envelope matches its leaf and whose signature
		// verifies answers the gate; the newest record failing that stops
		// the gate rather than letting an older verdict through.
		sum := sha256.Sum256(ents[i].Envelope)
		var info *evidence.StatementInfo
		env, err := evidence.ParseEnvelope(ents[i].Envelope)
		if err == nil && pk == nil {
			err = errors.New("no verification keys")
		}
		if err == nil && hex.EncodeToString(sum[:]) != ents[i].Record.EnvelopeSHA256 {
			err = errors.New("the envelope does not match its leaf")
		}
		if err == nil {
			info, err = pk.VerifyEnvelope(ctx, env)
		}
		if err != nil {
			return GateAnswer{}, false, fmt.Errorf("%w: evidence entry %d for %q: %v", errTampered, ents[i].Index, revision, err)
		}
		p := info.Predicate
		if p == nil || p.Decision == nil || !validVerdict(p.Decision.Verdict) {
			continue
		}
		idx := ents[i].Index
		return GateAnswer{Revision: revision, Verdict: p.Decision.Verdict, RunID: p.RunID, Score: p.Decision.Score, Coverage: p.Decision.Coverage,
			LedgerIndex: &idx, Reason: fmt.Sprintf("evidence entry %d (run %s) records %s", idx, p.RunID, p.Decision.Verdict), Source: "ledger"}, true, nil
	}
	return GateAnswer{}, false, nil
}

// errTampered marks evidence that does not verify.
var errTampered = errors.New("evidence does not verify")

// predicateOf decodes the chaosgate predicate of a DSSE envelope.
func predicateOf(envelope []byte) (*evidence.Predicate, error) {
	env, err := evidence.ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, err
	}
	st, err := evidence.ParseStatement(payload)
	if err != nil {
		return nil, err
	}
	if st.Predicate == nil {
		return nil, fmt.Errorf("predicate type %s is not chaosgate evidence", st.PredicateType)
	}
	return st.Predicate, nil
}

func (s *Server) apiGate(w http.ResponseWriter, r *http.Request) {
	rev := r.PathValue("revision")
	if rev == "" {
		writeErr(w, http.StatusBadRequest, "invalid", "no revision", "GET /api/v1/gate/{revision}")
		return
	}
	a, ok, err := s.gateVerdict(r.Context(), rev)
	if err != nil {
		gateErr(w, err)
		return
	}
	if !ok {
		s.metrics.gate.WithLabelValues("argo", "none").Inc()
		writeErr(w, http.StatusNotFound, "no_verdict", fmt.Sprintf("no finished run for revision %q", rev), "run a game day for this revision first (POST /api/v1/runs with its revision, or chaosgate gate --revision)")
		return
	}
	s.metrics.gate.WithLabelValues("argo", a.Verdict).Inc()
	writeJSON(w, http.StatusOK, a)
}

// FlaggerPayload is the JSON Flagger POSTs to its webhooks.
type FlaggerPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Metadata  map[string]string `json:"metadata"`
}

// FlaggerAnswer is the JSON answer of the Flagger webhooks.
type FlaggerAnswer struct {
	Step    string      `json:"step"`
	Allowed bool        `json:"allowed"`
	Reason  string      `json:"reason"`
	Gate    *GateAnswer `json:"gate,omitempty"`
}

// flagger serves one Flagger webhook. Flagger cannot send headers, so the
// bearer token may come in the payload's metadata "token" as well. The
// revision is metadata "revision", else the canary's "namespace/name",
// else its name. Answers: confirm-promotion 200 only for promote;
// pre-rollout 200 unless the verdict is block (hold and no verdict yet let
// the rollout start: the game day judges it); rollback 200 only for block.
// Every other case is 412 with the reason.
func (s *Server) flagger(step string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeErr(w, http.StatusRequestEntityTooLarge, "invalid", err.Error(), "")
			return
		}
		var p FlaggerPayload
		if err := json.Unmarshal(body, &p); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", "Flagger payload: "+err.Error(), `{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":"..."}}`)
			return
		}
		if r.Header.Get("Authorization") == "" && p.Metadata["token"] != "" {
			r.Header.Set("Authorization", "Bearer "+p.Metadata["token"])
		}
		s.require(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			s.flaggerStep(w, r, step, p)
		})(w, r)
	}
}

func (s *Server) flaggerStep(w http.ResponseWriter, r *http.Request, step string, p FlaggerPayload) {
	var cands []string
	if rev := strings.TrimSpace(p.Metadata["revision"]); rev != "" {
		cands = []string{rev}
	} else {
		if p.Namespace != "" && p.Name != "" {
			cands = append(cands, p.Namespace+"/"+p.Name)
		}
		if p.Name != "" {
			cands = append(cands, p.Name)
		}
	}
	if len(cands) == 0 {
		writeErr(w, http.StatusBadRequest, "invalid", "Flagger payload names no canary", `set "name", or metadata.revision`)
		return
	}
	var a GateAnswer
	found := false
	for _, c := range cands {
		var err error
		a, found, err = s.gateVerdict(r.Context(), c)
		if err != nil {
			gateErr(w, err)
			return
		}
		if found {
			break
		}
	}
	ans := FlaggerAnswer{Step: step}
	verdict := "none"
	if found {
		verdict = a.Verdict
		ans.Gate = &a
	}
	switch step {
	case "confirm-promotion":
		ans.Allowed = verdict == "promote"
	case "pre-rollout":
		ans.Allowed = verdict != "block"
	case "rollback":
		ans.Allowed = verdict == "block"
	}
	switch {
	case !found:
		ans.Reason = fmt.Sprintf("no finished run for %s", strings.Join(cands, " or "))
	case ans.Allowed:
		ans.Reason = fmt.Sprintf("%s allowed: verdict %s (run %s)", step, a.Verdict, a.RunID)
	default:
		ans.Reason = fmt.Sprintf("%s refused: verdict %s (run %s): %s", step, a.Verdict, a.RunID, a.Reason)
	}
	s.metrics.gate.WithLabelValues("flagger-"+step, verdict).Inc()
	code := http.StatusOK
	if !ans.Allowed {
		code = http.StatusPreconditionFailed
	}
	writeJSON(w, code, ans)
}

func gateErr(w http.ResponseWriter, err error) {
	if errors.Is(err, errTampered) {
		writeErr(w, http.StatusInternalServerError, "tampered", err.Error(), "chaosgate ledger verify names what does not verify; the gate answers no verdict until it does")
		return
	}
	writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error(), "retry")
}
