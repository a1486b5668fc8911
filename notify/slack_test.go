package notify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// slackBody is Slack's incoming-webhook payload, decoded strictly.
type slackBody struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type  string `json:"type"`
			Text  string `json:"text"`
			Emoji bool   `json:"emoji"`
		} `json:"text"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

// checkSlackBody checks body against Slack's documented incoming-webhook
// format: a text fallback, and blocks of the types header (plain_text, at
// most 150 characters), section (text of at most 3000) and context (1 to
// 10 text elements).
func checkSlackBody(t *testing.T, body []byte) slackBody {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	var m slackBody
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("Slack body: %v\n%s", err, body)
	}
	if strings.TrimSpace(m.Text) == "" {
		t.Errorf("no text fallback")
	}
	if len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		t.Fatalf("%d blocks", len(m.Blocks))
	}
	var types []string
	for i, b := range m.Blocks {
		types = append(types, b.Type)
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" || b.Text.Text == "" {
				t.Errorf("block %d: header without plain_text: %+v", i, b.Text)
			} else if n := len(utf16.Encode([]rune(b.Text.Text))); n > 150 {
				t.Errorf("block %d: header text of %d characters, Slack takes 150", i, n)
			}
			if len(b.Elements) != 0 {
				t.Errorf("block %d: header with elements", i)
			}
		case "section":
			if b.Text == nil || (b.Text.Type != "mrkdwn" && b.Text.Type != "plain_text") || b.Text.Text == "" {
				t.Errorf("block %d: section without text: %+v", i, b.Text)
			} else if n := len(utf16.Encode([]rune(b.Text.Text))); n > 3000 {
				t.Errorf("block %d: section text of %d characters, Slack takes 3000", i, n)
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				t.Errorf("block %d: context with %d elements", i, len(b.Elements))
			}
			for _, e := range b.Elements {
				if (e.Type != "mrkdwn" && e.Type != "plain_text") || e.Text == "" {
					t.Errorf("block %d: context element %+v", i, e)
				}
			}
			if b.Text != nil {
				t.Errorf("block %d: context with text", i)
			}
		default:
			t.Errorf("block %d: type %q, want header, section or context", i, b.Type)
		}
	}
	if strings.Join(types, ",") != "header,section,context" {
		t.Errorf("blocks %v, want header, section, context", types)
	}
	return m
}

func TestSlackRequestMatchesIncomingWebhookFormat(t *testing.T) {
	rc := newReceiver(t, nil)
	s, err := NewSlack("", rc.url("/services/T000/B000/XXXXSECRET"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Deliver(context.Background(), New(sampleRun("block"), "https://cg.example.com"))
	if d.Err != nil || d.Attempts != 1 || d.String() != "notified slack (1 attempt)" {
		t.Fatalf("delivery %+v", d)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if r.Header.Get("X-Chaosgate-Signature") != "" {
		t.Errorf("Slack requests are not signed")
	}
	m := checkSlackBody(t, r.Body)
	head := m.Blocks[0].Text.Text
	if !strings.Contains(head, "BLOCK") || !strings.Contains(head, "local:defect-slow-path") {
		t.Errorf("header %q lacks the verdict or the revision", head)
	}
	sec := m.Blocks[1].Text.Text
	if !strings.Contains(sec, "latency_p99 fails") || !strings.Contains(sec, "`latency_p99`") {
		t.Errorf("section %q lacks the reason or the failing dimension", sec)
	}
	ctx := m.Blocks[2].Elements[0].Text
	if ctx != "Run <https://cg.example.com/runs/cli-20260101-000000-abcd|cli-20260101-000000-abcd>" {
		t.Errorf("context %q lacks the run link", ctx)
	}
	if !strings.Contains(m.Text, "BLOCK") {
		t.Errorf("text %q", m.Text)
	}
}

func TestSlackTruncatesAndEscapes(t *testing.T) {
	r := sampleRun("hold")
	r.Report.Revision = strings.Repeat("é𝄞", 200) // 600 UTF-16 units
	r.Reason = "<!channel> p99 > 50ms & rising"
	r.Failing = []string{"a<b>"}
	body, err := encodeSlack(New(r, ""))
	if err != nil {
		t.Fatal(err)
	}
	m := checkSlackBody(t, body)
	if h := m.Blocks[0].Text.Text; !strings.HasSuffix(h, "…") || !utf8.ValidString(h) {
		t.Errorf("long header %q not cut with an ellipsis", h)
	}
	sec := m.Blocks[1].Text.Text
	if strings.Contains(sec, "<!channel>") || !strings.Contains(sec, "&lt;!channel&gt; p99 &gt; 50ms &amp; rising") || !strings.Contains(sec, "`a&lt;b&gt;`") {
		t.Errorf("section not escaped: %.200s", sec)
	}
	if strings.Contains(m.Text, "<!channel>") {
		t.Errorf("text not escaped: %.200s", m.Text)
	}
	if ctx := m.Blocks[2].Elements[0].Text; ctx != "Run `cli-20260101-000000-abcd`" {
		t.Errorf("context without a dashboard: %q", ctx)
	}
	// A reason longer than a section takes is cut, not refused.
	r.Reason = strings.Repeat("x", 5000)
	body, err = encodeSlack(New(r, ""))
	if err != nil {
		t.Fatal(err)
	}
	if sec := checkSlackBody(t, body).Blocks[1].Text.Text; !strings.HasSuffix(sec, "…") {
		t.Errorf("long section not cut: %.100s", sec)
	}
}

func TestSlackURLNeverShown(t *testing.T) {
	const secretPath = "/services/T0SECRET/B0SECRET/abcdefSECRETtoken"
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		url  string
	}{
		{"refused by the receiver", newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			// A receiver that echoes the request path in its answer.
			http.Error(w, "no_service "+r.URL.Path, http.StatusNotFound)
		}).url(secretPath)},
		{"receiver down", deadURL(t, secretPath)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSlack("", tc.url, Options{DeadLetters: NewDeadLetters(data), Policy: Policy{Attempts: 2, Initial: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(s.Endpoint(), "SECRET") {
				t.Errorf("endpoint %q", s.Endpoint())
			}
			d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
			var de *DeliveryError
			if !errors.As(d.Err, &de) || de.DeadLetter == "" {
				t.Fatalf("delivery %+v", d)
			}
			if strings.Contains(d.Err.Error(), "SECRET") {
				t.Errorf("error shows the Slack URL: %v", d.Err)
			}
			host := strings.Split(strings.TrimPrefix(tc.url, "http://"), "/")[0]
			if !strings.Contains(d.Err.Error(), "(POST http://"+host+"/…: ") {
				t.Errorf("error %v does not name the (redacted) endpoint", d.Err)
			}
			raw, _ := os.ReadFile(de.DeadLetter)
			if strings.Contains(string(raw), "SECRET") {
				t.Errorf("dead letter shows the Slack URL:\n%s", raw)
			}
		})
	}
	for _, bad := range []string{"hooks.slack.com/services/SECRET", "https://", "ftp://x/SECRET", "http://[::1/SECRET"} {
		if _, err := NewSlack("", bad, Options{}); err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("NewSlack(%q): %v", bad, err)
		}
	}
}
