package web

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

var roleTokens = map[Role]string{
	RoleViewer:   "viewer-token-0123456789",
	RoleOperator: "operator-token-0123456789",
	RoleAuditor:  "auditor-token-0123456789",
}

type harness struct {
	t    *testing.T
	dir  string
	srv  *Server
	hs   *httptest.Server
	shut bool
}

func testTokens(t testing.TB) *Tokens {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for r, s := range roleTokens {
		fmt.Fprintf(&b, "  - {name: %s, role: %s, token: %q}\n", r, r, s)
	}
	ts, err := ParseTokens([]byte(b.String()), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func newHarness(t *testing.T, dir string, run RunFunc, sched []Schedule) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	store, err := config.NewStore(nil, "defaults", nil, config.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{DataDir: dir, Tokens: testTokens(t), Run: recording(dir, run), Decision: store, Target: "local", Schedules: sched})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, hs: httptest.NewServer(srv.Handler())}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.shut {
		return
	}
	h.shut = true
	h.hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		h.t.Error(err)
	}
}

// do sends a request with role's token (0: none) and returns the status
// and body.
func (h *harness) do(role Role, method, path, body string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.hs.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if role != 0 {
		req.Header.Set("Authorization", "Bearer "+roleTokens[role])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// scripted is a RunFunc that judges by the revision's prefix
// ("promote-…", "hold-…", "block-…"), emitting a few events; when gate is
// set it waits for it before finishing.
func scripted(gate chan struct{}) RunFunc {
	return func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		live.Emit(LiveEvent{Kind: "phase", Phase: "steady-before", Weight: 10, Msg: "steady state before"})
		live.SetState(func() LiveState {
			return LiveState{Phase: "inject", Weight: 10, ActiveFaults: []string{"podKill canary/n2"},
				Arms: map[string]ArmLive{"canary": {SuccessRatio: 0.99, P99MS: 12, Requests: 100}}}
		})
		live.Emit(LiveEvent{Kind: "fault", Phase: "inject", Weight: 10, Fault: "podKill", Msg: "podKill canary/n2"})
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return &RunResult{Interrupted: true, Error: ctx.Err().Error()}, ctx.Err()
			}
		}
		verdict, _, _ := strings.Cut(req.Revision, "-")
		d := decision.Decision(0)
		for _, x := range []decision.Decision{decision.Promote, decision.Hold, decision.Block} {
			if x.String() == verdict {
				d = x
			}
		}
		rep := report.New(req.ID, req.Revision, d)
		rep.Steps = []report.Step{{Weight: 10, Verdict: verdict, Score: 0.9, Coverage: 0.8, Reason: "judged " + verdict,
			Dimensions: []decision.DimensionResult{{Name: "error_rate", Outcome: decision.Pass, Reason: "error rate within sigma"}}}}
		rep.Evidence = &report.Evidence{LedgerIndex: 7, TreeSize: 8}
		live.Emit(LiveEvent{Kind: "verdict", Weight: 10, Msg: "step 10%: " + verdict})
		return &RunResult{Report: rep}, nil
	}
}

// recording wraps a RunFunc so that a judged run appends its signed
// evidence to the real ledger in dir, as the game-day runner does; the
// gate answers from that evidence only.
func recording(dir string, run RunFunc) RunFunc {
	return func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		res, err := run(ctx, req, live)
		if err != nil || res == nil || res.Interrupted || !validVerdict(res.Report.Verdict) {
			return res, err
		}
		ctx = context.WithoutCancel(ctx)
		l, lerr := evidence.OpenDataDir(ctx, dir, nil)
		if lerr != nil {
			return res, lerr
		}
		defer l.Close()
		rev := req.Revision
		if rev == "" {
			rev = "local:good"
		}
		p := &evidence.Predicate{RunID: req.ID, Experiment: evidence.Experiment{Name: req.Doc.Metadata.Name, Kind: strings.ToLower(req.Doc.Kind)},
			Decision: &evidence.Decision{Verdict: res.Report.Verdict}}
		if n := len(res.Report.Steps); n > 0 {
			p.Decision.Score, p.Decision.Coverage = res.Report.Steps[n-1].Score, res.Report.Steps[n-1].Coverage
			p.Decision.Inputs, _ = json.Marshal(res.Report.Steps)
		}
		rc, lerr := l.Record(ctx, rev, p)
		if lerr != nil {
			return res, lerr
		}
		res.Report.Evidence = &report.Evidence{LedgerIndex: rc.Index, TreeSize: rc.TreeSize, EnvelopeSHA256: rc.EnvelopeSHA256}
		return res, nil
	}
}

func (h *harness) waitRun(id string) *RunRecord {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		code, body := h.do(RoleViewer, "GET", "/api/v1/runs/"+id, "")
		if code != 200 {
			h.t.Fatalf("GET run %s: %d %s", id, code, body)
		}
		r, err := decodeRecord(body)
		if err != nil {
			h.t.Fatal(err)
		}
		if r.Status != StatusRunning && h.srv.current() == nil {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("run %s did not finish", id)
	return nil
}

func (h *harness) startRun(body string) string {
	h.t.Helper()
	code, data := h.do(RoleOperator, "POST", "/api/v1/runs", body)
	if code != http.StatusAccepted {
		h.t.Fatalf("start: %d %s", code, data)
	}
	var r RunRecord
	json.Unmarshal(data, &r)
	return r.ID
}

// recordEvidence appends a real, signed evidence record to the ledger in
// dir (created on first use) and returns its index.
func recordEvidence(t testing.TB, dir, revision, experiment, verdict, trace string) uint64 {
	t.Helper()
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rc, err := l.Record(ctx, revision, &evidence.Predicate{RunID: "cli-" + verdict, Experiment: evidence.Experiment{Name: experiment, Kind: "gameday"},
		Decision: &evidence.Decision{Verdict: verdict, Score: 0.5, Coverage: 0.75}, TraceIDs: []string{trace},
		Injections: []evidence.Injection{{Kind: "podKill", Arm: "canary", Target: "n2", AppliedAt: time.Now(), Confirmed: "confirmed"}}})
	if err != nil {
		t.Fatal(err)
	}
	return rc.Index
}

func TestAuthMatrix(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	recordEvidence(t, h.dir, "sha256:"+strings.Repeat("ab", 32), "pod-kill", "promote", "trace-1")
	const (
		ok   = 1
		no   = 401
		deny = 403
	)
	type exp struct{ none, viewer, operator, auditor int }
	for _, tc := range []struct {
		method, path, body string
		want               exp
	}{
		{"GET", "/api/v1/runs", "", exp{no, ok, ok, ok}},
		{"POST", "/api/v1/runs", `{"bogus":1}`, exp{no, deny, ok, deny}},
		{"GET", "/api/v1/runs/none", "", exp{no, ok, ok, ok}},
		{"GET", "/api/v1/runs/none/events", "", exp{no, ok, ok, ok}},
		{"POST", "/api/v1/abort", "", exp{no, deny, ok, deny}},
		{"GET", "/api/v1/schedules", "", exp{no, ok, ok, ok}},
		{"POST", "/api/v1/schedules", `{}`, exp{no, deny, ok, deny}},
		{"DELETE", "/api/v1/schedules/none", "", exp{no, deny, ok, deny}},
		{"GET", "/api/v1/decision", "", exp{no, ok, ok, ok}},
		{"GET", "/api/v1/scenarios", "", exp{no, ok, ok, ok}},
		{"GET", "/api/v1/gate/rev", "", exp{no, ok, ok, ok}},
		{"POST", "/api/v1/gate/flagger/confirm-promotion", `{"name":"web"}`, exp{no, ok, ok, ok}},
		{"POST", "/api/v1/gate/flagger/pre-rollout", `{"name":"web"}`, exp{no, ok, ok, ok}},
		{"POST", "/api/v1/gate/flagger/rollback", `{"name":"web"}`, exp{no, ok, ok, ok}},
		{"GET", "/api/v1/ledger/checkpoint", "", exp{no, deny, deny, ok}},
		{"GET", "/api/v1/ledger/entries/0", "", exp{no, deny, deny, ok}},
		{"GET", "/", "", exp{no, ok, ok, ok}},
		{"GET", "/runs/none", "", exp{no, ok, ok, ok}},
		{"POST", "/ui/abort", "", exp{no, deny, 303, deny}},
		{"POST", "/ui/runs", "", exp{no, deny, 303, deny}},
		{"POST", "/ui/schedules", "", exp{no, deny, 303, deny}},
		{"POST", "/ui/schedules/x/delete", "", exp{no, deny, 303, deny}},
		{"GET", "/explorer", "", exp{no, deny, deny, ok}},
		{"GET", "/explorer/entries/0", "", exp{no, deny, deny, ok}},
	} {
		for i, role := range []Role{0, RoleViewer, RoleOperator, RoleAuditor} {
			want := []int{tc.want.none, tc.want.viewer, tc.want.operator, tc.want.auditor}[i]
			code, body := h.do(role, tc.method, tc.path, tc.body)
			switch {
			case want == ok && (code == 401 || code == 403 || code >= 500):
				t.Errorf("%s %s as %v: %d, want allowed: %s", tc.method, tc.path, role, code, body)
			case want != ok && want != 303 && code != want:
				t.Errorf("%s %s as %v: %d, want %d: %s", tc.method, tc.path, role, code, want, body)
			}
			if code == 401 || code == 403 {
				var e APIError
				if json.Unmarshal(body, &e) != nil || e.Error == "" || e.Detail == "" {
					t.Errorf("%s %s: error body is not the JSON error: %s", tc.method, tc.path, body)
				}
			}
		}
	}
	// A wrong token is 401, as is a token given without "Bearer".
	req, _ := http.NewRequest("GET", h.hs.URL+"/api/v1/runs", nil)
	req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer]+"x")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req.Header.Set("Authorization", roleTokens[RoleViewer])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("token without Bearer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Health and metrics need no token.
	for _, p := range []string{"/livez", "/readyz", "/metrics"} {
		if code, body := h.do(0, "GET", p, ""); code != 200 {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	if _, body := h.do(0, "GET", "/metrics", ""); !strings.Contains(string(body), `chaosgate_serve_http_requests_total{code="403",route="GET /explorer"}`) {
		t.Errorf("metrics lack the request counter:\n%s", body)
	}
}

func TestGateSemantics(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	// No run yet: 200 "pending" (an inconclusive measurement for Argo's
	// web provider, not an error); Flagger refuses every step but
	// pre-rollout.
	code, body := h.do(RoleViewer, "GET", "/api/v1/gate/promote-r1", "")
	var pending GateAnswer
	if code != 200 || json.Unmarshal(body, &pending) != nil || pending.Verdict != VerdictPending || pending.LedgerIndex != nil || !strings.Contains(pending.Reason, "promote-r1") {
		t.Fatalf("no run: %d %s", code, body)
	}
	for _, step := range []string{"confirm-promotion", "rollback"} {
		if code, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/"+step, `{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":"promote-r1"}}`); code != 412 {
			t.Fatalf("%s without a run: %d %s", step, code, body)
		}
	}
	for _, verdict := range []string{"promote", "hold", "block"} {
		rev := verdict + "-r1"
		id := h.startRun(fmt.Sprintf(`{"scenario":"default-gameday-quick","revision":%q}`, rev))
		r := h.waitRun(id)
		if r.Status != StatusFinished || r.Verdict() != verdict || r.Report.Evidence == nil {
			t.Fatalf("run %s: %+v", id, r)
		}
		code, body := h.do(RoleViewer, "GET", "/api/v1/gate/"+rev, "")
		var a GateAnswer
		if code != 200 || json.Unmarshal(body, &a) != nil {
			t.Fatalf("gate %s: %d %s", rev, code, body)
		}
		if a.Verdict != verdict || a.RunID != id || a.Revision != rev || a.Score != 0.9 || a.Coverage != 0.8 || a.LedgerIndex == nil ||
			*a.LedgerIndex != r.Report.Evidence.LedgerIndex || a.Source != "ledger" || !strings.Contains(a.Reason, "judged "+verdict) {
			t.Fatalf("gate %s: %+v", rev, a)
		}
		// The raw JSON has the fields Argo Rollouts' jsonPath reads.
		var raw map[string]any
		json.Unmarshal(body, &raw)
		for _, k := range []string{"revision", "verdict", "run_id", "score", "coverage", "ledger_index", "reason"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("gate answer lacks %q: %s", k, body)
			}
		}
		payload := fmt.Sprintf(`{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":%q}}`, rev)
		want := map[string]int{"confirm-promotion": 412, "pre-rollout": 200, "rollout": 200, "rollback": 412}
		switch verdict {
		case "promote":
			want["confirm-promotion"] = 200
		case "block":
			want["pre-rollout"], want["rollout"], want["rollback"] = 412, 412, 200
		}
		for step, wc := range want {
			code, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/"+step, payload)
			var fa FlaggerAnswer
			if code != wc || json.Unmarshal(body, &fa) != nil || fa.Reason == "" || fa.Allowed != (wc == 200) || fa.Gate == nil || fa.Gate.Verdict != verdict {
				t.Errorf("%s with %s: %d %s, want %d", step, verdict, code, body, wc)
			}
		}
	}
	if _, body := h.do(0, "GET", "/metrics", ""); !strings.Contains(string(body), `chaosgate_serve_gate_answers_total{endpoint="argo",verdict="block"} 1`) ||
		!strings.Contains(string(body), `chaosgate_serve_gate_answers_total{endpoint="flagger-rollback",verdict="block"} 1`) {
		t.Errorf("gate metrics:\n%s", body)
	}
	// The latest finished run wins: a later block for the same revision.
	id := h.startRun(`{"scenario":"default-gameday-quick","revision":"promote-r1"}`)
	h.waitRun(id)
	if _, body := h.do(RoleViewer, "GET", "/api/v1/gate/promote-r1", ""); !strings.Contains(string(body), id) {
		t.Fatalf("gate does not answer from the latest run %s: %s", id, body)
	}
	// Flagger without a header: the token in metadata; revision from
	// namespace/name when metadata has none.
	ctxRev := "block-x"
	id = h.startRun(fmt.Sprintf(`{"scenario":"default-gameday-quick","revision":%q}`, ctxRev))
	h.waitRun(id)
	code, body = h.do(0, "POST", "/api/v1/gate/flagger/rollback", fmt.Sprintf(`{"name":"x","namespace":"block","metadata":{"token":%q,"revision":%q}}`, roleTokens[RoleViewer], ctxRev))
	if code != 200 {
		t.Fatalf("rollback with the token in metadata: %d %s", code, body)
	}
	if code, body := h.do(0, "POST", "/api/v1/gate/flagger/rollback", `{"name":"x","metadata":{"token":"not-a-token-at-all"}}`); code != 401 {
		t.Fatalf("rollback with a bad metadata token: %d %s", code, body)
	}
	if code, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/rollback", `{"name":`); code != 400 {
		t.Fatalf("malformed payload: %d %s", code, body)
	}
	// Revisions with slashes (k8s workload revisions) are one path value.
	k8sRev := "block-Deployment/ns/web@sha256:" + strings.Repeat("cd", 32)
	id = h.startRun(fmt.Sprintf(`{"scenario":"default-gameday-quick","revision":%q}`, k8sRev))
	h.waitRun(id)
	if code, body := h.do(RoleViewer, "GET", "/api/v1/gate/"+k8sRev, ""); code != 200 || !strings.Contains(string(body), `"verdict": "block"`) {
		t.Fatalf("slashed revision: %d %s", code, body)
	}
}

func TestGateFallsBackToLedgerEvidence(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("ef", 32)
	recordEvidence(t, dir, rev, "pod-kill", "promote", "t-0")
	idx := recordEvidence(t, dir, rev, "pod-kill", "block", "t-1")
	h := newHarness(t, dir, scripted(nil), nil)
	code, body := h.do(RoleViewer, "GET", "/api/v1/gate/"+rev, "")
	var a GateAnswer
	if code != 200 || json.Unmarshal(body, &a) != nil || a.Verdict != "block" || a.Source != "ledger" || a.LedgerIndex == nil || *a.LedgerIndex != idx || a.RunID != "cli-block" {
		t.Fatalf("gate from the ledger: %d %s", code, body)
	}
}

func TestRunsAPIAndSSE(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, "", scripted(gate), nil)
	id := h.startRun(`{"scenario":"default-gameday-quick","revision":"promote-sse"}`)
	// A second run while one is in progress is refused.
	if code, body := h.do(RoleOperator, "POST", "/api/v1/runs", `{"scenario":"default-gameday-quick"}`); code != 409 {
		t.Fatalf("second run: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", h.hs.URL+"/api/v1/runs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan LiveEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var e LiveEvent
				if json.Unmarshal([]byte(d), &e) == nil {
					events <- e
				}
			}
		}
	}()
	next := func(kind string) LiveEvent {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("stream ended before a %q event", kind)
				}
				if e.Kind == kind {
					return e
				}
			case <-timeout:
				t.Fatalf("no %q event", kind)
			}
		}
	}
	if e := next("fault"); e.Fault != "podKill" || e.Seq == 0 {
		t.Fatalf("fault event: %+v", e)
	}
	// The live state is polled and published while the run is going.
	if e := next("state"); e.State == nil || len(e.State.ActiveFaults) != 1 || e.State.Arms["canary"].P99MS != 12 {
		t.Fatalf("state event: %+v", e)
	}
	code, body := h.do(RoleViewer, "GET", "/api/v1/runs/"+id, "")
	if code != 200 || !strings.Contains(string(body), `"live"`) || !strings.Contains(string(body), `"status": "running"`) {
		t.Fatalf("running run: %d %s", code, body)
	}
	close(gate)
	if e := next("verdict"); !strings.Contains(e.Msg, "promote") {
		t.Fatalf("verdict event: %+v", e)
	}
	next("end")
	if _, ok := <-events; ok {
		t.Fatal("stream continues after the end event")
	}
	r := h.waitRun(id)
	if r.Report == nil || r.Report.Schema != report.Schema || r.Report.Verdict != "promote" || len(r.Events) < 4 {
		t.Fatalf("finished run: %+v", r)
	}
	// A finished run replays its events, after Last-Event-ID when given.
	req, _ = http.NewRequest("GET", h.hs.URL+"/api/v1/runs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
	req.Header.Set("Last-Event-ID", "2")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	replay, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if strings.Contains(string(replay), "id: 2\n") || !strings.Contains(string(replay), "id: 3\n") || !strings.Contains(string(replay), "event: end") {
		t.Fatalf("replay after 2:\n%s", replay)
	}
	// The list shows it without events; the run page renders.
	code, body = h.do(RoleViewer, "GET", "/api/v1/runs", "")
	if code != 200 || !strings.Contains(string(body), id) || strings.Contains(string(body), `"events"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := h.do(RoleViewer, "GET", "/runs/"+id, ""); code != 200 || !strings.Contains(string(body), "error rate within sigma") ||
		!strings.Contains(string(body), `<polyline class="s-canary" points="`) {
		t.Fatalf("run page: %d %s", code, body)
	}
	// Bad starts: unknown scenario, both, none, bad YAML upload.
	for _, b := range []string{`{"scenario":"no-such-scenario"}`, `{}`, `{"scenario":"a","document":"b"}`, `{"document":"kind: [\n"}`, `not json`} {
		if code, body := h.do(RoleOperator, "POST", "/api/v1/runs", b); code != 400 || !strings.Contains(string(body), `"detail"`) {
			t.Errorf("start %s: %d %s", b, code, body)
		}
	}
}

func TestUploadedScenarioRuns(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	doc, err := os.ReadFile(filepath.Join("..", "scenarios", "library", "pod-kill.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	upload := func(query string) (int, []byte) {
		req, _ := http.NewRequest("POST", h.hs.URL+"/api/v1/runs"+query, strings.NewReader(string(doc)))
		req.Header.Set("Authorization", "Bearer "+roleTokens[RoleOperator])
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code, body := upload("")
	var r RunRecord
	if code != 202 || json.Unmarshal(body, &r) != nil || !strings.HasPrefix(r.Scenario, "upload:") || r.Revision != "upload:"+r.ID {
		t.Fatalf("upload: %d %s", code, body)
	}
	// The runner is asked for the run's own revision (scripted judges by a
	// revision's prefix: this one is no verdict).
	if f := h.waitRun(r.ID); f.Revision != "upload:"+r.ID || f.Report == nil || f.Report.Revision != "upload:"+r.ID {
		t.Fatalf("uploaded run: %+v", f)
	}
}

func TestAbortWithNoLiveRun(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	code, body := h.do(RoleOperator, "POST", "/api/v1/abort?reason=drill", "")
	var a AbortAnswer
	if code != 200 || json.Unmarshal(body, &a) != nil || len(a.Signalled) != 0 || !strings.Contains(a.Reason, "operator: drill") {
		t.Fatalf("abort: %d %s", code, body)
	}
}

func TestSchedulesFireAndPersist(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, scripted(nil), []Schedule{{Name: "nightly", Cron: "0 3 * * *", Scenario: "default-gameday-quick"}})
	code, body := h.do(RoleOperator, "POST", "/api/v1/schedules", `{"name":"often","cron":"@every 1s","scenario":"default-gameday-quick","revision":"promote-sched"}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, bad := range []string{`{"name":"x","cron":"every day","scenario":"default-gameday-quick"}`, `{"name":"x","cron":"@daily","scenario":"nope"}`,
		`{"name":"often","cron":"@daily","scenario":"default-gameday-quick"}`, `{"name":"a b","cron":"@daily","scenario":"default-gameday-quick"}`} {
		if code, body := h.do(RoleOperator, "POST", "/api/v1/schedules", bad); code != 400 && code != 409 {
			t.Errorf("bad schedule %s: %d %s", bad, code, body)
		}
	}
	// It fires: a run triggered by the schedule finishes with its revision.
	deadline := time.Now().Add(15 * time.Second)
	var found *RunRecord
	for found == nil && time.Now().Before(deadline) {
		recs, _ := h.srv.runs.list()
		for _, r := range recs {
			if r.Trigger == "schedule:often" && r.Status == StatusFinished {
				found = r
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if found == nil || found.Verdict() != "promote" {
		t.Fatalf("the schedule did not run: %+v", found)
	}
	code, body = h.do(RoleViewer, "GET", "/api/v1/schedules", "")
	if code != 200 || !strings.Contains(string(body), `"name": "nightly"`) || !strings.Contains(string(body), `"source": "config"`) || !strings.Contains(string(body), `"last_run"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := h.do(RoleOperator, "DELETE", "/api/v1/schedules/nightly", ""); code != 409 {
		t.Fatalf("deleting a config schedule: %d %s", code, body)
	}
	// Persisted: a new server on the same data dir has it.
	h.close()
	h2 := newHarness(t, dir, scripted(nil), nil)
	if _, body := h2.do(RoleViewer, "GET", "/api/v1/schedules", ""); !strings.Contains(string(body), `"often"`) {
		t.Fatalf("schedule not persisted: %s", body)
	}
	if code, body := h2.do(RoleOperator, "DELETE", "/api/v1/schedules/often", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := h2.do(RoleOperator, "DELETE", "/api/v1/schedules/often", ""); code != 404 {
		t.Fatalf("second delete: %d", code)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "serve", "schedules.json"))
	if strings.Contains(string(data), "often") {
		t.Fatalf("deleted schedule still saved: %s", data)
	}
}

func TestExplorerAndLedgerAPI(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, scripted(nil), nil)
	if code, body := h.do(RoleAuditor, "GET", "/explorer", ""); code != 200 || !strings.Contains(string(body), "ledger is empty") {
		t.Fatalf("empty explorer: %d %s", code, body)
	}
	revA, revB := "sha256:"+strings.Repeat("1a", 32), "sha256:"+strings.Repeat("2b", 32)
	recordEvidence(t, dir, revA, "pod-kill", "promote", "trace-aaa")
	i := recordEvidence(t, dir, revB, "partition", "block", "trace-bbb")
	code, body := h.do(RoleAuditor, "GET", "/explorer?revision="+revB, "")
	if code != 200 || !strings.Contains(string(body), revB) || strings.Contains(string(body), revA) || !strings.Contains(string(body), "verified") {
		t.Fatalf("search by revision: %d %s", code, body)
	}
	if strings.Contains(string(body), "FAILED") || strings.Contains(string(body), "No blocks yet") || !strings.Contains(string(body), "<td>verified</td>") {
		t.Fatalf("blocks not shown as verified: %s", body)
	}
	if _, body := h.do(RoleAuditor, "GET", "/explorer?trace=trace-aaa", ""); !strings.Contains(string(body), revA) || strings.Contains(string(body), ">"+revB+"<") {
		t.Fatalf("search by trace: %s", body)
	}
	if _, body := h.do(RoleAuditor, "GET", "/explorer?experiment=nothing", ""); !strings.Contains(string(body), "No entries match") {
		t.Fatalf("empty search: %s", body)
	}
	code, body = h.do(RoleAuditor, "GET", fmt.Sprintf("/explorer/entries/%d", i), "")
	if code != 200 || !strings.Contains(string(body), `id="sig-status">verified`) || !strings.Contains(string(body), `id="proof-status">verified`) {
		t.Fatalf("entry page: %d %s", code, body)
	}
	code, env := h.do(RoleAuditor, "GET", fmt.Sprintf("/explorer/entries/%d?download=envelope", i), "")
	if e, err := evidence.ParseEnvelope(env); code != 200 || err != nil || e.PayloadType != evidence.PayloadType {
		t.Fatalf("envelope download: %d %v %s", code, err, env)
	}
	if code, body := h.do(RoleAuditor, "GET", fmt.Sprintf("/api/v1/ledger/entries/%d/proof", i), ""); code != 200 || !strings.HasPrefix(string(body), evidence.ProofHeader) {
		t.Fatalf("proof download: %d %s", code, body)
	}
	if code, body := h.do(RoleAuditor, "GET", "/api/v1/ledger/checkpoint", ""); code != 200 || !strings.Contains(string(body), "\n2\n") {
		t.Fatalf("checkpoint: %d %s", code, body)
	}
	if code, body := h.do(RoleAuditor, "GET", "/explorer/entries/99", ""); code != 404 || !strings.Contains(string(body), `id="not-found"`) {
		t.Fatalf("missing entry: %d", code)
	}
	// Paging: before=1 lists entry 0 only.
	if _, body := h.do(RoleAuditor, "GET", "/explorer?before=1", ""); !strings.Contains(string(body), revA) || strings.Contains(string(body), ">"+revB+"<") {
		t.Fatalf("page before 1: %s", body)
	}
	// The ledger is not held open between requests: a run can append.
	recordEvidence(t, dir, revA, "pod-kill", "hold", "trace-ccc")
}

func TestLiveStateIsFiniteAndDecisionReloadShown(t *testing.T) {
	st := stateOf(gameday.Snapshot{Phase: "inject", Arms: map[engine.Arm]gameday.ArmLive{engine.ArmCanary: {SuccessRatio: math.NaN(), P99MS: math.Inf(1)}}})
	if st.Arms["canary"].SuccessRatio != 0 || st.Arms["canary"].P99MS != 0 {
		t.Fatalf("state: %+v", st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "", scripted(nil), nil)
	_, body := h.do(RoleViewer, "GET", "/api/v1/decision", "")
	var d DecisionInfo
	if json.Unmarshal(body, &d) != nil || d.LastReload != "ok" || !strings.HasPrefix(d.Hash, "sha256:") {
		t.Fatalf("decision: %s", body)
	}
	if err := h.srv.opt.Decision.Apply([]byte("dimensions: [\n"), "decision.yaml"); err == nil {
		t.Fatal("a bad decision document was accepted")
	}
	_, body = h.do(RoleViewer, "GET", "/api/v1/decision", "")
	var d2 DecisionInfo
	if json.Unmarshal(body, &d2) != nil || d2.LastReload != "rejected" || d2.LastError == "" || d2.Hash != d.Hash {
		t.Fatalf("after a rejected reload: %s", body)
	}
	if _, body := h.do(RoleViewer, "GET", "/", ""); !strings.Contains(string(body), "reload-rejected") {
		t.Fatalf("dashboard does not show the rejected reload")
	}
}

// BenchmarkGate measures GET /api/v1/gate/{revision} over a ledger of
// 5,000 entries: the revision of the newest entry (the scan stops at once)
// and a revision the ledger does not hold (every entry is read and proven).
func BenchmarkGate(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 5000; i += 32 {
				p := &evidence.Predicate{RunID: fmt.Sprintf("r%d", i), Decision: &evidence.Decision{Verdict: "promote"}}
				if _, err := l.Record(ctx, fmt.Sprintf("rev-%d", i%50), p); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	srv, err := New(Options{DataDir: dir, Tokens: benchTokens(b), Run: scripted(nil)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close(context.Background())
	h := srv.Handler()
	for _, tc := range []struct{ name, rev string }{{"newest", "rev-49"}, {"unknown", "no-such-revision"}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", "/api/v1/gate/"+tc.rev, nil)
				req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

func benchTokens(b *testing.B) *Tokens {
	ts, err := ParseTokens([]byte(fmt.Sprintf("tokens:\n  - {name: v, role: viewer, token: %q}\n", roleTokens[RoleViewer])), "t.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return ts
}

func TestDashboardForms(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) string {
		t.Helper()
		req, _ := http.NewRequest("POST", h.hs.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: tokenCookie, Value: roleTokens[RoleOperator]})
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
		u, _ := url.Parse(resp.Header.Get("Location"))
		return u.Query().Get("msg")
	}
	if msg := post("/ui/runs", url.Values{"scenario": {"pod-kill"}, "revision": {"block-form"}}); !strings.HasPrefix(msg, "started serve-") {
		t.Fatalf("start from the form: %q", msg)
	}
	id := strings.TrimPrefix(post("/ui/runs", url.Values{"scenario": {"nope"}}), "")
	if !strings.Contains(id, "nope") {
		t.Fatalf("unknown scenario: %q", id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.current() != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := h.do(RoleViewer, "GET", "/api/v1/gate/block-form", ""); code != 200 || !strings.Contains(string(body), `"block"`) {
		t.Fatalf("gate after a form run: %d %s", code, body)
	}
	if msg := post("/ui/schedules", url.Values{"name": {"weekly"}, "cron": {"0 4 * * 1"}, "scenario": {"pod-kill"}}); msg != "schedule weekly created" {
		t.Fatalf("create schedule: %q", msg)
	}
	if msg := post("/ui/schedules", url.Values{"name": {"bad"}, "cron": {"often"}, "scenario": {"pod-kill"}}); !strings.HasPrefix(msg, "schedule not created: bad cron spec") {
		t.Fatalf("bad schedule: %q", msg)
	}
	if _, body := h.do(RoleOperator, "GET", "/", ""); !strings.Contains(string(body), "/ui/schedules/weekly/delete") {
		t.Fatal("dashboard lacks the delete button of an API schedule")
	}
	if msg := post("/ui/schedules/weekly/delete", nil); msg != "schedule weekly deleted" {
		t.Fatalf("delete schedule: %q", msg)
	}
	// The login cookie is refused for a viewer on operator forms.
	req, _ := http.NewRequest("POST", h.hs.URL+"/ui/runs", strings.NewReader("scenario=pod-kill"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: tokenCookie, Value: roleTokens[RoleViewer]})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("viewer start: %d", resp.StatusCode)
	}
}

func TestKillSwitchStopsServeRunBetweenExperiments(t *testing.T) {
	gate := make(chan struct{}) // never closed: the run waits like a steady window
	h := newHarness(t, "", scripted(gate), nil)
	id := h.startRun(`{"scenario":"default-gameday-quick","revision":"promote-k"}`)
	code, body := h.do(RoleOperator, "POST", "/api/v1/abort?reason=drill", "")
	if code != 200 || !strings.Contains(string(body), id) {
		t.Fatalf("abort: %d %s", code, body)
	}
	r := h.waitRun(id)
	if r.Status != StatusAborted || !strings.Contains(r.Aborted, "drill") {
		t.Fatalf("run after the kill switch: %+v", r)
	}
	if code, body := h.do(RoleViewer, "GET", "/api/v1/gate/promote-k", ""); code != 200 || !strings.Contains(string(body), `"verdict": "pending"`) {
		t.Fatalf("gate answered from an aborted run: %d %s", code, body)
	}
}

func TestStartAndWait(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	doc, err := h.srv.resolveScenario("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := h.srv.Start(RunRequest{Scenario: "pod-kill", Doc: doc, Revision: "hold-demo", Trigger: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.srv.Wait(context.Background(), rec.ID)
	if err != nil || got.Status != StatusFinished || got.Verdict() != "hold" || got.Trigger != "demo" {
		t.Fatalf("wait: %+v %v", got, err)
	}
}

func TestExplorerShowsTampering(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("6f", 32)
	recordEvidence(t, dir, rev, "pod-kill", "promote", "t-1")
	i := recordEvidence(t, dir, rev, "pod-kill", "block", "t-2")
	// Change the recorded verdict inside the stored envelope, as someone
	// editing the database would (storing it uncompressed, a stored form
	// the ledger reads as well).
	ro, err := evidence.Open(context.Background(), filepath.Join(dir, evidence.LedgerSubdir), evidence.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	entry, err := ro.Entry(context.Background(), i)
	ro.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, evidence.LedgerSubdir, evidence.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("envelopes"))
		k := binary.BigEndian.AppendUint64(nil, i)
		env, err := evidence.ParseEnvelope(entry.Envelope)
		if err != nil {
			return err
		}
		payload, _ := base64.StdEncoding.DecodeString(env.Payload)
		env.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"verdict":"block"`, `"verdict":"promote"`, 1)))
		data, _ := json.Marshal(env)
		return b.Put(k, data)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dir, scripted(nil), nil)
	code, body := h.do(RoleAuditor, "GET", fmt.Sprintf("/explorer/entries/%d", i), "")
	if code != 200 || !strings.Contains(string(body), `id="tampered"`) || !strings.Contains(string(body), `id="sig-status">FAILED`) ||
		!strings.Contains(string(body), `id="env-status">FAILED`) || !strings.Contains(string(body), `id="proof-status">verified`) {
		t.Fatalf("a tampered entry is not flagged:\n%s", body)
	}
	// The gate does not trust the tampered record, nor falls back to the
	// older one: no verdict, and Flagger may not promote.
	code, body = h.do(RoleViewer, "GET", "/api/v1/gate/"+rev, "")
	var e APIError
	if code != 500 || json.Unmarshal(body, &e) != nil || e.Error != "tampered" || !strings.Contains(e.Detail, fmt.Sprintf("entry %d", i)) {
		t.Fatalf("gate over a tampered ledger: %d %s", code, body)
	}
	if code, body := h.do(RoleViewer, "POST", "/api/v1/gate/flagger/confirm-promotion", fmt.Sprintf(`{"name":"x","metadata":{"revision":%q}}`, rev)); code/100 == 2 {
		t.Fatalf("confirm-promotion over a tampered ledger: %d %s", code, body)
	}
}

// TestMetricsInstrumentRequests: /metrics carries the build, and every
// routed request is counted and timed by route and status code.
func TestMetricsInstrumentRequests(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	if code, _ := h.do(RoleViewer, "GET", "/api/v1/runs", ""); code != 200 {
		t.Fatalf("runs: %d", code)
	}
	h.do(0, "GET", "/api/v1/runs", "") // refused: no token
	_, m := h.do(0, "GET", "/metrics", "")
	for _, want := range []string{
		`chaosgate_build_info{goversion="` + runtime.Version() + `",version="dev"} 1`,
		`chaosgate_serve_http_requests_total{code="200",route="GET /api/v1/runs"} 1`,
		`chaosgate_serve_http_requests_total{code="401",route="GET /api/v1/runs"} 1`,
		`chaosgate_serve_http_request_duration_seconds_count{code="200",route="GET /api/v1/runs"} 1`,
		`chaosgate_serve_http_request_duration_seconds_bucket{code="200",route="GET /api/v1/runs",le="+Inf"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A Flagger webhook without a token is answered as a viewer's when its TCP
// peer is in a trusted network, and refused (401) otherwise; a token that
// is sent is still checked, and the trust covers the Flagger webhooks only.
func TestFlaggerTrustedNetworkNeedsNoToken(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	id := h.startRun(`{"scenario":"default-gameday-quick","revision":"block-f1"}`)
	h.waitRun(id)
	payload := `{"name":"web","namespace":"demo","metadata":{"revision":"block-f1"}}`
	if code, body := h.do(0, "POST", "/api/v1/gate/flagger/rollback", payload); code != 401 {
		t.Fatalf("no token, no trusted network: %d %s", code, body)
	}
	h.srv.opt.WebhookTrustedNets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if code, body := h.do(0, "POST", "/api/v1/gate/flagger/rollback", payload); code != 401 {
		t.Fatalf("no token from outside the trusted network: %d %s", code, body)
	}
	h.srv.opt.WebhookTrustedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	code, body := h.do(0, "POST", "/api/v1/gate/flagger/rollback", payload)
	if code != 200 || !strings.Contains(string(body), `"allowed": true`) {
		t.Fatalf("no token from the trusted network: %d %s", code, body)
	}
	if code, body := h.do(0, "POST", "/api/v1/gate/flagger/confirm-promotion", payload); code != 412 {
		t.Fatalf("confirm-promotion of a blocked revision from the trusted network: %d %s", code, body)
	}
	if code, body := h.do(0, "POST", "/api/v1/gate/flagger/rollback", `{"name":"web","metadata":{"revision":"block-f1","token":"not-a-token-at-all"}}`); code != 401 {
		t.Fatalf("a bad token from the trusted network: %d %s", code, body)
	}
	if code, body := h.do(0, "GET", "/api/v1/gate/block-f1", ""); code != 401 {
		t.Fatalf("the Argo gate without a token from the trusted network: %d %s", code, body)
	}
}
