package notify

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	testToken    = "glpat-TESTTOKEN-0123456789abcdef"
	testJiraUser = "bot@example.com"
)

// uri is what a receiver saw as the request target (path and query, as
// sent: %2F stays encoded).
type uriReceiver struct {
	*receiver
	uris chan string
}

func newURIReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *uriReceiver {
	t.Helper()
	u := &uriReceiver{uris: make(chan string, 16)}
	u.receiver = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		u.uris <- r.Method + " " + r.RequestURI
		if respond != nil {
			respond(n, w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io := `{"id": 1}`
		w.Write([]byte(io))
	})
	return u
}

func (u *uriReceiver) uri(t *testing.T) string {
	t.Helper()
	select {
	case s := <-u.uris:
		return s
	default:
		t.Fatal("no request")
		return ""
	}
}

// jsonKeys decodes a JSON object and returns it with its sorted keys.
func jsonKeys(t *testing.T, body []byte) (map[string]any, string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return m, strings.Join(keys, ",")
}

// TestGitLabNoteRequestMatchesTheNotesAPI checks the request against
// GitLab's "Create new merge request note": POST
// /projects/:id/merge_requests/:merge_request_iid/notes with the project
// as its URL-encoded path, PRIVATE-TOKEN, and {"body": markdown}.
func TestGitLabNoteRequestMatchesTheNotesAPI(t *testing.T) {
	rc := newURIReceiver(t, nil)
	mr, err := ParseMergeRequest("group/sub.team/my-project!12")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewGitLab("", rc.url("/api/v4"), mr, testToken, false, Options{Version: "v9"})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Deliver(context.Background(), New(blockedRun(), "https://cg.example.com"))
	if d.Err != nil || d.Attempts != 1 || d.Status != http.StatusCreated || d.String() != "notified gitlab (1 attempt)" {
		t.Fatalf("delivery %+v", d)
	}
	if got, want := rc.uri(t), "POST /api/v4/projects/group%2Fsub.team%2Fmy-project/merge_requests/12/notes"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	r := rc.requests()[0]
	if r.Header.Get("Private-Token") != testToken || r.Header.Get("Authorization") != "" {
		t.Errorf("auth headers: PRIVATE-TOKEN %q, Authorization %q", r.Header.Get("Private-Token"), r.Header.Get("Authorization"))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ua := r.Header.Get("User-Agent"); ua != "chaosgate/v9" {
		t.Errorf("User-Agent %q", ua)
	}
	m, keys := jsonKeys(t, r.Body)
	if keys != "body" {
		t.Fatalf("fields %s, want body", keys)
	}
	body := m["body"].(string)
	if body != RootCause(New(blockedRun(), "https://cg.example.com")) || !strings.Contains(body, "| `latency_p99` | fail |") {
		t.Errorf("note is not the root-cause report naming latency_p99:\n%s", body)
	}
	if s.Endpoint() != rc.url("/api/v4/projects/group%2Fsub.team%2Fmy-project/merge_requests/12/notes") {
		t.Errorf("endpoint shown as %q", s.Endpoint())
	}

	// A numeric project id, and the token as a bearer token.
	rc = newURIReceiver(t, nil)
	s, err = NewGitLab("", rc.url("/api/v4/"), MergeRequest{Project: "4711", IID: 3}, testToken, true, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Deliver(context.Background(), New(blockedRun(), "")); d.Err != nil {
		t.Fatal(d.Err)
	}
	if got := rc.uri(t); got != "POST /api/v4/projects/4711/merge_requests/3/notes" {
		t.Errorf("request %q", got)
	}
	if r := rc.requests()[0]; r.Header.Get("Authorization") != "Bearer "+testToken || r.Header.Get("Private-Token") != "" {
		t.Errorf("bearer: Authorization %q, PRIVATE-TOKEN %q", r.Header.Get("Authorization"), r.Header.Get("Private-Token"))
	}
}

// TestGitHubCommentRequestMatchesTheIssuesAPI checks the request against
// GitHub's "Create an issue comment": POST
// /repos/{owner}/{repo}/issues/{issue_number}/comments with a bearer
// token, the GitHub media type, the API version and {"body": markdown}.
func TestGitHubCommentRequestMatchesTheIssuesAPI(t *testing.T) {
	rc := newURIReceiver(t, nil)
	pr, err := ParsePullRequest("chaosgate/chaos.gate-web#42")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewGitHub("", rc.url("/api/v3"), pr, testToken, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Deliver(context.Background(), New(blockedRun(), "https://cg.example.com"))
	if d.Err != nil || d.Attempts != 1 || d.String() != "notified github (1 attempt)" {
		t.Fatalf("delivery %+v", d)
	}
	if got, want := rc.uri(t), "POST /api/v3/repos/chaosgate/chaos.gate-web/issues/42/comments"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	r := rc.requests()[0]
	for k, want := range map[string]string{"Authorization": "Bearer " + testToken, "Accept": "application/vnd.github+json",
		"X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	m, keys := jsonKeys(t, r.Body)
	if keys != "body" {
		t.Fatalf("fields %s, want body", keys)
	}
	if body := m["body"].(string); !strings.Contains(body, "| `latency_p99` | fail |") || !strings.Contains(body, "https://cg.example.com/explorer/entries/17") {
		t.Errorf("comment does not name latency_p99 and link the ledger entry:\n%s", body)
	}
}

// TestJiraIssueRequestV2AndV3 checks "Create issue" in both API
// versions: POST /rest/api/{2,3}/issue, fields project.key, summary,
// description (wiki markup in v2, an ADF document in v3), issuetype.name
// and labels; Basic email:token for Cloud, Bearer for a Data Center PAT.
func TestJiraIssueRequestV2AndV3(t *testing.T) {
	for _, tc := range []struct {
		api        int
		user, auth string
	}{
		{2, "", "Bearer " + testToken},
		{3, testJiraUser, "Basic " + base64.StdEncoding.EncodeToString([]byte(testJiraUser+":"+testToken))},
	} {
		t.Run(fmt.Sprintf("v%d", tc.api), func(t *testing.T) {
			rc := newURIReceiver(t, nil)
			s, err := NewJira("", JiraIssue{URL: rc.url("/jira"), Project: "OPS", Labels: []string{"team-payments"}, APIVersion: tc.api, User: tc.user}, testToken, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if d := s.Deliver(context.Background(), New(blockedRun(), "https://cg.example.com")); d.Err != nil || d.Attempts != 1 {
				t.Fatalf("delivery %+v", d)
			}
			if got, want := rc.uri(t), fmt.Sprintf("POST /jira/rest/api/%d/issue", tc.api); got != want {
				t.Errorf("request %q, want %q", got, want)
			}
			r := rc.requests()[0]
			if got := r.Header.Get("Authorization"); got != tc.auth {
				t.Errorf("Authorization %q, want %q", got, tc.auth)
			}
			if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
				t.Errorf("Content-Type %q, Accept %q", r.Header.Get("Content-Type"), r.Header.Get("Accept"))
			}
			m, keys := jsonKeys(t, r.Body)
			if keys != "fields" {
				t.Fatalf("top-level fields %s, want fields", keys)
			}
			f := m["fields"].(map[string]any)
			_, fkeys := jsonKeys(t, mustJSON(t, f))
			if fkeys != "description,issuetype,labels,project,summary" {
				t.Errorf("fields %s", fkeys)
			}
			if f["project"].(map[string]any)["key"] != "OPS" || f["issuetype"].(map[string]any)["name"] != "Bug" {
				t.Errorf("project %v, issuetype %v", f["project"], f["issuetype"])
			}
			if got := fmt.Sprint(f["labels"]); got != "[chaosgate chaosgate-block team-payments]" {
				t.Errorf("labels %s", got)
			}
			if got := f["summary"].(string); got != "chaosgate blocked: revision local:defect-slow-path (default-gameday-quick): latency_p99, error_rate failed" {
				t.Errorf("summary %q", got)
			}
			switch tc.api {
			case 2:
				desc, ok := f["description"].(string)
				if !ok || !strings.Contains(desc, "|{{latency\\_p99}}|fail|") || !strings.Contains(desc, "h2. ") ||
					!strings.Contains(desc, "[17|https://cg.example.com/explorer/entries/17]") {
					t.Errorf("v2 description is not the wiki-markup report:\n%v", f["description"])
				}
			case 3:
				doc, ok := f["description"].(map[string]any)
				if !ok || doc["type"] != "doc" || doc["version"] != float64(1) || !strings.Contains(string(mustJSON(t, doc)), `{"marks":[{"type":"code"}],"text":"latency_p99","type":"text"}`) {
					t.Errorf("v3 description is not an ADF document naming latency_p99: %s", mustJSON(t, f["description"]))
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgeSinks builds each kind of new sink against url.
func forgeSinks(t *testing.T, url string, o Options) map[string]*HTTPSink {
	t.Helper()
	gl, err := NewGitLab("", url, MergeRequest{Project: "g/p", IID: 1}, testToken, false, o)
	if err != nil {
		t.Fatal(err)
	}
	gh, err := NewGitHub("", url, PullRequest{Owner: "o", Repo: "r", Number: 1}, testToken, o)
	if err != nil {
		t.Fatal(err)
	}
	jc, err := NewJira("", JiraIssue{URL: url, Project: "OPS", APIVersion: 3, User: testJiraUser}, testToken, o)
	if err != nil {
		t.Fatal(err)
	}
	jd, err := NewJira("jira-dc", JiraIssue{URL: url, Project: "OPS", APIVersion: 2}, testToken, o)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*HTTPSink{"gitlab": gl, "github": gh, "jira": jc, "jira-dc": jd}
}

// TestForgeSinksRetryThenDeadLetterWithoutTheToken: on the shared
// delivery path every new sink retries 5xx and 429 (Retry-After
// honoured), stops at another 4xx, dead-letters what it could not
// deliver, and never shows its token — not in the error, not in the dead
// letter, not even when the receiver echoes it back.
func TestForgeSinksRetryThenDeadLetterWithoutTheToken(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(testJiraUser + ":" + testToken))
	for _, tc := range []struct {
		name     string
		respond  func(n int, w http.ResponseWriter, r *http.Request)
		attempts int
		ok, perm bool
	}{
		{"5xx then 429 then created", func(n int, w http.ResponseWriter, r *http.Request) {
			switch n {
			case 1:
				http.Error(w, "bad gateway", http.StatusBadGateway)
			case 2:
				w.Header().Set("Retry-After", "0")
				http.Error(w, "slow down", http.StatusTooManyRequests)
			default:
				w.WriteHeader(http.StatusCreated)
			}
		}, 3, true, false},
		{"always 503", func(n int, w http.ResponseWriter, r *http.Request) {
			// The receiver echoes the credentials it got.
			http.Error(w, "down; you sent "+r.Header.Get("Authorization")+r.Header.Get("Private-Token"), http.StatusServiceUnavailable)
		}, 4, false, false},
		{"401 is final", func(n int, w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"message":"Bad credentials: `+r.Header.Get("Authorization")+r.Header.Get("Private-Token")+`"}`, http.StatusUnauthorized)
		}, 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for kind := range forgeSinks(t, "http://127.0.0.1:1", Options{}) {
				dir := t.TempDir()
				rc := newReceiver(t, tc.respond)
				s := forgeSinks(t, rc.url("/api"), Options{DeadLetters: NewDeadLetters(dir)})[kind]
				waits := recordSleeps(s)
				d := s.Deliver(context.Background(), New(blockedRun(), ""))
				if d.Attempts != tc.attempts || len(rc.requests()) != tc.attempts || (d.Err == nil) != tc.ok {
					t.Fatalf("%s: %d attempts (%d requests), err %v; want %d attempts, ok %v", kind, d.Attempts, len(rc.requests()), d.Err, tc.attempts, tc.ok)
				}
				if tc.ok {
					if _, err := os.Stat(filepath.Join(dir, "notify", "dead-letter.jsonl")); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s: delivered, yet a dead letter: %v", kind, err)
					}
					if w := waits(); len(w) != 2 || w[1] != 0 {
						t.Errorf("%s: waits %v, want a backoff then Retry-After 0", kind, w)
					}
					continue
				}
				var de *DeliveryError
				if !errors.As(d.Err, &de) || de.Permanent != tc.perm || de.DeadLetter == "" {
					t.Fatalf("%s: error %#v", kind, d.Err)
				}
				raw, err := os.ReadFile(de.DeadLetter)
				if err != nil {
					t.Fatal(err)
				}
				msg := d.Err.Error()
				t.Logf("%s: %s", kind, msg)
				for _, secret := range []string{testToken, basic} {
					if strings.Contains(msg, secret) || strings.Contains(string(raw), secret) {
						t.Errorf("%s: the token leaked:\nerror: %s\ndead letter: %s", kind, msg, raw)
					}
				}
				sc := bufio.NewScanner(strings.NewReader(string(raw)))
				sc.Buffer(nil, 1<<20)
				var lines int
				for sc.Scan() {
					var dl DeadLetter
					if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
						t.Fatal(err)
					}
					lines++
					if dl.Sink != s.Name() || dl.Attempts != tc.attempts || dl.Endpoint != s.Endpoint() || dl.Notification.RunID != blockedRun().Report.RunID {
						t.Errorf("%s: dead letter %+v", kind, dl)
					}
				}
				if lines != 1 {
					t.Errorf("%s: %d dead letters", kind, lines)
				}
			}
		})
	}
}

// TestGitHubRateLimit403IsWaitedOut: GitHub answers a rate limit with
// 403 (or 429) and Retry-After or X-RateLimit-Remaining: 0; any other 403
// is final.
func TestGitHubRateLimit403IsWaitedOut(t *testing.T) {
	reset := time.Now().Add(3 * time.Second).Unix()
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "7")
			http.Error(w, "secondary rate limit", http.StatusForbidden)
		case 2:
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", fmt.Sprint(reset))
			http.Error(w, "API rate limit exceeded", http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	})
	s := forgeSinks(t, rc.url(""), Options{})["github"]
	waits := recordSleeps(s)
	d := s.Deliver(context.Background(), New(blockedRun(), ""))
	w := waits()
	if d.Err != nil || d.Attempts != 3 || len(w) != 2 || w[0] != 7*time.Second || w[1] <= 0 || w[1] > 4*time.Second {
		t.Fatalf("delivery %+v, waits %v: want the Retry-After 7s, then until the reset", d, w)
	}
	rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Resource not accessible by integration", http.StatusForbidden)
	})
	s = forgeSinks(t, rc.url(""), Options{})["github"]
	recordSleeps(s)
	if d := s.Deliver(context.Background(), New(blockedRun(), "")); d.Err == nil || d.Attempts != 1 {
		t.Fatalf("a plain 403 was retried: %+v", d)
	}
}

func TestParseMergeRequestAndPullRequest(t *testing.T) {
	for in, want := range map[string]MergeRequest{
		"group/project!12": {Project: "group/project", IID: 12},
		" 4711!3 ":         {Project: "4711", IID: 3},
		"a/b.c/d-e_f!1":    {Project: "a/b.c/d-e_f", IID: 1},
		"https://gitlab.example.com/group/sub/proj/-/merge_requests/12": {APIURL: "https://gitlab.example.com/api/v4", Project: "group/sub/proj", IID: 12},
		"https://gitlab.com/g/p/-/merge_requests/7/diffs#note_1":        {APIURL: "https://gitlab.com/api/v4", Project: "g/p", IID: 7},
		"http://127.0.0.1:8929/g/p/merge_requests/5":                    {APIURL: "http://127.0.0.1:8929/api/v4", Project: "g/p", IID: 5},
	} {
		got, err := ParseMergeRequest(in)
		if err != nil || got != want {
			t.Errorf("ParseMergeRequest(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                       "empty merge request",
		"group/project":          "want a merge request URL or PROJECT!IID",
		"group/project!0":        "want a positive number",
		"group/project!12a":      "want a positive number",
		"!12":                    "no project",
		"group//project!1":       "empty or invalid segment",
		"group/../x!1":           "empty or invalid segment",
		"gr oup/p!1":             `' ' is not allowed`,
		"https://gitlab.com/g/p": "not a merge request URL",
		"ftp://gitlab.com/g/p/-/merge_requests/1": "not an http or https URL",
	} {
		if _, err := ParseMergeRequest(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMergeRequest(%q): %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]PullRequest{
		"chaosgate/chaosgate#42":                   {Owner: "chaosgate", Repo: "chaosgate", Number: 42},
		"https://github.com/o/r.js/pull/7/files":   {APIURL: DefaultGitHubAPI, Owner: "o", Repo: "r.js", Number: 7},
		"https://ghe.example.com/team/repo/pull/9": {APIURL: "https://ghe.example.com/api/v3", Owner: "team", Repo: "repo", Number: 9},
	} {
		got, err := ParsePullRequest(in)
		if err != nil || got != want {
			t.Errorf("ParsePullRequest(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"o/r":                             "want owner/repo#N",
		"o#3":                             "want owner/repo#N",
		"o/r#-1":                          "want a positive number",
		"o/r/x#1":                         `'/' is not allowed`,
		"o/..#1":                          "invalid",
		"https://github.com/o/r/issues/1": "not a pull request URL",
	} {
		if _, err := ParsePullRequest(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePullRequest(%q): %v, want %q", in, err, want)
		}
	}
}

func writeToken(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildForgeSinksFromCI: "ci" takes the merge request or pull request
// from the CI variables the services document; outside such a run the
// sink is left out with a note, not an error.
func TestBuildForgeSinksFromCI(t *testing.T) {
	dir := t.TempDir()
	d, err := Build(Config{GitLab: GitLabConfig{MergeRequest: "ci"}, GitHub: GitHubConfig{PullRequest: "ci"}}, dir, "v1", env(map[string]string{
		"CI_MERGE_REQUEST_IID": "12", "CI_MERGE_REQUEST_PROJECT_ID": "4711", "CI_PROJECT_ID": "99", "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
		"GITLAB_TOKEN": testToken, "GITHUB_TOKEN": testToken, "GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/pull/42/merge",
		"GITHUB_API_URL": "https://ghe.example.com/api/v3"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Sinks) != 2 || len(d.Notes) != 0 {
		t.Fatalf("sinks %d, notes %v", len(d.Sinks), d.Notes)
	}
	if got := d.Sinks[0].(*HTTPSink).Endpoint(); got != "https://gitlab.example.com/api/v4/projects/4711/merge_requests/12/notes" {
		t.Errorf("GitLab from CI: %s", got)
	}
	if got := d.Sinks[1].(*HTTPSink).Endpoint(); got != "https://ghe.example.com/api/v3/repos/o/r/issues/42/comments" {
		t.Errorf("GitHub from CI: %s", got)
	}

	// pull_request_target: the number is in the event payload.
	ev := filepath.Join(t.TempDir(), "event.json")
	os.WriteFile(ev, []byte(`{"action": "opened", "number": 8, "pull_request": {"number": 8, "title": "x"}}`), 0o600)
	d, err = Build(Config{GitHub: GitHubConfig{PullRequest: "CI"}}, dir, "v1", env(map[string]string{
		"GITHUB_TOKEN": testToken, "GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_PATH": ev}))
	if err != nil || len(d.Sinks) != 1 || d.Sinks[0].(*HTTPSink).Endpoint() != "https://api.github.com/repos/o/r/issues/8/comments" {
		t.Fatalf("from the event payload: %+v %v", d, err)
	}

	// Not a merge-request pipeline, not a pull request: notes, no sinks.
	os.WriteFile(ev, []byte(`{"ref": "refs/heads/main"}`), 0o600)
	d, err = Build(Config{GitLab: GitLabConfig{MergeRequest: "ci"}, GitHub: GitHubConfig{PullRequest: "ci"}}, dir, "v1", env(map[string]string{
		"CI_PROJECT_ID": "99", "GITLAB_TOKEN": testToken, "GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_PATH": ev}))
	if err != nil || d == nil || len(d.Sinks) != 0 || len(d.Notes) != 2 ||
		!strings.Contains(d.Notes[0], "CI_MERGE_REQUEST_IID is not set") || !strings.Contains(d.Notes[1], "not for a pull request") {
		t.Fatalf("outside a merge request / pull request: %+v %v", d, err)
	}
	if d.Wants("block") {
		t.Errorf("a dispatcher without sinks wants a block")
	}
}

// TestBuildForgeSettingErrors: each mistake names its setting, and a
// token is never in the message.
func TestBuildForgeSettingErrors(t *testing.T) {
	open := writeToken(t, 0o644)
	good := writeToken(t, 0o600)
	for _, tc := range []struct {
		name    string
		c       Config
		env     map[string]string
		setting string
		want    string
	}{
		{"merge request", Config{GitLab: GitLabConfig{MergeRequest: "project"}}, nil, "gitlab.merge_request", "PROJECT!IID"},
		{"gitlab without merge request", Config{GitLab: GitLabConfig{TokenFile: good}}, nil, "gitlab.merge_request", "need a merge request"},
		{"gitlab auth", Config{GitLab: GitLabConfig{MergeRequest: "g/p!1", Auth: "basic"}}, nil, "gitlab.auth", "private-token or bearer"},
		{"gitlab no token", Config{GitLab: GitLabConfig{MergeRequest: "g/p!1"}}, nil, "gitlab.token_file", "set GITLAB_TOKEN"},
		{"gitlab token readable by others", Config{GitLab: GitLabConfig{MergeRequest: "g/p!1", TokenFile: open}}, nil, "gitlab.token_file", "chmod 600"},
		{"gitlab api url", Config{GitLab: GitLabConfig{MergeRequest: "g/p!1", APIURL: "gitlab.example.com"}}, map[string]string{"GITLAB_TOKEN": testToken}, "gitlab.api_url", "not an http or https URL"},
		{"pull request", Config{GitHub: GitHubConfig{PullRequest: "o/r"}}, nil, "github.pull_request", "owner/repo#N"},
		{"github no token", Config{GitHub: GitHubConfig{PullRequest: "o/r#1"}}, nil, "github.token_file", "set GITHUB_TOKEN"},
		{"jira project", Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "ops"}}, nil, "jira.project", "uppercase"},
		{"jira url", Config{Jira: JiraConfig{Project: "OPS"}}, nil, "jira.url", "site's URL"},
		{"jira without project", Config{Jira: JiraConfig{URL: "https://j.example.com"}}, nil, "jira.project", "project key"},
		{"jira api", Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "OPS", API: "4"}}, nil, "jira.api", "want 2"},
		{"jira label", Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "OPS", Labels: []string{"two words"}}}, nil, "jira.labels", "white space"},
		{"jira no token", Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "OPS"}}, nil, "jira.token_file", "CHAOSGATE_NOTIFY_JIRA_TOKEN"},
		{"jira token with a space", Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "OPS"}}, map[string]string{"CHAOSGATE_NOTIFY_JIRA_TOKEN": "a b"}, "jira", "white space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.c, t.TempDir(), "v1", env(tc.env))
			var se *SettingError
			if !errors.As(err, &se) || se.Setting != tc.setting || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want setting %s with %q", err, tc.setting, tc.want)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("the token is in the error: %v", err)
			}
		})
	}
	// The defaults: API 3 with a Cloud user, 2 without; gitlab.com and
	// api.github.com without an API URL.
	d, err := Build(Config{Jira: JiraConfig{URL: "https://j.example.com/", Project: "OPS", User: testJiraUser, TokenFile: good},
		GitLab: GitLabConfig{MergeRequest: "g/p!1", TokenFile: good}, GitHub: GitHubConfig{PullRequest: "o/r#1", TokenFile: good}}, t.TempDir(), "v1", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range d.Sinks {
		got = append(got, s.Name()+" "+s.(*HTTPSink).Endpoint())
	}
	if want := "gitlab https://gitlab.com/api/v4/projects/g%2Fp/merge_requests/1/notes,github https://api.github.com/repos/o/r/issues/1/comments,jira https://j.example.com/rest/api/3/issue"; strings.Join(got, ",") != want {
		t.Errorf("sinks %s\nwant  %s", strings.Join(got, ","), want)
	}
	d, err = Build(Config{Jira: JiraConfig{URL: "https://j.example.com", Project: "OPS", TokenFile: good}}, t.TempDir(), "v1", env(nil))
	if err != nil || d.Sinks[0].(*HTTPSink).Endpoint() != "https://j.example.com/rest/api/2/issue" {
		t.Fatalf("Data Center default: %+v %v", d, err)
	}
}
