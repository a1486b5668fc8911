package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/evidence"
)

// GateAnswer is the answer of GET /api/v1/gate/{revision}; Argo Rollouts'
// web metric provider reads it with jsonPath "{$.verdict}".
type GateAnswer struct {
	Revision    string  `json:"revision"`
	Verdict     string  `json:"verdict"` // promote | hold | block | pending (no verdict recorded yet)
	RunID       string  `json:"run_id"`
	Score       float64 `json:"score"`
	Coverage    float64 `json:"coverage"`
	LedgerIndex *uint64 `json:"ledger_index"`
	Reason      string  `json:"reason"`
	// Source says where the verdict came from: "ledger", the signed
	// evidence of the run (run records are not signed and never answer),
	// or "none" for a pending answer.
	Source string `json:"source"`
}

// gateVerdict returns the newest verdict the ledger records for revision:
// the newest signed evidence of a chaosgate run whose subject is the
// revision, read from the log itself (not its indexes), proven against
// the latest checkpoint and checked against the pinned keys (see
// evidence.Ledger.LatestDecision). Runs of uploaded documents record
// under their own "upload:<run id>" revision; external statements
// (`ledger append`) never answer. ok is false when there is none. A
// ledger smaller than one this server read before — rolled back to an
// earlier signed checkpoint, or removed — is refused as tampered.
func (s *Server) gateVerdict(ctx context.Context, revision string) (GateAnswer, bool, error) {
	l, err := s.openLedger(ctx)
	if evidence.KindOf(err) == evidence.KindNotFound {
		if err := s.checkLedgerGrew(0); err != nil {
			return GateAnswer{}, false, err // the ledger it read is gone
		}
		return GateAnswer{}, false, nil
	}
	if err != nil {
		return GateAnswer{}, false, fmt.Errorf("%w: %v", errTampered, err)
	}
	defer l.Close()
	v, found, err := l.LatestDecision(ctx, revision)
	if err != nil {
		if k := evidence.KindOf(err); k == evidence.KindTampered || k == evidence.KindInvalid {
			return GateAnswer{}, false, fmt.Errorf("%w: %v", errTampered, err)
		}
		return GateAnswer{}, false, err
	}
	if err := s.checkLedgerGrew(v.TreeSize); err != nil {
		return GateAnswer{}, false, err
	}
	if !found {
		return GateAnswer{}, false, nil
	}
	p, idx := v.Predicate, v.Entry.Index
	reason := fmt.Sprintf("evidence entry %d (run %s) records %s", idx, p.RunID, p.Decision.Verdict)
	if d := lastStepReason(p.Decision.Inputs); d != "" {
		reason += ": " + d
	}
	return GateAnswer{Revision: revision, Verdict: p.Decision.Verdict, RunID: p.RunID, Score: p.Decision.Score, Coverage: p.Decision.Coverage,
		LedgerIndex: &idx, Reason: reason, Source: "ledger"}, true, nil
}

// checkLedgerGrew records size, the signed tree size the gate just read,
// and refuses a ledger smaller than one it read before: a ledger rolled
// back whole to an earlier signed checkpoint (an old copy of the file)
// verifies on its own, but it hides the verdicts recorded since.
func (s *Server) checkLedgerGrew(size uint64) error {
	for {
		seen := s.ledgerSeen.Load()
		if size < seen {
			return fmt.Errorf("%w: the ledger holds %d entries, this server read a signed tree of %d before (rolled back to an earlier checkpoint)", errTampered, size, seen)
		}
		if size == seen || s.ledgerSeen.CompareAndSwap(seen, size) {
			return nil
		}
	}
}

// lastStepReason is the judge's reason for the last canary step, from the
// report steps a run's evidence carries as its decision inputs.
func lastStepReason(inputs json.RawMessage) string {
	var steps []struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(inputs, &steps) != nil || len(steps) == 0 {
		return ""
	}
	return steps[len(steps)-1].Reason
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
		// 200, not 404: Argo Rollouts' web provider counts a non-2xx answer
		// as a measurement error (consecutiveErrorLimit of them abort the
		// rollout), while "pending" meets neither the success nor the
		// failure condition — an inconclusive measurement, and the
		// analysis measures again at its next interval.
		s.metrics.gate.WithLabelValues("argo", VerdictPending).Inc()
		writeJSON(w, http.StatusOK, GateAnswer{Revision: rev, Verdict: VerdictPending, Source: "none",
			Reason: fmt.Sprintf("no finished run for revision %q yet: run a game day for it (POST /api/v1/runs with its revision, or chaosgate gate --revision)", rev)})
		return
	}
	s.metrics.gate.WithLabelValues("argo", a.Verdict).Inc()
	writeJSON(w, http.StatusOK, a)
}

// VerdictPending is the gate's verdict for a revision no run has judged yet.
const VerdictPending = "pending"

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
// the rollout start: the game day judges it); rollout (every analysis
// iteration) likewise 200 unless block, so a block fails the iteration and
// counts against the Canary's threshold; rollback 200 only for block.
// Every other case is 412 with the reason.
func (s *Server) flagger(step string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if !jsonType(ct) {
			deny(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q", r.Header.Get("Content-Type")), "Flagger sends Content-Type: application/json")
			return
		}
		// A token in the header is checked before the body is read; only a
		// request without one has its (small) body read for metadata.token,
		// within a short deadline.
		if r.Header.Get("Authorization") != "" {
			s.require(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
				p, ok := readFlagger(w, r, maxWebhookBody)
				if ok {
					s.flaggerStep(w, r, step, p)
				}
			})(w, r)
			return
		}
		if _, fromCookie, ok := s.authenticate(r); ok && fromCookie {
			deny(w, http.StatusUnauthorized, "unauthorized", "the login cookie does not authorize webhooks", "send Authorization: Bearer <token> or metadata.token")
			return
		}
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
		p, ok := readFlagger(w, r, maxWebhookBody)
		if !ok {
			return
		}
		if p.Metadata["token"] == "" && s.trustedWebhookPeer(r) {
			s.flaggerStep(w, r, step, p) // a viewer's answer, by network
			return
		}
		if p.Metadata["token"] == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chaosgate"`)
			deny(w, http.StatusUnauthorized, "unauthorized", "missing bearer token", "send Authorization: Bearer <token>, or the token in the payload's metadata.token")
			return
		}
		r.Header.Set("Authorization", "Bearer "+p.Metadata["token"])
		r.Header.Del("Cookie")
		s.require(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			s.flaggerStep(w, r, step, p)
		})(w, r)
	}
}

// trustedWebhookPeer reports whether the request's TCP peer is in
// Options.WebhookTrustedNets.
func (s *Server) trustedWebhookPeer(r *http.Request) bool {
	if len(s.opt.WebhookTrustedNets) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, n := range s.opt.WebhookTrustedNets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// maxWebhookBody bounds a Flagger payload.
const maxWebhookBody = 64 << 10

func readFlagger(w http.ResponseWriter, r *http.Request, limit int64) (FlaggerPayload, bool) {
	var p FlaggerPayload
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		deny(w, http.StatusRequestEntityTooLarge, "invalid", "Flagger payload: "+err.Error(), "at most 64 KiB, sent within 10 s")
		return p, false
	}
	if err := json.Unmarshal(body, &p); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", "Flagger payload: "+err.Error(), `{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":"..."}}`)
		return p, false
	}
	return p, true
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
	case "pre-rollout", "rollout":
		// rollout runs at every analysis iteration: a failure counts
		// against the Canary's threshold (enough of them roll back), so
		// only a block fails it; confirm-promotion holds the promotion.
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
		writeErr(w, http.StatusInternalServerError, "tampered", err.Error(), "chaosgate ledger verify names what does not verify; the gate answers no verdict until it does (the ledger is checked with the keys in DATA/keys)")
		return
	}
	writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error(), "retry")
}
