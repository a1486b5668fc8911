// Package notify tells people how a run ended. A run's outcome becomes a
// chaosgate.notification/v1 document (docs/notification-v1.md) that is
// posted to generic webhooks (signed with HMAC-SHA256) and to
// Slack-compatible incoming webhooks; a run that did not promote is also
// explained by a markdown root-cause report (RootCause) posted as a
// GitLab merge-request note, a GitHub pull-request comment or a Jira
// issue. Deliveries are retried with
// exponential backoff and jitter; what cannot be delivered is appended to a
// dead-letter file under the data directory. A Dispatcher sends one
// notification to every sink at once within an overall deadline.
//
// A notification never changes a run's verdict or exit code: delivery
// errors are returned for the caller to report, nothing else.
//
// Secrets (the HMAC key, a Slack webhook URL, which is itself a secret)
// are never logged: errors name a webhook by its scheme, host and path
// only, and a Slack URL by its scheme and host.
package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/internal/textclip"
)

// Schema is the contract version written in every notification.
const Schema = "chaosgate.notification/v1"

// Notification is what a sink is told about one run.
type Notification struct {
	Schema   string `json:"schema"`
	RunID    string `json:"run_id"`
	Scenario string `json:"scenario"`
	Revision string `json:"revision"`
	// Verdict is promote, hold or block.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// Failing names the dimensions that failed at the deciding step
	// (never null; empty when none failed).
	Failing []string  `json:"failing_dimensions"`
	Time    time.Time `json:"time"`
	Links   Links     `json:"links"`
	// Report is the run's report/v1 (docs/report-v1.md).
	Report report.Report `json:"report"`
}

// Links point at the run in the dashboard, when its base URL is known.
type Links struct {
	// Run is the run's page, <dashboard>/runs/<run id>.
	Run string `json:"run,omitempty"`
	// Ledger is the block explorer's page of the run's evidence record,
	// <dashboard>/explorer/entries/<ledger index> (absent without
	// evidence).
	Ledger string `json:"ledger,omitempty"`
}

// Run is the outcome of a judged run, as the commands and serve know it.
type Run struct {
	Report   report.Report
	Scenario string
	// Reason and Failing default to the last step's reason and failed
	// dimensions when empty.
	Reason  string
	Failing []string
	Time    time.Time
}

// New builds the notification of r. dashboard is the dashboard's base URL
// ("" for none): the run's page is <dashboard>/runs/<run id>.
func New(r Run, dashboard string) Notification {
	n := Notification{Schema: Schema, RunID: r.Report.RunID, Scenario: r.Scenario, Revision: r.Report.Revision,
		Verdict: r.Report.Verdict, Reason: r.Reason, Failing: append([]string{}, r.Failing...), Time: r.Time.UTC(), Report: r.Report}
	if n.Report.Schema == "" {
		n.Report.Schema = report.Schema
	}
	if k := len(r.Report.Steps); k > 0 {
		last := r.Report.Steps[k-1]
		if n.Reason == "" {
			n.Reason = last.Reason
		}
		if len(n.Failing) == 0 {
			for _, d := range last.Dimensions {
				if d.Outcome == decision.Fail {
					n.Failing = append(n.Failing, string(d.Name))
				}
			}
		}
	}
	if dashboard != "" && n.RunID != "" {
		n.Links.Run = RunURL(dashboard, n.RunID)
	}
	if dashboard != "" && r.Report.Evidence != nil {
		n.Links.Ledger = LedgerURL(dashboard, r.Report.Evidence.LedgerIndex)
	}
	return n
}

// LedgerURL is the block explorer's page of ledger entry index under
// base (the dashboard's base URL).
func LedgerURL(base string, index uint64) string {
	return strings.TrimRight(base, "/") + "/explorer/entries/" + strconv.FormatUint(index, 10)
}

// RunURL is the dashboard page of run id under base.
func RunURL(base, id string) string {
	return strings.TrimRight(base, "/") + "/runs/" + url.PathEscape(id)
}

// When is the set of verdicts that notify.
type When uint8

// The verdicts a When may hold.
const (
	WhenPromote When = 1 << iota
	WhenHold
	WhenBlock

	// WhenAll notifies every verdict.
	WhenAll = WhenPromote | WhenHold | WhenBlock
	// DefaultWhen notifies runs that did not promote.
	DefaultWhen = WhenBlock | WhenHold
)

// ParseWhen parses a comma-separated list of verdicts ("block,hold"), or
// "all". The empty string is DefaultWhen.
func ParseWhen(s string) (When, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultWhen, nil
	}
	if strings.EqualFold(s, "all") {
		return WhenAll, nil
	}
	var w When
	for item := range strings.SplitSeq(s, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		switch item {
		case "promote":
			w |= WhenPromote
		case "hold":
			w |= WhenHold
		case "block":
			w |= WhenBlock
		case "":
			return 0, errors.New("empty verdict in the list: want block, hold, promote (comma-separated) or all")
		default:
			return 0, fmt.Errorf("unknown verdict %q: want block, hold, promote (comma-separated) or all", clip(item, 40))
		}
	}
	return w, nil
}

// Match reports whether a run with verdict notifies. A string that is not
// a verdict never does.
func (w When) Match(verdict string) bool {
	switch verdict {
	case "promote":
		return w&WhenPromote != 0
	case "hold":
		return w&WhenHold != 0
	case "block":
		return w&WhenBlock != 0
	}
	return false
}

// String is the canonical form ParseWhen reads back: "all", or the
// verdicts in the order block, hold, promote.
func (w When) String() string {
	if w&WhenAll == WhenAll {
		return "all"
	}
	var v []string
	for _, x := range []struct {
		bit  When
		name string
	}{{WhenBlock, "block"}, {WhenHold, "hold"}, {WhenPromote, "promote"}} {
		if w&x.bit != 0 {
			v = append(v, x.name)
		}
	}
	return strings.Join(v, ",")
}

// ParseEndpoint parses the URL of a webhook or of the dashboard: an
// absolute http or https URL with a host. The error never quotes the URL
// (a Slack webhook URL is a secret).
func ParseEndpoint(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("not an http or https URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("the URL has no host")
	}
	if u.Opaque != "" {
		return nil, errors.New("not an absolute http or https URL")
	}
	return u, nil
}

// publicURL is u as errors and dead letters show a generic webhook:
// scheme, host and path, without credentials, query or fragment (where
// some services carry tokens).
func publicURL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// secretURL is u as errors and dead letters show a URL that is itself a
// secret (a Slack incoming webhook): scheme and host only.
func secretURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/…"
}

// clip shortens s to at most n bytes, on a rune boundary, for an error
// message.
func clip(s string, n int) string { return textclip.String(s, n) }
