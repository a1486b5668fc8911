package notify

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/chaosgate/chaosgate/decision"
)

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"", "all", "block,hold", "promote", " HOLD , block ", "block,", ",", "never", "all,block"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWhen(s)
		if err != nil {
			if strings.Contains(err.Error(), s) && len(s) > 41 {
				t.Fatalf("error quotes the whole input: %v", err)
			}
			return
		}
		if w == 0 || w&^WhenAll != 0 {
			t.Fatalf("ParseWhen(%q) = %b", s, w)
		}
		back, err := ParseWhen(w.String())
		if err != nil || back != w {
			t.Fatalf("ParseWhen(%q) = %v, which reads back as %v, %v", s, w, back, err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "120", " 5 ", "-1", "1.5", "99999999999999999999999", "Thu, 01 Jan 2026 12:00:30 GMT",
		"Wed, 31 Dec 2025 12:00:00 GMT", "Thursday, 01-Jan-26 12:00:30 GMT", "Thu Jan  1 12:00:30 2026", "soon"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if !ok {
			if d != 0 {
				t.Fatalf("not ok with a wait %v", d)
			}
			return
		}
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v", s, d)
		}
	})
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:8080/h?token=t#f", "http://u:p@h/x", "ftp://h",
		"http://", "//h/x", "h/x", "http://[::1]:9/x", "http://%zz/", "https://h:99999/x", " http://h "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseEndpoint(s)
		if err != nil {
			// Fixed messages only: an error never quotes the URL.
			switch err.Error() {
			case "empty URL", "not a valid URL", "not an http or https URL", "the URL has no host", "not an absolute http or https URL":
			default:
				t.Fatalf("error %q", err)
			}
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("accepted %q as %#v", s, u)
		}
		pub, sec := publicURL(u), secretURL(u)
		if p, _ := u.User.Password(); p != "" && (strings.Contains(pub, "@") || strings.Contains(sec, "@"+u.Host)) {
			t.Fatalf("credentials shown: %q %q", pub, sec)
		}
		if u.RawQuery != "" && strings.Contains(pub, "?"+u.RawQuery) {
			t.Fatalf("query shown: %q", pub)
		}
		if sec != u.Scheme+"://"+u.Host+"/…" {
			t.Fatalf("secret URL shown as %q", sec)
		}
	})
}

// FuzzSlackPayload: whatever the run's strings, the Slack body is JSON in
// the documented shape with its text within Slack's limits.
func FuzzSlackPayload(f *testing.F) {
	f.Add("block", "sha256:abc", "latency_p99 fails", "latency_p99", "run-1", "default")
	f.Add("hold", strings.Repeat("𝄞", 100), "<!here> & <@U1>", "a<b", "r|x>", "")
	f.Add("", "", "", "", "", "\xff\xfe")
	f.Fuzz(func(t *testing.T, verdict, revision, reason, dim, runID, scenario string) {
		r := sampleRun("block")
		r.Report.Verdict, r.Report.Revision, r.Report.RunID = verdict, revision, runID
		r.Reason, r.Failing, r.Scenario = reason, []string{dim}, scenario
		body, err := encodeSlack(New(r, "https://cg.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		var m slackMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if m.Text == "" || len(m.Blocks) != 3 || m.Blocks[0].Type != "header" || m.Blocks[1].Type != "section" || m.Blocks[2].Type != "context" {
			t.Fatalf("shape: %s", body)
		}
		if n := len(utf16.Encode([]rune(m.Blocks[0].Text.Text))); n > slackHeaderMax || m.Blocks[0].Text.Type != "plain_text" {
			t.Fatalf("header of %d characters", n)
		}
		if n := len(utf16.Encode([]rune(m.Blocks[1].Text.Text))); n > slackSectionMax {
			t.Fatalf("section of %d characters", n)
		}
		for _, s := range []string{m.Text, m.Blocks[1].Text.Text} {
			if strings.ContainsAny(s, "<>") {
				t.Fatalf("unescaped text: %q", s)
			}
		}
	})
}

// FuzzParseMergeRequest: whatever the input, no panic; what is accepted
// is a valid project and IID that read back the same from PROJECT!IID;
// an error quotes at most a short part of the input.
func FuzzParseMergeRequest(f *testing.F) {
	for _, s := range []string{"group/project!12", "4711!3", "https://gitlab.example.com/g/s/p/-/merge_requests/12", "https://gitlab.com/g/p/merge_requests/7/diffs",
		"g/p!0", "!1", "g//p!1", "g/p!99999999999", "ci", "https://h/-/merge_requests/1", "a!b!3", "g/p!1\n", "https://h/g/p/-/merge_requests/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMergeRequest(s)
		if err != nil {
			if len(s) > 100 && strings.Contains(err.Error(), s) {
				t.Fatalf("error quotes the whole input: %v", err)
			}
			return
		}
		if m.IID <= 0 || checkProjectPath(m.Project) != nil {
			t.Fatalf("accepted %q as %+v", s, m)
		}
		back, err := ParseMergeRequest(m.String())
		if err != nil || back.Project != m.Project || back.IID != m.IID {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, m, m.String(), back, err)
		}
		if m.APIURL != "" {
			if _, err := ParseEndpoint(m.APIURL); err != nil || !strings.HasSuffix(m.APIURL, "/api/v4") {
				t.Fatalf("API URL %q: %v", m.APIURL, err)
			}
		}
	})
}

// FuzzParsePullRequest: the same for owner/repo#N and pull request URLs.
func FuzzParsePullRequest(f *testing.F) {
	for _, s := range []string{"chaosgate/chaosgate#42", "https://github.com/o/r/pull/7", "https://ghe.example.com/o/r/pull/9/files", "o/r", "o/r#",
		"o/r#1#2", "/r#1", "o/..#1", "https://github.com/o/r/issues/1", "ci", "o/r#01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePullRequest(s)
		if err != nil {
			if len(s) > 100 && strings.Contains(err.Error(), s) {
				t.Fatalf("error quotes the whole input: %v", err)
			}
			return
		}
		if p.Number <= 0 || checkGitHubName(p.Owner, "owner", 39, false) != nil || checkGitHubName(p.Repo, "repository", 100, true) != nil {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		back, err := ParsePullRequest(p.String())
		if err != nil || back.Owner != p.Owner || back.Repo != p.Repo || back.Number != p.Number {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, p, p.String(), back, err)
		}
	})
}

// FuzzRootCause: whatever the run's strings, the markdown has the same
// lines and table cells as a benign report's (nothing from the run adds
// structure), the wiki markup the same lines, the ADF document is JSON
// without empty text nodes, and the Jira summary is one line of at most
// 255 characters.
func FuzzRootCause(f *testing.F) {
	f.Add("local:defect-slow-path", "default", "latency_p99 fails", "latency_p99", "n2", "cli-1", "z=9")
	f.Add(hostile, hostile, hostile, "a|b`c", "x\ny", "--><!--", "\\|")
	f.Add("", "", "", "", "", "", "")
	f.Add("\xff\xfe", "```", "\\", "|", "@here", "#1", "{{x}}")
	benign := blockedRun()
	wantMD := strings.Count(RootCause(New(benign, "https://cg.example.com")), "\n")
	wantWiki := strings.Count(renderWiki(rootCauseDoc(New(benign, "https://cg.example.com"))), "\n")
	f.Fuzz(func(t *testing.T, revision, scenario, reason, dim, target, runID, dimReason string) {
		r := blockedRun()
		r.Report.Revision, r.Scenario, r.Reason, r.Report.RunID = revision, scenario, reason, runID
		r.Report.Steps[1].Dimensions[0].Name = decision.Kind(dim)
		r.Report.Steps[1].Dimensions[0].Reason = dimReason
		r.Report.Steps[1].Dimensions[0].SigmaSource = dimReason
		r.Report.Faults[0].Target = target
		n := New(r, "https://cg.example.com")
		md := RootCause(n)
		if got := strings.Count(md, "\n"); got != wantMD {
			t.Fatalf("%d markdown lines, want %d:\n%s", got, wantMD, md)
		}
		checkMarkdownTables(t, md)
		if strings.Count(md, "<!--") != 1 || strings.Count(md, "-->") != 1 {
			t.Fatalf("the run opened or closed an HTML comment:\n%s", md)
		}
		doc := rootCauseDoc(n)
		if got := strings.Count(renderWiki(doc), "\n"); got != wantWiki {
			t.Fatalf("%d wiki lines, want %d", got, wantWiki)
		}
		body, err := encodeJira(JiraIssue{Project: "OPS", IssueType: "Bug", APIVersion: 3}, n)
		if err != nil || !json.Valid(body) || strings.Contains(string(body), `"text":""`) {
			t.Fatalf("ADF body %s: %v", body, err)
		}
		if s := RootCauseSummary(n); strings.ContainsAny(s, "\r\n") || len(utf16.Encode([]rune(s))) > 255 || !utf8.ValidString(s) {
			t.Fatalf("summary %q", s)
		}
	})
}

// FuzzPullRequestOfEvent: any payload gives a number in range or 0, or
// an error; never a panic.
func FuzzPullRequestOfEvent(f *testing.F) {
	for _, s := range []string{`{"pull_request": {"number": 8}}`, `{"number": 8}`, `{"pull_request": null}`, `{"pull_request": {"number": -1}}`,
		`{"pull_request": {"number": 1e3}}`, `{"pull_request": {"number": 99999999999}}`, `[`, ``, `{"pull_request": "x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := PullRequestOfEvent(strings.NewReader(string(data)))
		if err != nil && n != 0 || n < 0 || n > 1<<31-1 {
			t.Fatalf("PullRequestOfEvent(%q) = %d, %v", data, n, err)
		}
		if n > 0 {
			if _, perr := ParsePullRequest("o/r#" + strconv.Itoa(n)); perr != nil {
				t.Fatalf("number %d does not make a pull request: %v", n, perr)
			}
		}
	})
}
