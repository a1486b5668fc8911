package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
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
