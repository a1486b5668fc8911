package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

// A run a command records in its own process is listed by serve with its
// trigger, followed live over server-sent events from its events file,
// and keeps its page, charts and verdict chips when it ends.
func TestCommandRunIsListedAndFollowedLive(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	rec, err := RecordRun(h.dir, RunMeta{Scenario: "default-gameday-quick", Revision: "cli-rev",
		Trigger: CommandTrigger("demo", func(string) string { return "" })})
	if err != nil {
		t.Fatal(err)
	}
	id := rec.ID()
	if !strings.HasPrefix(id, "cli-") {
		t.Fatalf("run id %q", id)
	}
	_, body := h.do(RoleViewer, "GET", "/api/v1/runs", "")
	var list struct{ Runs []RunRecord }
	if json.Unmarshal(body, &list) != nil || len(list.Runs) != 1 || list.Runs[0].ID != id || list.Runs[0].Status != StatusRunning ||
		list.Runs[0].Trigger != "cli:demo" || list.Runs[0].Owner == nil || list.Runs[0].Owner.PID != os.Getpid() {
		t.Fatalf("runs: %s", body)
	}
	// Follow its events while the command publishes them.
	req, _ := http.NewRequest("GET", h.hs.URL+"/api/v1/runs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 100)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				got <- k
			}
		}
	}()
	next := func(want string) {
		t.Helper()
		for {
			select {
			case k, ok := <-got:
				if !ok {
					t.Fatalf("stream ended before a %q event", want)
				}
				if k == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %q event", want)
			}
		}
	}
	next("info") // "run … started", written before the stream opened
	live := rec.Live()
	t0 := time.Now().UTC().Truncate(time.Second)
	live.Emit(LiveEvent{Kind: "phase", Phase: "steady", Weight: 10, Msg: "steady at 10%"})
	for i := 0; i < 30; i++ {
		st := LiveState{Phase: "inject", Weight: 10, Arms: map[string]ArmLive{
			"canary": {SuccessRatio: 0.999, P99MS: 20 + float64(i), Requests: int64(100 * (i + 1))}, "control": {SuccessRatio: 1, P99MS: 20, Requests: int64(100 * (i + 1))}}}
		if i >= 10 && i < 20 {
			st.ActiveFaults = []string{"partition on canary/n2"}
		}
		live.Emit(LiveEvent{T: t0.Add(time.Duration(i) * time.Second), Kind: "state", Phase: st.Phase, Weight: 10, State: &st})
	}
	next("phase")
	next("state")
	// The dashboard shows it as the live run, with its trigger.
	_, page := h.do(RoleViewer, "GET", "/", "")
	if !bytes.Contains(page, []byte(`data-run="`+id+`"`)) || !bytes.Contains(page, []byte("cli · demo")) {
		t.Fatalf("dashboard does not show the command's run live:\n%s", page)
	}
	_, frag := h.do(RoleViewer, "GET", "/runs/"+id+"/charts", "")
	if !bytes.Contains(frag, []byte(`class="fault-band"`)) || !bytes.Contains(frag, []byte(`class="x-tick"`)) {
		t.Fatalf("live charts lack the fault band or the time axis:\n%s", frag)
	}
	rep := report.New(id, "cli-rev", decision.Block)
	rep.Steps = []report.Step{{Weight: 10, Verdict: "block", Reason: "p99 latency failed", Dimensions: []decision.DimensionResult{
		{Name: "latency_p99", Outcome: decision.Fail, Rule: decision.RuleAdaptiveSigma, Z: 5.1, K: 3, Reason: "p99 rose"},
		{Name: "error_rate", Outcome: decision.Pass, Leaning: true, Rule: decision.RuleWithinNoise, Canary: 0.2, Control: 0.1, Unit: "%"},
		{Name: "memory_growth", Rule: decision.RuleNotCollected, Outcome: decision.Inconclusive}}}}
	done, err := rec.Finish(&RunResult{Report: rep, Reason: "p99 latency failed", Failing: []string{"latency_p99"}}, nil)
	if err != nil || done.Status != StatusFinished || done.Verdict() != "block" {
		t.Fatalf("finish: %+v %v", done, err)
	}
	next("end")
	_, body = h.do(RoleViewer, "GET", "/runs/"+id, "")
	for _, want := range []string{"c-fail", "z 5.10 (k 3.00)", "c-lean", "c-off", "not collected", `class="step-mark"`, "/api/v1/runs/" + id + "/report"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("run page lacks %q", want)
		}
	}
	code, body := h.do(RoleViewer, "GET", "/api/v1/runs/"+id+"/report", "")
	var got2 report.Report
	if code != 200 || json.Unmarshal(body, &got2) != nil || got2.Verdict != "block" {
		t.Fatalf("report: %d %s", code, body)
	}
}

// A record left running by a process that is gone is shown, and saved, as
// interrupted; one whose process lives stays running.
func TestRunOfAGoneProcessIsInterrupted(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dead := &RunRecord{ID: "cli-dead", Scenario: "pod-kill", Trigger: "cli:run", Status: StatusRunning, Started: time.Now(),
		Owner: &Owner{PID: gone.Process.Pid, Host: host}}
	alive := &RunRecord{ID: "cli-alive", Scenario: "pod-kill", Trigger: "cli:run", Status: StatusRunning, Started: time.Now(), Owner: selfOwner()}
	reused := &RunRecord{ID: "cli-reused", Scenario: "pod-kill", Trigger: "cli:run", Status: StatusRunning, Started: time.Now(),
		Owner: &Owner{PID: os.Getpid(), Host: host, ProcStart: selfOwner().ProcStart + 1}}
	for _, r := range []*RunRecord{dead, alive, reused} {
		if err := h.srv.runs.put(r); err != nil {
			t.Fatal(err)
		}
	}
	_, body := h.do(RoleViewer, "GET", "/api/v1/runs", "")
	var list struct{ Runs []RunRecord }
	json.Unmarshal(body, &list)
	st := map[string]RunRecord{}
	for _, r := range list.Runs {
		st[r.ID] = r
	}
	if st["cli-dead"].Status != StatusInterrupted || !strings.Contains(st["cli-dead"].Error, "ended before the run did") {
		t.Errorf("dead owner: %+v", st["cli-dead"])
	}
	if st["cli-alive"].Status != StatusRunning {
		t.Errorf("live owner: %+v", st["cli-alive"])
	}
	if _, ok := procStart(os.Getpid()); ok && st["cli-reused"].Status != StatusInterrupted {
		t.Errorf("reused pid: %+v", st["cli-reused"])
	}
	saved, err := h.srv.runs.get("cli-dead")
	if err != nil || saved.Status != StatusInterrupted {
		t.Fatalf("not saved: %+v %v", saved, err)
	}
	// A record that nothing will finish still ends its event stream.
	code, body := h.do(RoleViewer, "GET", "/api/v1/runs/cli-dead/events", "")
	if code != 200 {
		t.Fatalf("events: %d %s", code, body)
	}
}

func TestCommandTrigger(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		env  func(string) string
		want string
	}{
		{env(), "cli:gate"},
		{env("CI", "true"), "ci:gate"},
		{env("CI", "false"), "cli:gate"},
		{env("CI", "1"), "ci:gate"},
		{env("GITHUB_ACTIONS", "true"), "ci:gate"},
		{env("GITLAB_CI", "true"), "ci:gate"},
		{env("JENKINS_URL", "http://ci"), "ci:gate"},
	} {
		if got := CommandTrigger("gate", c.env); got != c.want {
			t.Errorf("%v: %q, want %q", c.env("CI"), got, c.want)
		}
	}
}

// An events file is read line by line from an offset; a last line still
// being written waits for the next read.
func TestDecodeEventsLeavesAPartialLine(t *testing.T) {
	full := `{"seq":1,"kind":"info","msg":"a"}` + "\n" + `not json` + "\n" + `{"seq":2,"kind":"state","state":{"phase":"x"}}` + "\n"
	part := `{"seq":3,"kind":"end"`
	evs, off, err := decodeEvents(strings.NewReader(full+part), 0)
	if err != nil || len(evs) != 2 || off != int64(len(full)) || evs[1].State == nil || evs[1].State.Phase != "x" {
		t.Fatalf("%+v %d %v", evs, off, err)
	}
	evs, off2, err := decodeEvents(strings.NewReader(part+"}\n"), off)
	if err != nil || len(evs) != 1 || evs[0].Kind != "end" || off2 != off+int64(len(part)+2) {
		t.Fatalf("%+v %d %v", evs, off2, err)
	}
	// A line longer than the bound stops the reader with an error.
	long := `{"seq":1,"kind":"info","msg":"` + strings.Repeat("x", maxEventLine+10) + `"}` + "\n"
	if _, _, err := decodeEvents(strings.NewReader(long), 0); err == nil {
		t.Fatal("no error for an oversized line")
	}
}

// FuzzDecodeEvents reads any bytes as an events file: no panic, the
// offset never passes the input, and every event read encodes again.
func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte(`{"seq":1,"kind":"info"}` + "\n"))
	f.Add([]byte(`{"seq":1,"kind":"state","state":{"arms":{"canary":{"p99_ms":1e308}}}}` + "\n{"))
	f.Add([]byte("\n\n\n"))
	f.Add([]byte(`{"kind":"end","t":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, off, _ := decodeEvents(bytes.NewReader(data), 0)
		if off < 0 || off > int64(len(data)) {
			t.Fatalf("offset %d of %d bytes", off, len(data))
		}
		if off > 0 && data[off-1] != '\n' {
			t.Fatalf("offset %d is not after a newline", off)
		}
		for _, e := range evs {
			if _, err := json.Marshal(e); err != nil && e.State == nil {
				t.Fatalf("event does not encode: %v", err)
			}
		}
	})
}

// The store sees a record another process writes (listing reads it
// without a restart) and forgets one that is removed.
func TestRunStoreSeesOtherProcessesRecords(t *testing.T) {
	dir := t.TempDir()
	s := &runStore{dir: dir}
	if recs, err := s.list(); err != nil || len(recs) != 0 {
		t.Fatalf("%v %v", recs, err)
	}
	other := &runStore{dir: dir}
	if err := other.put(&RunRecord{ID: "cli-1", Status: StatusFinished, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.scanned = time.Time{} // as if rescanEvery had passed on a coarse clock
	s.mu.Unlock()
	if recs, _ := s.list(); len(recs) != 1 || recs[0].ID != "cli-1" {
		t.Fatalf("new record not seen: %v", recs)
	}
	os.Remove(filepath.Join(dir, "cli-1.json"))
	s.mu.Lock()
	s.scanned = time.Time{}
	s.mu.Unlock()
	if recs, _ := s.list(); len(recs) != 0 {
		t.Fatalf("removed record still listed: %v", recs)
	}
}

// A blocked run's page links to the last promote of its scenario and to
// the run before it; the compare view shows both side by side, dimension
// by dimension; unknown runs get the not-found page.
func TestCompareRunsOfOneScenario(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	good := h.startRun(`{"scenario":"pod-kill","revision":"promote-a"}`)
	h.waitRun(good)
	time.Sleep(1100 * time.Millisecond) // run ids and start times are per second
	bad := h.startRun(`{"scenario":"pod-kill","revision":"block-b"}`)
	h.waitRun(bad)
	_, page := h.do(RoleViewer, "GET", "/runs/"+bad, "")
	link := "/compare?a=" + good + "&amp;b=" + bad
	if !bytes.Contains(page, []byte(`href="`+link+`" id="compare-promote"`)) {
		t.Fatalf("the blocked run's page does not link to the last promote:\n%s", page)
	}
	code, cmp := h.do(RoleViewer, "GET", "/compare?a="+good+"&b="+bad, "")
	if code != 200 {
		t.Fatalf("compare: %d %s", code, cmp)
	}
	for _, want := range []string{good, bad, "v-promote", "v-block", `class="cmp-dim"`, "error_rate"} {
		if !bytes.Contains(cmp, []byte(want)) {
			t.Errorf("compare view lacks %q", want)
		}
	}
	if code, body := h.do(RoleViewer, "GET", "/compare?a="+good+"&b=no-such-run", ""); code != 404 || !bytes.Contains(body, []byte(`id="not-found"`)) {
		t.Fatalf("compare with a missing run: %d", code)
	}
	if code, body := h.do(RoleViewer, "GET", "/no/such/page", ""); code != 404 || !bytes.Contains(body, []byte(`id="not-found"`)) {
		t.Fatalf("unknown page: %d %s", code, body)
	}
}
