package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/evidence/ledgerhttp"
	"github.com/chaosgate/chaosgate/scenarios"
)

// APIError is the JSON body of every error answer.
type APIError struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, kind, detail, hint string) {
	writeJSON(w, code, APIError{Error: kind, Detail: detail, Hint: hint})
}

func urlEscape(s string) string { return url.QueryEscape(s) }

// maxBody bounds request bodies (uploaded scenarios, webhooks).
const maxBody = 1 << 20

func (s *Server) apiListRuns(w http.ResponseWriter, r *http.Request) {
	recs, err := s.runs.list()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error(), "")
		return
	}
	if rev := r.URL.Query().Get("revision"); rev != "" {
		var f []*RunRecord
		for _, x := range recs {
			if x.Revision == rev || x.Report != nil && x.Report.Revision == rev {
				f = append(f, x)
			}
		}
		recs = f
	}
	if recs == nil {
		recs = []*RunRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": recs})
}

// apiRun reads the run named in the path for an API answer; a missing
// run gets the JSON 404, a damaged record its error, and false.
func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) (*RunRecord, bool) {
	rec, err := s.runs.get(r.PathValue("id"))
	if errors.Is(err, errNotFound) {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no run %q", r.PathValue("id")), "GET /api/v1/runs lists the runs")
		return nil, false
	}
	if err != nil {
		recordErr(w, err)
		return nil, false
	}
	return rec, true
}

func (s *Server) apiGetRun(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.apiRun(w, r)
	if !ok {
		return
	}
	if rec.Status == StatusRunning {
		st := s.liveState(rec.ID)
		writeJSON(w, http.StatusOK, struct {
			*RunRecord
			Live *LiveState `json:"live"`
		}{rec, &st})
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// recordErr answers a run record that cannot be read.
func recordErr(w http.ResponseWriter, err error) {
	if errors.Is(err, errDamaged) {
		writeErr(w, http.StatusInternalServerError, "damaged_record", err.Error(), "the record's file under DATA/serve/runs was damaged or edited: restore it from a copy or remove it")
		return
	}
	writeErr(w, http.StatusInternalServerError, "internal", err.Error(), "")
}

// StartRequest is the JSON body of POST /api/v1/runs. Send either a
// scenario name (built-in, or a file in the experiments directory) or a
// whole document; a YAML body (Content-Type application/yaml) is an
// uploaded document too.
type StartRequest struct {
	Scenario string `json:"scenario,omitempty"`
	Document string `json:"document,omitempty"`
	Revision string `json:"revision,omitempty"`
}

func (s *Server) apiStartRun(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	yamlBody := ct == "application/yaml" || ct == "application/x-yaml" || ct == "text/yaml"
	if !yamlBody && !jsonType(ct) {
		deny(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q", r.Header.Get("Content-Type")),
			"send JSON with Content-Type: application/json, or a YAML document with Content-Type: application/yaml")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		deny(w, http.StatusRequestEntityTooLarge, "invalid", "request body: "+err.Error(), "at most 1 MiB")
		return
	}
	var req StartRequest
	if yamlBody {
		req.Document = string(body)
		req.Revision = r.URL.Query().Get("revision")
	} else {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", "request body: "+err.Error(), `{"scenario":"default-gameday-quick","revision":"..."} or a YAML document with Content-Type application/yaml`)
			return
		}
	}
	var doc *scenarios.Document
	name := req.Scenario
	upload := false
	switch {
	case req.Document != "" && req.Scenario != "":
		writeErr(w, http.StatusBadRequest, "invalid", "send scenario or document, not both", "")
		return
	case req.Document != "":
		if req.Revision != "" {
			writeErr(w, http.StatusBadRequest, "invalid", "an uploaded document cannot run for a revision: its evidence would answer the gate",
				"run without a revision (its evidence is recorded as upload:<run id>), or put the file in the experiments directory and name it")
			return
		}
		doc, err = scenarios.Parse("upload.yaml", []byte(req.Document))
		if err == nil {
			name, upload = "upload:"+doc.Metadata.Name, true
			_, err = scenarios.Resolve(doc)
		}
	case req.Scenario != "":
		doc, err = s.resolveScenario(req.Scenario)
	default:
		writeErr(w, http.StatusBadRequest, "invalid", "no scenario", "GET /api/v1/scenarios lists the built-in ones")
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid_scenario", err.Error(), "chaosgate scenarios validate FILE checks a file")
		return
	}
	t, _ := caller(r.Context())
	rec, err := s.start(RunRequest{Scenario: name, Doc: doc, Revision: req.Revision, Trigger: "api:" + t.Name, Upload: upload})
	if errors.Is(err, ErrBusy) {
		writeErr(w, http.StatusConflict, "busy", err.Error(), "wait for it to end or POST /api/v1/abort")
		return
	}
	if errors.Is(err, errRefused) {
		writeErr(w, http.StatusBadRequest, "invalid_scenario", err.Error(), "")
		return
	}
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	w.Header().Set("Location", "/api/v1/runs/"+rec.ID)
	writeJSON(w, http.StatusAccepted, rec)
}

// errRefused marks a document the server will not run.
var errRefused = errors.New("refused")

// jsonType reports whether a request body of media type ct is read as
// JSON: application/json, a +json type, or none at all (a client that is
// not a browser; a browser's form or plain fetch always names a type such
// as text/plain, which is refused).
func jsonType(ct string) bool {
	return ct == "" || ct == "application/json" || strings.HasSuffix(ct, "+json")
}

// checkTarget refuses a document the server must not run: on Kubernetes,
// one whose target names a namespace the server was not given.
func (s *Server) checkTarget(doc *scenarios.Document) error {
	if len(s.opt.Namespaces) == 0 || doc == nil {
		return nil
	}
	exps, err := scenarios.Resolve(doc)
	if err != nil {
		return err
	}
	for _, e := range append([]*scenarios.Document{doc}, exps...) {
		k := e.Spec.Target.Kubernetes
		if k == nil || k.Namespace == "" {
			continue
		}
		ok := false
		for _, ns := range s.opt.Namespaces {
			ok = ok || ns == k.Namespace
		}
		if !ok {
			return fmt.Errorf("%w: spec.target.kubernetes.namespace %q: this server runs faults in %s only", errRefused, k.Namespace, strings.Join(s.opt.Namespaces, ", "))
		}
	}
	return nil
}

// apiEvents streams a run's events as server-sent events: the backlog
// (after Last-Event-ID when given), then live events until the run ends
// with an "end" event. A finished run replays its recorded events.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		w.Header().Set("Retry-After", "15")
		writeErr(w, http.StatusServiceUnavailable, "too_many_streams", fmt.Sprintf("%d event streams are open", cap(s.streams)), "close a stream, or poll GET /api/v1/runs/{id}")
		return
	}
	id := r.PathValue("id")
	after, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	var back []LiveEvent
	var ch chan LiveEvent
	var live *Live
	var tail *eventTail
	if cur := s.current(); cur != nil && cur.rec.ID == id {
		live = cur.live
		back, ch = live.subscribe(after)
		defer live.unsubscribe(ch)
	} else {
		rec, err := s.runs.get(id)
		if errors.Is(err, errNotFound) {
			writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no run %q", id), "")
			return
		}
		if err != nil {
			recordErr(w, err)
			return
		}
		if rec.Status == StatusRunning {
			// A run of another process (a command on this data
			// directory): follow its events file.
			tail = &eventTail{store: s.runs, id: id, after: after}
		} else {
			for _, e := range rec.Events {
				if e.Seq > after {
					back = append(back, e)
				}
			}
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Every write has 30 s: a stream lives as long as its run, a reader
	// that stops reading is dropped.
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(30 * time.Second)) }
	send := func(e LiveEvent) bool {
		deadline()
		data, _ := json.Marshal(e)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Kind, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for _, e := range back {
		if !send(e) {
			return
		}
	}
	if tail != nil {
		tail.follow(r.Context(), s.base, send, func() bool {
			deadline()
			_, err := io.WriteString(w, ": keep-alive\n\n")
			return err == nil && rc.Flush() == nil
		})
		return
	}
	if ch == nil {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.base.Done():
			return
		case <-keep.C:
			deadline()
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case e, ok := <-ch:
			if !ok || !send(e) {
				return
			}
		}
	}
}

// AbortAnswer is the JSON answer of the kill switch.
type AbortAnswer struct {
	Signalled []engine.ActiveRun `json:"signalled"`
	Reason    string             `json:"reason"`
}

// apiAbort is the kill switch: it asks every live run in the data dir
// (serve's own and any `chaosgate run` sharing it) to abort; each recovers
// its faults.
func (s *Server) apiAbort(w http.ResponseWriter, r *http.Request) {
	runs, reason, err := s.abortAll(r)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error(), "")
		return
	}
	if runs == nil {
		runs = []engine.ActiveRun{}
	}
	writeJSON(w, http.StatusOK, AbortAnswer{Signalled: runs, Reason: reason})
}

func (s *Server) abortAll(r *http.Request) ([]engine.ActiveRun, string, error) {
	t, _ := caller(r.Context())
	reason := "kill switch by " + t.Name
	if q := strings.TrimSpace(r.URL.Query().Get("reason")); q != "" {
		reason += ": " + q
	}
	runs, err := engine.RequestAbort(s.opt.DataDir, "", reason)
	s.log.Warn("kill switch", "by", t.Name, "signalled", len(runs), "err", err)
	s.mu.Lock()
	cur := s.cur
	if cur != nil {
		signalled := false
		for _, r := range runs {
			signalled = signalled || r.Run == cur.rec.ID || strings.HasPrefix(r.Run, cur.rec.ID+"-")
		}
		if !signalled {
			// No fault experiment of serve's run holds a journal right now
			// (setup, steady windows, verification): stop the run itself;
			// the runner still recovers whatever it applied.
			cur.killed = reason
			cur.cancel()
			runs = append(runs, engine.ActiveRun{Run: cur.rec.ID, Name: cur.rec.Scenario})
		}
	}
	s.mu.Unlock()
	if cur != nil {
		cur.live.Emit(LiveEvent{Kind: "info", Msg: "abort requested: " + reason})
	}
	return runs, reason, err
}

// DecisionInfo is the decision config in use.
type DecisionInfo struct {
	Hash       string    `json:"hash"`
	Source     string    `json:"source"`
	LoadedAt   time.Time `json:"loaded_at,omitzero"`
	LastReload string    `json:"last_reload"` // ok | rejected
	LastError  string    `json:"last_error,omitempty"`
}

func (s *Server) decisionInfo() *DecisionInfo {
	st := s.opt.Decision
	if st == nil {
		return nil
	}
	snap := st.Snapshot()
	d := &DecisionInfo{Source: snap.Source, LoadedAt: snap.LoadedAt, LastReload: "ok"}
	if snap.Config != nil {
		d.Hash = snap.Config.Hash
	}
	if err := st.LastError(); err != nil {
		d.LastReload, d.LastError = "rejected", err.Error()
	}
	return d
}

func (s *Server) apiDecision(w http.ResponseWriter, _ *http.Request) {
	d := s.decisionInfo()
	if d == nil {
		writeErr(w, http.StatusNotFound, "not_found", "no decision config store", "")
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) apiScenarios(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"builtin": scenarios.LibraryNames(), "experiments_dir": s.opt.Experiments})
}

// ledgerAPI serves the read-only ledger endpoints (C2SP tlog-tiles,
// entries, proofs, blocks, search) under /api/v1/ledger/. The ledger is
// opened read-only for the request only, so runs can append in between.
func (s *Server) ledgerAPI(w http.ResponseWriter, r *http.Request) {
	l, err := s.openLedger(r.Context())
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
	defer l.Close()
	http.StripPrefix("/api/v1/ledger", ledgerhttp.New(l)).ServeHTTP(w, r)
}

// openLedger opens the ledger read-only, verified with the pinned public
// keys (Options.PublicKeys, else DATA/keys) — never with the keys the
// ledger records about itself.
func (s *Server) openLedger(ctx context.Context) (*evidence.Ledger, error) {
	pk := s.opt.PublicKeys
	if pk == nil {
		var err error
		if pk, err = evidence.LoadPublicKeys(filepath.Join(s.opt.DataDir, evidence.KeysSubdir)); err != nil {
			if _, serr := os.Stat(filepath.Join(s.ledgerDir(), evidence.DBFile)); errors.Is(serr, os.ErrNotExist) {
				return nil, &evidence.Error{Kind: evidence.KindNotFound, Op: "open ledger", Err: errors.New("no ledger yet")}
			}
			return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "open ledger", Err: fmt.Errorf("no public keys to verify it with: %w", err),
				Hint: "serve verifies the ledger with the keys in DATA/keys (evidence.pub, checkpoint.vkey)"}
		}
	}
	return evidence.Open(ctx, s.ledgerDir(), evidence.Options{Public: pk, ReadOnly: true})
}

func (s *Server) ledgerDir() string { return filepath.Join(s.opt.DataDir, evidence.LedgerSubdir) }

func writeLedgerErr(w http.ResponseWriter, err error) {
	switch evidence.KindOf(err) {
	case evidence.KindNotFound:
		writeErr(w, http.StatusNotFound, "not_found", "ledger: "+err.Error(), "the ledger is created by the first run")
	case evidence.KindUnavailable:
		writeErr(w, http.StatusServiceUnavailable, "unavailable", "ledger: "+err.Error(), "a run may be appending; retry")
	case evidence.KindTampered, evidence.KindInvalid:
		writeErr(w, http.StatusInternalServerError, "tampered", "ledger: "+err.Error(), "chaosgate ledger verify names what does not verify")
	default:
		writeErr(w, http.StatusInternalServerError, "internal", "ledger: "+err.Error(), "")
	}
}
