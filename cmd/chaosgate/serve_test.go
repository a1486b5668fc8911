package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/web"
)

func TestServeBadConfigIsUsageError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chaosgate.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nschedules:\n  - {name: n, cron: \"99 * * * *\", scenario: default-gameday}\n"), 0o644)
	_, errs, code := cli(t, "serve", "-c", cfg)
	if code != exitUsage || !strings.Contains(errs, cfg+":3:21: schedules[0].cron: bad cron spec") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, errs, code = cli(t, "serve", "--target", "mars", "--data-dir", dir)
	if code != exitUsage || !strings.Contains(errs, `--target "mars"`) {
		t.Fatalf("bad target: exit %d: %s", code, errs)
	}
}

// serveProc is a running `chaosgate serve`.
type serveProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	tokens map[string]string
	mu     sync.Mutex
	log    strings.Builder
	done   chan struct{}
}

func startServe(t *testing.T, bin string, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, cmd: exec.Command(bin, append([]string{"serve"}, args...)...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	re := regexp.MustCompile(`listening on (https?://\S+)`)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case p.url = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start:\n%s", p.logs())
	}
	return p
}

func (p *serveProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return tail(p.log.String(), 4000)
}

func (p *serveProc) do(token, method, path, body string) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// follow reads a run's server-sent events until the "end" event (or
// until stop returns true for an event) and returns the event kinds seen.
func (p *serveProc) follow(token, id string, stop func(kind string, data map[string]any) bool) []string {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url+"/api/v1/runs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var kinds []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev map[string]any
		json.Unmarshal([]byte(d), &ev)
		k, _ := ev["kind"].(string)
		kinds = append(kinds, k)
		if k == "end" || stop != nil && stop(k, ev) {
			return kinds
		}
	}
	p.t.Fatalf("event stream of %s ended without an end event (%v)\n%s", id, kinds, p.logs())
	return nil
}

// serveTokens reads the bearer tokens serve generated in dataDir, by role.
func serveTokens(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, m := range regexp.MustCompile(`role: (\w+), token: "([0-9a-f]+)"`).FindAllStringSubmatch(string(data), -1) {
		tok[m[1]] = m[2]
	}
	return tok
}

func TestServeRealRunGateAndKillSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("a real game day takes about a minute")
	}
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chaosgate.yaml")
	// The promoted run is one judged step (experiments/one-step.yaml): the
	// test is about what serve does around a verdict — the run record, the
	// gate, Flagger's hooks, the explorer, the kill switch.
	experiments := filepath.Join(dir, "experiments")
	if err := os.MkdirAll(experiments, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(experiments, "one-step.yaml"), []byte(oneStepGameDay), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\nexperiments: %s\nschedules:\n  - {name: weekly, cron: \"0 4 * * 1\", scenario: default-gameday}\n", filepath.Join(dir, "data"), experiments)), 0o644)
	p := startServe(t, bin, "-c", cfg, "--binary", bin)
	tok := serveTokens(t, filepath.Join(dir, "data"))
	if st, _ := os.Stat(filepath.Join(dir, "data", "tokens.yaml")); st.Mode().Perm() != 0o600 || len(tok) != 3 {
		t.Fatalf("tokens file: %v %v", st.Mode(), tok)
	}
	rev := "sha256:" + strings.Repeat("5e", 32)
	code, body := p.do(tok["operator"], "POST", "/api/v1/runs", fmt.Sprintf(`{"scenario":"one-step","revision":%q}`, rev))
	if code != 202 {
		t.Fatalf("start: %d %s", code, body)
	}
	var run struct{ ID string }
	json.Unmarshal(body, &run)
	kinds := p.follow(tok["viewer"], run.ID, nil)
	for _, k := range []string{"phase", "fault", "state", "verdict", "end"} {
		if !strings.Contains(strings.Join(kinds, " "), k) {
			t.Errorf("no %q event in %v", k, kinds)
		}
	}
	var rec struct {
		Status string
		Report struct {
			Verdict  string
			Revision string
			Evidence struct {
				LedgerIndex uint64 `json:"ledger_index"`
			}
		}
	}
	_, body = p.do(tok["viewer"], "GET", "/api/v1/runs/"+run.ID, "")
	if json.Unmarshal(body, &rec) != nil || rec.Status != "finished" || rec.Report.Verdict != "promote" || rec.Report.Revision != rev {
		t.Fatalf("run: %s\n%s", tail(string(body), 2000), p.logs())
	}
	code, body = p.do(tok["viewer"], "GET", "/api/v1/gate/"+rev, "")
	var g struct {
		Verdict     string
		RunID       string  `json:"run_id"`
		LedgerIndex *uint64 `json:"ledger_index"`
	}
	if code != 200 || json.Unmarshal(body, &g) != nil || g.Verdict != "promote" || g.RunID != run.ID || g.LedgerIndex == nil || *g.LedgerIndex != rec.Report.Evidence.LedgerIndex {
		t.Fatalf("gate: %d %s", code, body)
	}
	payload := fmt.Sprintf(`{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":%q}}`, rev)
	if code, body := p.do(tok["viewer"], "POST", "/api/v1/gate/flagger/confirm-promotion", payload); code != 200 {
		t.Fatalf("confirm-promotion: %d %s", code, body)
	}
	if code, body := p.do(tok["viewer"], "POST", "/api/v1/gate/flagger/rollback", payload); code != 412 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	if code, body := p.do(tok["auditor"], "GET", "/explorer?revision="+rev, ""); code != 200 || !strings.Contains(string(body), run.ID) || !strings.Contains(string(body), "verified") {
		t.Fatalf("explorer: %d %s", code, tail(string(body), 2000))
	}

	// The kill switch aborts a run mid-fault; the run recovers its faults.
	code, body = p.do(tok["operator"], "POST", "/api/v1/runs", `{"scenario":"pod-kill","revision":"abort-me"}`)
	if code != 202 {
		t.Fatalf("start: %d %s", code, body)
	}
	json.Unmarshal(body, &run)
	p.follow(tok["viewer"], run.ID, func(kind string, _ map[string]any) bool { return kind == "fault" })
	code, body = p.do(tok["operator"], "POST", "/api/v1/abort?reason=drill", "")
	if code != 200 || !strings.Contains(string(body), run.ID) {
		t.Fatalf("abort: %d %s", code, body)
	}
	p.follow(tok["viewer"], run.ID, nil)
	_, body = p.do(tok["viewer"], "GET", "/api/v1/runs/"+run.ID, "")
	var ab struct{ Status, Aborted string }
	if json.Unmarshal(body, &ab) != nil || ab.Status != "aborted" || !strings.Contains(ab.Aborted, "drill") {
		t.Fatalf("aborted run: %s\n%s", tail(string(body), 1500), p.logs())
	}
	if live, err := engine.ActiveRuns(filepath.Join(dir, "data")); err != nil || len(live) != 0 {
		t.Fatalf("live runs after the abort: %v %v", live, err)
	}
	// The gate ignores the aborted run: no verdict for its revision yet.
	if code, body := p.do(tok["viewer"], "GET", "/api/v1/gate/abort-me", ""); code != 200 || !strings.Contains(string(body), `"verdict": "pending"`) {
		t.Fatalf("gate for an aborted run: %d %s", code, body)
	}
	// SIGTERM: a clean shutdown, exit 0.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("serve exit: %v\n%s", err, p.logs())
	}
}

func TestServeDecisionHotReload(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join("..", "..", "decision", "decision.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dfile := filepath.Join(dir, "decision.yaml")
	os.WriteFile(dfile, good, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr strings.Builder
	go func() {
		done <- serve(ctx, &lockedWriter{w: &stderr}, &web.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), Target: "local", Decision: dfile},
			serveExtras{ready: ready})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "data", "tokens.yaml"))
	m := regexp.MustCompile(`role: viewer, token: "([0-9a-f]+)"`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatalf("no viewer token in %s", data)
	}
	get := func() map[string]any {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/decision", nil)
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d map[string]any
		json.NewDecoder(resp.Body).Decode(&d)
		return d
	}
	first := get()
	if first["last_reload"] != "ok" || first["source"] != dfile {
		t.Fatalf("decision: %v", first)
	}
	wait := func(want string) map[string]any {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if d := get(); d["last_reload"] == want {
				return d
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("last_reload never became %q: %v", want, get())
		return nil
	}
	os.WriteFile(dfile, []byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\nalpha: lots\n"), 0o644)
	bad := wait("rejected")
	if bad["hash"] != first["hash"] || !strings.Contains(fmt.Sprint(bad["last_error"]), "decision.yaml:3") {
		t.Fatalf("after a bad edit: %v", bad)
	}
	os.WriteFile(dfile, []byte(strings.Replace(string(good), "alpha: 0.01", "alpha: 0.02", 1)), 0o644)
	if d := wait("ok"); d["hash"] == first["hash"] {
		t.Fatalf("the changed config kept its hash: %v", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// lockedWriter serializes writes from serve's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestServeK8sTargetWithoutClusterRecordsError(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	k := &k8sOpts{kubeconfig: filepath.Join(dir, "no-such-kubeconfig"), injectTimeout: time.Second, recoverTimeout: time.Second, confirmTimeout: time.Second, aggregatorPort: 7001}
	go func() {
		done <- serve(ctx, io.Discard, &web.Config{Listen: "127.0.0.1:0", DataDir: dir, Target: "k8s"}, serveExtras{k8s: k, ready: ready})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "tokens.yaml"))
	m := regexp.MustCompile(`role: operator, token: "([0-9a-f]+)"`).FindStringSubmatch(string(data))
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("POST", "/api/v1/runs", `{"scenario":"pod-kill","revision":"r"}`)
	if code != 202 {
		t.Fatalf("start: %d %s", code, body)
	}
	var run struct{ ID string }
	json.Unmarshal([]byte(body), &run)
	deadline := time.Now().Add(30 * time.Second)
	var rec struct{ Status, Error string }
	for time.Now().Before(deadline) {
		_, body = do("GET", "/api/v1/runs/"+run.ID, "")
		json.Unmarshal([]byte(body), &rec)
		if rec.Status != "running" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.Status != "error" || !strings.Contains(rec.Error, "no-such-kubeconfig") {
		t.Fatalf("a k8s run without a cluster: %s", body)
	}
	if code, body := do("GET", "/api/v1/gate/r", ""); code != 200 || !strings.Contains(string(body), `"verdict": "pending"`) {
		t.Fatalf("gate answered from a run that could not judge: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWebhookTrustedCIDRsParse(t *testing.T) {
	got, err := parseTrustedNets([]string{"10.42.0.0/16", " 127.0.0.1/32", "fd00::/8"})
	if err != nil || len(got) != 3 || got[0].String() != "10.42.0.0/16" {
		t.Fatalf("good networks: %v %v", got, err)
	}
	for _, bad := range []string{"10.42.0.0", "0.0.0.0/0", "::/0", "ten/8"} {
		if _, err := parseTrustedNets([]string{bad}); err == nil || !strings.Contains(err.Error(), "--webhook-trusted-cidr") || !strings.Contains(err.Error(), "hint") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseTrustedNets(f *testing.F) {
	f.Add("10.42.0.0/16")
	f.Add("0.0.0.0/0")
	f.Add("fd00::1/64")
	f.Fuzz(func(t *testing.T, s string) {
		nets, err := parseTrustedNets([]string{s})
		if err != nil {
			return
		}
		for _, n := range nets {
			if n.Bits() == 0 || n != n.Masked() {
				t.Fatalf("%q gave %v", s, n)
			}
		}
	})
}
