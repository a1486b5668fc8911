package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NewSlack is a Slack-compatible incoming-webhook sink: it posts
// {"text": ..., "blocks": [header, section, context]} (Slack's incoming
// webhook format, which Mattermost and Rocket.Chat also read) to rawURL.
// The URL is itself a secret: errors and dead letters show its scheme and
// host only. Retries and dead letters are those of every HTTPSink.
func NewSlack(name, rawURL string, o Options) (*HTTPSink, error) {
	u, err := ParseEndpoint(rawURL)
	if err != nil {
		return nil, fmt.Errorf("slack webhook URL: %w", err)
	}
	if name == "" {
		name = "slack"
	}
	return newHTTPSink(name, u, secretURL(u), encodeSlack, o), nil
}

// Limits of Slack's Block Kit, in characters.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackContextMax = 300 // well under Slack's limit: a line of small print
	slackTextMax    = 1000
)

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type  string `json:"type"` // plain_text | mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// verdictMark is the verdict's symbol, as on the dashboard.
func verdictMark(v string) string {
	switch v {
	case "promote":
		return "✓"
	case "hold":
		return "?"
	case "block":
		return "✗"
	}
	return "•"
}

// encodeSlack is the Slack body of n.
func encodeSlack(n Notification) ([]byte, error) {
	verdict := strings.ToUpper(n.Verdict)
	rev := n.Revision
	if rev == "" {
		rev = "(none)"
	}
	header := fmt.Sprintf("%s %s: revision %s", verdictMark(n.Verdict), verdict, rev)
	reason := n.Reason
	if reason == "" {
		reason = "(none given)"
	}
	failing := "none"
	if len(n.Failing) > 0 {
		q := make([]string, len(n.Failing))
		for i, f := range n.Failing {
			q[i] = "`" + slackEscape(f) + "`"
		}
		failing = strings.Join(q, ", ")
	}
	section := "*Reason:* " + slackEscape(reason) + "\n*Failing dimensions:* " + failing
	run := "Run `" + slackEscape(n.RunID) + "`"
	if l := n.Links.Run; l != "" && !strings.ContainsAny(l, "|<> ") {
		run = "Run <" + slackEscape(l) + "|" + slackEscape(n.RunID) + ">"
	}
	ctx := []slackText{{Type: "mrkdwn", Text: truncate(run, slackContextMax)}}
	if n.Scenario != "" {
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: truncate("Scenario "+slackEscape(n.Scenario), slackContextMax)})
	}
	if !n.Time.IsZero() {
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: n.Time.UTC().Format("2006-01-02 15:04:05 UTC")})
	}
	text := fmt.Sprintf("chaosgate: %s for revision %s", verdict, slackEscape(rev))
	if n.Scenario != "" {
		text += " (" + slackEscape(n.Scenario) + ")"
	}
	text += ": " + slackEscape(reason)
	msg := slackMessage{
		Text: truncate(text, slackTextMax),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(header, slackHeaderMax), Emoji: true}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(section, slackSectionMax)}},
			{Type: "context", Elements: ctx},
		},
	}
	return json.Marshal(msg)
}

// slackEscape escapes the three characters Slack's text formatting
// reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most max characters, counted as UTF-16 code units
// as Slack counts them, ending it with "…" when cut. Invalid UTF-8 becomes
// U+FFFD.
func truncate(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	units := 0
	for _, r := range s {
		units += utf16Len(r)
	}
	if units <= max {
		return s
	}
	var b strings.Builder
	units = 0
	for _, r := range s {
		if units+utf16Len(r) > max-1 {
			break
		}
		b.WriteRune(r)
		units += utf16Len(r)
	}
	return b.String() + "…"
}

func utf16Len(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}
