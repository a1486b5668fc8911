package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/notify"
	"github.com/chaosgate/chaosgate/scenarios"
	"github.com/chaosgate/chaosgate/web"
)

const notifySecret = "notify-test-secret-0123456789abcdef"

// hookRequest is one request a test receiver got.
type hookRequest struct {
	header http.Header
	body   []byte
	at     time.Time
	// target is the method and request target as sent (%2F stays
	// encoded).
	target string
}

// hookReceiver is a local webhook endpoint answering every request with
// status.
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []hookRequest
	status int
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{status: status}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, hookRequest{header: r.Header.Clone(), body: body, at: time.Now(), target: r.Method + " " + r.RequestURI})
		h.mu.Unlock()
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.reqs...)
}

// verifySignature checks a request as docs/notification-v1.md tells a
// receiver to.
func verifySignature(t *testing.T, r hookRequest, secret string) {
	t.Helper()
	ts := r.header.Get("X-Chaosgate-Timestamp")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(r.body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if ts == "" || !hmac.Equal([]byte(r.header.Get("X-Chaosgate-Signature")), []byte(want)) {
		t.Errorf("signature %q over timestamp %q does not verify", r.header.Get("X-Chaosgate-Signature"), ts)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ua := r.header.Get("User-Agent"); !strings.HasPrefix(ua, "chaosgate/") {
		t.Errorf("User-Agent %q", ua)
	}
}

func writeNotifySecret(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify-secret")
	if err := os.WriteFile(p, []byte(notifySecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNotifyDemoBlockSignedWebhookAndDeadSink runs one quick demo with a
// slow canary and two webhooks, one that takes the notification and one
// that always answers 503: exactly one signed block notification naming
// latency_p99 arrives, the dead sink is retried and dead-lettered, and
// the verdict and exit code are those of the run.
func TestNotifyDemoBlockSignedWebhookAndDeadSink(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	good, dead := newHookReceiver(t, http.StatusOK), newHookReceiver(t, http.StatusServiceUnavailable)
	// The same run also posts its root-cause report to a GitHub pull
	// request, a GitLab merge request (named by its URL, so the API base
	// comes from it) and a Jira Cloud project, each a local server.
	github, gitlab, jira := newHookReceiver(t, http.StatusCreated), newHookReceiver(t, http.StatusCreated), newHookReceiver(t, http.StatusCreated)
	token := writeForgeToken(t)
	start := time.Now()
	stdout, stderr, code := runBinary(t, bin, "demo", "--quick", "--canary-defect", "slow-path", "-o", "json", "--data-dir", dir,
		"--notify-webhook", good.srv.URL+"/hooks/chaosgate", "--notify-webhook", dead.srv.URL+"/hooks/down",
		"--notify-secret-file", writeNotifySecret(t), "--dashboard-url", "https://chaosgate.example.com",
		"--notify-github-pr", "chaosgate/shop#7", "--notify-github-api-url", github.srv.URL, "--notify-github-token-file", token,
		"--notify-gitlab-mr", gitlab.srv.URL+"/team/shop/-/merge_requests/12", "--notify-gitlab-token-file", token,
		"--notify-jira-project", "OPS", "--notify-jira-url", jira.srv.URL, "--notify-jira-user", "bot@example.com", "--notify-jira-token-file", token)
	elapsed := time.Since(start)
	r := decodeReport(t, stdout, stderr)
	t.Logf("demo: exit %d, verdict %s, failing %v, %.1fs", code, r.Verdict, r.Failing, elapsed.Seconds())
	if code != 1 || r.Verdict != "block" || r.ExitCode != 1 {
		t.Fatalf("slow-path canary with a dead sink: exit %d, verdict %q (want block, exit 1)\n%s", code, r.Verdict, tail(stderr, 4000))
	}
	if !contains(r.Failing, "latency_p99") {
		t.Fatalf("blocked without latency_p99 failing: %v", r.Failing)
	}

	reqs := good.requests()
	if len(reqs) != 1 {
		t.Fatalf("the webhook got %d notifications, want exactly 1\n%s", len(reqs), tail(stderr, 2000))
	}
	verifySignature(t, reqs[0], notifySecret)
	var n struct {
		Schema   string   `json:"schema"`
		RunID    string   `json:"run_id"`
		Scenario string   `json:"scenario"`
		Revision string   `json:"revision"`
		Verdict  string   `json:"verdict"`
		Reason   string   `json:"reason"`
		Failing  []string `json:"failing_dimensions"`
		Links    struct {
			Run string `json:"run"`
		} `json:"links"`
		Report struct {
			RunID   string `json:"run_id"`
			Verdict string `json:"verdict"`
			Steps   []struct {
				Dimensions []struct {
					Name    string `json:"name"`
					Outcome string `json:"outcome"`
				} `json:"dimensions"`
			} `json:"steps"`
		} `json:"report"`
	}
	if err := json.Unmarshal(reqs[0].body, &n); err != nil {
		t.Fatalf("notification is not JSON: %v\n%s", err, reqs[0].body)
	}
	t.Logf("notification: verdict %s, revision %s, failing %v, reason %q, link %s", n.Verdict, n.Revision, n.Failing, n.Reason, n.Links.Run)
	if n.Schema != "chaosgate.notification/v1" || n.Verdict != "block" || n.RunID != r.RunID || n.Report.RunID != r.RunID || n.Report.Verdict != "block" {
		t.Errorf("notification %+v does not match the run %s", n, r.RunID)
	}
	reportFails := false
	if k := len(n.Report.Steps); k > 0 {
		for _, d := range n.Report.Steps[k-1].Dimensions {
			reportFails = reportFails || d.Name == "latency_p99" && d.Outcome == "fail"
		}
	}
	if !contains(n.Failing, "latency_p99") || !reportFails {
		t.Errorf("notification does not name latency_p99: failing %v, report's deciding step fails it: %v", n.Failing, reportFails)
	}
	if n.Links.Run != "https://chaosgate.example.com/runs/"+r.RunID || n.Scenario == "" || n.Revision == "" {
		t.Errorf("notification: link %q, scenario %q, revision %q", n.Links.Run, n.Scenario, n.Revision)
	}

	down := dead.requests()
	if len(down) != 4 {
		t.Errorf("the dead webhook got %d attempts, want 4", len(down))
	}
	var gaps []string
	for i := 1; i < len(down); i++ {
		gaps = append(gaps, down[i].at.Sub(down[i-1].at).Round(time.Millisecond).String())
	}
	t.Logf("dead webhook: %d attempts, waits between them %v (backoff 500ms doubling, jittered to [d/2, d])", len(down), gaps)
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "notif") {
			t.Logf("stderr: %s", l)
		}
	}
	for _, d := range down {
		if d.header.Get("X-Chaosgate-Delivery") != down[0].header.Get("X-Chaosgate-Delivery") {
			t.Errorf("delivery id changed between attempts")
		}
	}
	letters := filepath.Join(dir, "notify", "dead-letter.jsonl")
	for _, want := range []string{"notified webhook#1 (1 attempt)",
		"notification to webhook#2 failed after 4 attempts; dead-lettered to " + letters + " (POST " + dead.srv.URL + "/hooks/down: 503 Service Unavailable)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, tail(stderr, 2000))
		}
	}
	raw, err := os.ReadFile(letters)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(letters); st.Mode().Perm() != 0o600 {
		t.Errorf("dead-letter file mode %04o", st.Mode().Perm())
	}
	var dl struct {
		Sink         string `json:"sink"`
		Attempts     int    `json:"attempts"`
		Notification struct {
			RunID   string `json:"run_id"`
			Verdict string `json:"verdict"`
		} `json:"notification"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(raw), &dl); err != nil || dl.Sink != "webhook#2" || dl.Attempts != 4 ||
		dl.Notification.RunID != r.RunID || dl.Notification.Verdict != "block" {
		t.Errorf("dead letter %+v (%v):\n%s", dl, err, raw)
	}
	if bytes.Contains(raw, []byte(notifySecret)) || strings.Contains(stderr, notifySecret) {
		t.Errorf("the secret leaked into the dead letter or the output")
	}
	for _, want := range []string{"notified github (1 attempt)", "notified gitlab (1 attempt)", "notified jira (1 attempt)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(stderr, forgeToken) || bytes.Contains(raw, []byte(forgeToken)) {
		t.Errorf("the token leaked into the output or the dead letter")
	}
	checkForgeRequest(t, github, "POST /repos/chaosgate/shop/issues/7/comments", "Authorization", "Bearer "+forgeToken, r.RunID)
	checkForgeRequest(t, gitlab, "POST /api/v4/projects/team%2Fshop/merge_requests/12/notes", "Private-Token", forgeToken, r.RunID)
	if reqs := github.requests(); len(reqs) == 1 {
		if v := reqs[0].header.Get("X-GitHub-Api-Version"); v != "2022-11-28" || reqs[0].header.Get("Accept") != "application/vnd.github+json" {
			t.Errorf("GitHub headers: version %q, accept %q", v, reqs[0].header.Get("Accept"))
		}
	}
	if reqs := jira.requests(); len(reqs) != 1 || reqs[0].target != "POST /rest/api/3/issue" {
		t.Errorf("Jira: %d requests (%v), want one POST /rest/api/3/issue", len(reqs), reqs)
	} else {
		var issue struct {
			Fields struct {
				Project     struct{ Key string }  `json:"project"`
				Summary     string                `json:"summary"`
				Description map[string]any        `json:"description"`
				IssueType   struct{ Name string } `json:"issuetype"`
				Labels      []string              `json:"labels"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(reqs[0].body, &issue); err != nil {
			t.Fatalf("Jira body: %v", err)
		}
		f := issue.Fields
		t.Logf("Jira issue: %s %q labels %v", f.Project.Key, f.Summary, f.Labels)
		if f.Project.Key != "OPS" || f.IssueType.Name != "Bug" || !strings.Contains(f.Summary, "latency_p99") || !strings.HasPrefix(f.Summary, "chaosgate blocked") ||
			f.Description["type"] != "doc" || !contains(f.Labels, "chaosgate-block") || !strings.HasPrefix(reqs[0].header.Get("Authorization"), "Basic ") {
			t.Errorf("Jira issue %+v", f)
		}
	}
}

const forgeToken = "forge-test-token-0123456789abcdef"

func writeForgeToken(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(forgeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkForgeRequest checks the one request a GitHub or GitLab receiver
// got: its target, its credential header and a JSON {"body": markdown}
// whose root-cause report names latency_p99 and the run.
func checkForgeRequest(t *testing.T, h *hookReceiver, target, authHeader, auth, runID string) {
	t.Helper()
	reqs := h.requests()
	if len(reqs) != 1 {
		t.Errorf("%s: %d requests, want 1", target, len(reqs))
		return
	}
	if reqs[0].target != target {
		t.Errorf("request %q, want %q", reqs[0].target, target)
	}
	if got := reqs[0].header.Get(authHeader); got != auth {
		t.Errorf("%s: %s %q", target, authHeader, got)
	}
	var body map[string]string
	if err := json.Unmarshal(reqs[0].body, &body); err != nil || len(body) != 1 {
		t.Fatalf("%s: body %s (%v), want {\"body\": markdown}", target, reqs[0].body, err)
	}
	md := body["body"]
	if !strings.Contains(md, "| `latency_p99` | fail") || !strings.Contains(md, "https://chaosgate.example.com/runs/"+runID) ||
		!strings.Contains(md, "https://chaosgate.example.com/explorer/entries/") || !strings.Contains(md, "### Faults in the run") {
		t.Errorf("%s: the root-cause report does not name latency_p99, the run page and the ledger entry:\n%s", target, md)
	} else {
		t.Logf("%s: root-cause report of %d bytes; its failing dimensions:\n%s", target, len(md), tableOf(md, "| Dimension"))
	}
}

// tableOf is the markdown table starting with the line prefix head.
func tableOf(md, head string) string {
	i := strings.Index(md, head)
	if i < 0 {
		return ""
	}
	end := strings.Index(md[i:], "\n\n")
	if end < 0 {
		return md[i:]
	}
	return md[i : i+end]
}

// TestNotifyFlagsCheckedBeforeTheRun: a webhook without a secret, or a
// secret others may read, is a usage error before anything starts.
func TestNotifyFlagsCheckedBeforeTheRun(t *testing.T) {
	open := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(open, []byte(notifySecret), 0o644)
	os.Chmod(open, 0o644)
	t.Setenv("CHAOSGATE_NOTIFY_SECRET", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--notify-webhook", "http://127.0.0.1:9/h"}, "needs a secret to sign with"},
		{[]string{"--notify-webhook", "http://127.0.0.1:9/h", "--notify-secret-file", open}, "chmod 600"},
		{[]string{"--notify-on", "sometimes"}, `unknown verdict "sometimes"`},
		{[]string{"--notify-webhook", "127.0.0.1/h", "--notify-secret-file", writeNotifySecret(t)}, "not an http or https URL"},
	} {
		args := append([]string{"demo", "--quick", "--data-dir", t.TempDir()}, tc.args...)
		_, stderr, code := cli(t, args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, notifySecret) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, exitUsage, tc.want, tail(stderr, 1000))
		}
		if strings.Contains(stderr, "run ") && strings.Contains(stderr, "default-gameday") {
			t.Errorf("%v: the run started:\n%s", tc.args, tail(stderr, 1000))
		}
	}
}

// TestNotifyServeHook: serve's hook for the notify: block posts the
// notification of a run that ends blocked, and nothing for an
// interrupted one.
func TestNotifyServeHook(t *testing.T) {
	dir := t.TempDir()
	hook := newHookReceiver(t, http.StatusOK)
	secret := writeNotifySecret(t)
	var stderr bytes.Buffer
	onEnd, err := serveNotifier(&stderr, web.NotifyConfig{Webhooks: []string{hook.srv.URL + "/h"}, SecretFile: secret,
		DashboardURL: "http://127.0.0.1:8080"}, dir, slog.New(slog.DiscardHandler))
	if err != nil || onEnd == nil {
		t.Fatalf("serveNotifier: %v", err)
	}
	if !strings.Contains(stderr.String(), "notifying webhook when a run ends with block,hold") {
		t.Errorf("serve does not say who it notifies: %q", stderr.String())
	}
	tokens, err := web.ParseTokens([]byte(`tokens: [{name: op, role: operator, token: "0123456789abcdef-op"}]`), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{}, 2)
	srv, err := web.New(web.Options{DataDir: dir, Tokens: tokens, OnRunEnd: func(r *web.RunRecord) { onEnd(r); ended <- struct{}{} },
		Run: func(ctx context.Context, req web.RunRequest, live *web.Live) (*web.RunResult, error) {
			if req.Revision == "interrupted" {
				return &web.RunResult{Interrupted: true, Error: "context canceled"}, context.Canceled
			}
			rep := report.New(req.ID, req.Revision, decision.Block)
			rep.Steps = []report.Step{{Weight: 10, Verdict: "block", Reason: "latency_p99 fails",
				Dimensions: []decision.DimensionResult{{Name: "latency_p99", Outcome: decision.Fail}}}}
			return &web.RunResult{Report: rep, Reason: "latency_p99 fails", Failing: []string{"latency_p99"}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	doc, err := scenarios.Open("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rev := range []string{"interrupted", "v2"} {
		rec, err := srv.Start(web.RunRequest{Scenario: "pod-kill", Doc: doc, Revision: rev, Trigger: "api:op"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatal("the run did not end")
		}
	}
	reqs := hook.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d notifications, want 1 (the blocked run only)", len(reqs))
	}
	verifySignature(t, reqs[0], notifySecret)
	var n struct {
		RunID    string `json:"run_id"`
		Verdict  string `json:"verdict"`
		Revision string `json:"revision"`
		Scenario string `json:"scenario"`
		Links    struct {
			Run string `json:"run"`
		} `json:"links"`
	}
	json.Unmarshal(reqs[0].body, &n)
	if n.RunID != ids[1] || n.Verdict != "block" || n.Revision != "v2" || n.Scenario != "pod-kill" || n.Links.Run != "http://127.0.0.1:8080/runs/"+ids[1] {
		t.Fatalf("notification %+v", n)
	}
}

// TestNotifyForgeFlagsCheckedBeforeTheRun: a bad merge request, pull
// request, Jira project or token file is a usage error naming its flag,
// before anything starts; the token is never printed.
func TestNotifyForgeFlagsCheckedBeforeTheRun(t *testing.T) {
	open := filepath.Join(t.TempDir(), "token")
	os.WriteFile(open, []byte(forgeToken), 0o644)
	os.Chmod(open, 0o644)
	t.Setenv("GITLAB_TOKEN", "")
	t.Setenv("GITHUB_TOKEN", "")
	t.Setenv("CHAOSGATE_NOTIFY_JIRA_TOKEN", "")
	good := writeForgeToken(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--notify-gitlab-mr", "group/project#12"}, "--notify-gitlab-mr: \"group/project#12\": want a merge request URL or PROJECT!IID"},
		{[]string{"--notify-gitlab-mr", "g/p!1"}, "--notify-gitlab-token-file: no token: give a token file (mode 0600) or set GITLAB_TOKEN"},
		{[]string{"--notify-gitlab-mr", "g/p!1", "--notify-gitlab-token-file", open}, "--notify-gitlab-token-file: " + open + " has mode 0644"},
		{[]string{"--notify-gitlab-mr", "g/p!1", "--notify-gitlab-token-file", good, "--notify-gitlab-auth", "oauth"}, "--notify-gitlab-auth: \"oauth\": want private-token or bearer"},
		{[]string{"--notify-github-pr", "o/r/1", "--notify-github-token-file", good}, "--notify-github-pr: \"o/r/1\": want owner/repo#N"},
		{[]string{"--notify-github-pr", "o/r#1", "--notify-github-token-file", good, "--notify-github-api-url", "api.github.com"}, "--notify-github-api-url: not an http or https URL"},
		{[]string{"--notify-jira-project", "ops", "--notify-jira-url", "https://j.example.com"}, "--notify-jira-project: project key \"ops\": an uppercase letter"},
		{[]string{"--notify-jira-project", "OPS"}, "--notify-jira-url: the Jira settings need the site's URL"},
		{[]string{"--notify-jira-project", "OPS", "--notify-jira-url", "https://j.example.com", "--notify-jira-token-file", good, "--notify-jira-api", "1"}, "--notify-jira-api: \"1\": want 2"},
		{[]string{"--notify-jira-project", "OPS", "--notify-jira-url", "https://j.example.com", "--notify-jira-labels", "a b"}, "--notify-jira-labels: label \"a b\""},
	} {
		args := append([]string{"demo", "--quick", "--data-dir", t.TempDir()}, tc.args...)
		_, stderr, code := cli(t, args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, forgeToken) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, exitUsage, tc.want, tail(stderr, 1000))
		}
		if strings.Contains(stderr, "run ") && strings.Contains(stderr, "default-gameday") {
			t.Errorf("%v: the run started:\n%s", tc.args, tail(stderr, 1000))
		}
	}
}

// TestNotifyFromCIOutsideAMergeRequestIsANote: "ci" in a pipeline that
// is not for a merge request or pull request leaves the sink out and
// says so; it is not an error.
func TestNotifyFromCIOutsideAMergeRequestIsANote(t *testing.T) {
	for _, v := range []string{"CI_MERGE_REQUEST_IID", "GITHUB_REPOSITORY", "GITHUB_REF", "GITHUB_EVENT_PATH"} {
		t.Setenv(v, "")
	}
	t.Setenv("GITLAB_TOKEN", forgeToken)
	t.Setenv("GITHUB_TOKEN", forgeToken)
	var out bytes.Buffer
	f := notifyFlags{gitlab: notify.GitLabConfig{MergeRequest: "ci"}, github: notify.GitHubConfig{PullRequest: "ci"}}
	d, err := f.dispatcher(t.TempDir(), &out)
	if err != nil || d != nil {
		t.Fatalf("dispatcher %v, %v; want none and no error", d, err)
	}
	for _, want := range []string{"no GitLab note: this pipeline is not for a merge request (CI_MERGE_REQUEST_IID is not set)",
		"no GitHub comment: not in a GitHub Actions run (GITHUB_REPOSITORY is not set)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// In a GitLab merge-request pipeline the same flags name its merge
	// request.
	t.Setenv("CI_MERGE_REQUEST_IID", "5")
	t.Setenv("CI_PROJECT_ID", "4711")
	t.Setenv("CI_API_V4_URL", "https://gitlab.example.com/api/v4")
	out.Reset()
	f = notifyFlags{gitlab: notify.GitLabConfig{MergeRequest: "ci"}}
	d, err = f.dispatcher(t.TempDir(), &out)
	if err != nil || d == nil || len(d.Sinks) != 1 || d.Sinks[0].(*notify.HTTPSink).Endpoint() != "https://gitlab.example.com/api/v4/projects/4711/merge_requests/5/notes" {
		t.Fatalf("in a merge-request pipeline: %+v, %v", d, err)
	}
}

// TestRootCauseFileNextToTheReport: gate --json out/report.json writes
// out/report.root-cause.md for a blocked or held run, and removes it when
// the next run at that path promotes or is not judged.
func TestRootCauseFileNextToTheReport(t *testing.T) {
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "out", "report.json")
	if got := rootCausePath(jsonFile); got != filepath.Join(dir, "out", "report.root-cause.md") {
		t.Fatalf("root-cause path %s", got)
	}
	rep := report.New("cli-1", "sha256:abc", decision.Block)
	rep.Steps = []report.Step{{Weight: 25, Verdict: "block", Reason: "latency_p99 fails",
		Dimensions: []decision.DimensionResult{{Name: "latency_p99", Outcome: decision.Fail, Canary: 80, Control: 9, Unit: "ms", Test: decision.MethodSigma, Z: 7, K: 4}}}}
	rep.Evidence = &report.Evidence{LedgerIndex: 3, TreeSize: 4}
	var out bytes.Buffer
	writeRootCause(&out, jsonFile, "https://cg.example.com", true, notify.Run{Report: rep, Scenario: "pod-kill"})
	md, err := os.ReadFile(rootCausePath(jsonFile))
	if err != nil {
		t.Fatalf("%v (output %q)", err, out.String())
	}
	if out.String() != "root-cause report: "+rootCausePath(jsonFile)+"\n" {
		t.Errorf("output %q", out.String())
	}
	for _, want := range []string{"## ✗ Release blocked: revision `sha256:abc`", "| `latency_p99` | fail | 80 ms | 9 ms | sigma | z 7.00 ≥ k 4.00 |",
		"[3](https://cg.example.com/explorer/entries/3)", "[cli-1](https://cg.example.com/runs/cli-1)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("root-cause file lacks %q:\n%s", want, md)
		}
	}
	promoted := report.New("cli-2", "sha256:abc", decision.Promote)
	writeRootCause(&out, jsonFile, "", true, notify.Run{Report: promoted})
	if _, err := os.Stat(rootCausePath(jsonFile)); !os.IsNotExist(err) {
		t.Errorf("a promoted run left the blocked run's root-cause file: %v", err)
	}
	writeRootCause(&out, jsonFile, "", true, notify.Run{Report: rep})
	writeRootCause(&out, jsonFile, "", false, notify.Run{Report: rep})
	if _, err := os.Stat(rootCausePath(jsonFile)); !os.IsNotExist(err) {
		t.Errorf("an interrupted run left a root-cause file: %v", err)
	}
	out.Reset()
	writeRootCause(&out, "", "", true, notify.Run{Report: rep})
	if out.Len() != 0 {
		t.Errorf("no --json, yet %q", out.String())
	}
}

// TestNotifyServeHookPostsRootCause: serve's hook for notify.github and
// notify.jira posts the root-cause report of a blocked run, and says at
// startup whom it notifies.
func TestNotifyServeHookPostsRootCause(t *testing.T) {
	github, jira := newHookReceiver(t, http.StatusCreated), newHookReceiver(t, http.StatusCreated)
	token := writeForgeToken(t)
	var stderr bytes.Buffer
	onEnd, err := serveNotifier(&stderr, web.NotifyConfig{DashboardURL: "https://cg.example.com",
		GitHub: notify.GitHubConfig{PullRequest: "o/r#3", APIURL: github.srv.URL + "/api/v3", TokenFile: token},
		Jira:   notify.JiraConfig{URL: jira.srv.URL, Project: "OPS", TokenFile: token}}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil || onEnd == nil {
		t.Fatalf("serveNotifier: %v", err)
	}
	if !strings.Contains(stderr.String(), "notifying github, jira when a run ends with block,hold") {
		t.Errorf("serve does not say whom it notifies: %q", stderr.String())
	}
	rep := report.New("serve-1", "v2", decision.Block)
	rep.Steps = []report.Step{{Weight: 10, Verdict: "block", Reason: "latency_p99 fails",
		Dimensions: []decision.DimensionResult{{Name: "latency_p99", Outcome: decision.Fail, Canary: 90, Control: 10, Unit: "ms", Test: decision.MethodSigma, Z: 8, K: 4}}}}
	rep.Evidence = &report.Evidence{LedgerIndex: 9, TreeSize: 10}
	onEnd(&web.RunRecord{ID: "serve-1", Status: web.StatusFinished, Scenario: "pod-kill", Report: &rep, Reason: "latency_p99 fails",
		Failing: []string{"latency_p99"}, Finished: time.Now()})
	checkForgeRequestBody(t, github, "POST /api/v3/repos/o/r/issues/3/comments", "https://cg.example.com/runs/serve-1", "https://cg.example.com/explorer/entries/9")
	if reqs := jira.requests(); len(reqs) != 1 || reqs[0].target != "POST /rest/api/2/issue" || reqs[0].header.Get("Authorization") != "Bearer "+forgeToken ||
		!bytes.Contains(reqs[0].body, []byte(`|{{latency\\_p99}}|fail|`)) {
		t.Errorf("Jira Data Center issue: %d requests %v", len(reqs), reqs)
	}
}

// checkForgeRequestBody checks a receiver got one request at target whose
// {"body": markdown} names latency_p99 and carries the links.
func checkForgeRequestBody(t *testing.T, h *hookReceiver, target string, links ...string) {
	t.Helper()
	reqs := h.requests()
	if len(reqs) != 1 || reqs[0].target != target {
		t.Fatalf("%d requests %v, want one %s", len(reqs), reqs, target)
	}
	var body map[string]string
	if err := json.Unmarshal(reqs[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body["body"], "| `latency_p99` | fail | 90 ms | 10 ms | sigma | z 8.00 ≥ k 4.00 |") {
		t.Errorf("the comment does not explain latency_p99:\n%s", body["body"])
	}
	for _, l := range links {
		if !strings.Contains(body["body"], "("+l+")") {
			t.Errorf("the comment does not link %s", l)
		}
	}
}
