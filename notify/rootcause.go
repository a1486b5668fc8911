package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

// RootCause is the root-cause report of a run that did not promote, as
// GitHub- and GitLab-flavoured markdown: why the release was blocked or
// held (the deciding step's failing, leaning and inconclusive dimensions
// with their evidence: canary and control values, the test, z against k
// or the p-value, σ̂ and where it came from), the decision's reason, the
// faults of the run, the steps, and links to the run's dashboard page and
// its ledger entry (n.Links). Every string that comes from the run is
// escaped: it cannot add markup, links or HTML, and mentions and
// references (@someone, #12, !3) are broken with a zero-width space so a
// run cannot ping people or link issues. docs/notification-v1.md
// describes the layout.
func RootCause(n Notification) string {
	return renderMarkdown(rootCauseDoc(n)) + "\n<!-- chaosgate root-cause report, run " + commentSafe(n.RunID) + " -->\n"
}

// RootCauseSummary is the one-line title of the root-cause report (a Jira
// issue's summary): verdict, revision, scenario and failing dimensions,
// at most 255 characters.
func RootCauseSummary(n Notification) string {
	s := fmt.Sprintf("chaosgate %s: revision %s", verdictWord(n), oneLine(orNone(n.Revision)))
	if n.Scenario != "" {
		s += " (" + oneLine(n.Scenario) + ")"
	}
	if len(n.Failing) > 0 {
		s += ": " + oneLine(strings.Join(n.Failing, ", ")) + " failed"
	}
	return truncate(s, 255)
}

// Limits of what the report shows; the report/v1 has the rest.
const (
	rcMaxFaults = 30  // fault rows
	rcMaxText   = 400 // characters of one reason, source or query
)

// The report is built once as a small document and rendered as markdown
// (GitHub, GitLab, the file), Jira wiki markup (API v2) or the Atlassian
// Document Format (API v3), so the three say the same.

type inlineKind uint8

const (
	inText   inlineKind = iota // plain text from anywhere: escaped
	inCode                     // an identifier: monospace
	inStrong                   // our own labels
	inLink                     // text linking to href
)

type inline struct {
	kind inlineKind
	text string
	href string
}

type blockKind uint8

const (
	blHeading blockKind = iota
	blPara
	blList
	blTable
)

type block struct {
	kind   blockKind
	level  int        // heading
	inl    []inline   // heading, paragraph
	items  [][]inline // list items
	header []string   // table
	rows   [][][]inline
}

func txt(s string) inline        { return inline{kind: inText, text: s} }
func code(s string) inline       { return inline{kind: inCode, text: s} }
func strong(s string) inline     { return inline{kind: inStrong, text: s} }
func link(s, href string) inline { return inline{kind: inLink, text: s, href: href} }

// aborted reports whether the run was stopped by an abort condition or a
// kill switch: its reason starts with "aborted".
func aborted(n Notification) bool { return strings.HasPrefix(n.Reason, "aborted") }

// verdictWord is what happened to the release, in words.
func verdictWord(n Notification) string {
	w := map[string]string{"block": "blocked", "hold": "held", "promote": "promoted"}[n.Verdict]
	if w == "" {
		w = "judged " + oneLine(orNone(n.Verdict))
	}
	if aborted(n) {
		w = "aborted, " + w
	}
	return w
}

// decidingStep is the step whose verdict the run acted on: the last.
func decidingStep(r report.Report) *report.Step {
	if len(r.Steps) == 0 {
		return nil
	}
	return &r.Steps[len(r.Steps)-1]
}

func rootCauseDoc(n Notification) []block {
	var doc []block
	title := []inline{txt(verdictMark(n.Verdict) + " Release " + verdictWord(n) + ": revision "), code(orNone(n.Revision))}
	doc = append(doc, block{kind: blHeading, level: 2, inl: title})

	meta := []inline{strong("Scenario:"), txt(" "), code(orNone(n.Scenario)), txt(" · "), strong("Run:"), txt(" ")}
	if n.Links.Run != "" {
		meta = append(meta, link(orNone(n.RunID), n.Links.Run))
	} else {
		meta = append(meta, code(orNone(n.RunID)))
	}
	if ev := n.Report.Evidence; ev != nil {
		meta = append(meta, txt(" · "), strong("Ledger entry:"), txt(" "))
		idx := strconv.FormatUint(ev.LedgerIndex, 10)
		if n.Links.Ledger != "" {
			meta = append(meta, link(idx, n.Links.Ledger))
		} else {
			meta = append(meta, txt(idx))
		}
	}
	if !n.Time.IsZero() {
		meta = append(meta, txt(" · "+n.Time.UTC().Format("2006-01-02 15:04:05 UTC")))
	}
	doc = append(doc, block{kind: blPara, inl: meta})
	doc = append(doc, block{kind: blPara, inl: []inline{strong("Decision:"), txt(" " + clipText(orNone(n.Reason)))}})

	step := decidingStep(n.Report)
	doc = append(doc, whyBlocks(n, step)...)
	doc = append(doc, faultBlocks(n.Report.Faults)...)
	if len(n.Report.Steps) > 0 {
		t := block{kind: blTable, header: []string{"Canary weight", "Verdict", "Score", "Coverage", "Windows"}}
		for _, s := range n.Report.Steps {
			w := "—"
			if s.Windows > 0 {
				w = strconv.Itoa(s.Windows)
			}
			t.rows = append(t.rows, [][]inline{{txt(fmt.Sprintf("%d%%", s.Weight))}, {txt(s.Verdict)},
				{txt(fmt.Sprintf("%.2f", s.Score))}, {txt(fmt.Sprintf("%.2f", s.Coverage))}, {txt(w)}})
		}
		doc = append(doc, block{kind: blHeading, level: 3, inl: []inline{txt("Steps")}}, t)
	}
	doc = append(doc, evidenceBlocks(n)...)
	return doc
}

// whyBlocks explain the deciding step: the dimensions that failed, lean
// worse or could not be judged, with their evidence.
func whyBlocks(n Notification, step *report.Step) []block {
	if step == nil {
		return []block{{kind: blPara, inl: []inline{txt("No canary step was judged before the run ended.")}}}
	}
	var bad, system []decision.DimensionResult
	for _, d := range step.Dimensions {
		if d.Outcome == decision.Fail || d.Outcome == decision.Inconclusive || d.Leaning {
			bad = append(bad, d)
		}
		if d.Breach == "system" {
			system = append(system, d)
		}
	}
	head := fmt.Sprintf("Why: the %d%% step", step.Weight)
	out := []block{{kind: blHeading, level: 3, inl: []inline{txt(head)}}}
	if len(bad) == 0 {
		out = append(out, block{kind: blPara, inl: []inline{txt("No dimension failed, leaned worse or lacked data at this step; the decision above says why it " + verdictWord(n) + ".")}})
	} else {
		t := block{kind: blTable, header: []string{"Dimension", "Outcome", "Canary", "Control", "Test", "Statistic", "σ̂", "Rule"}}
		var notes block
		notes.kind = blList
		for _, d := range bad {
			canary, control := value(d.Canary, d.Unit), value(d.Control, d.Unit)
			if d.Data != "" && d.Data != decision.DataOK && d.Canary == 0 && d.Control == 0 {
				canary, control = "—", "—" // nothing was measured
			}
			t.rows = append(t.rows, [][]inline{{code(string(d.Name))}, {txt(outcomeText(d))}, {txt(canary)},
				{txt(control)}, {txt(orNone(string(d.Test)))}, {txt(statistic(d))}, {txt(sigma(d))}, {code(orNone(string(d.Rule)))}})
			item := []inline{code(string(d.Name)), txt(": " + clipText(orNone(d.Reason)))}
			if d.SigmaSource != "" {
				item = append(item, txt(" — "), strong("σ̂ from:"), txt(" "+clipText(d.SigmaSource)))
			}
			if d.Effect != 0 || d.MinEffect != 0 {
				item = append(item, txt(" — "), strong("effect:"), txt(fmt.Sprintf(" %.4g (practical minimum %.4g)", d.Effect, d.MinEffect)))
			}
			if d.Query != "" {
				item = append(item, txt(" — "), strong("inputs:"), txt(" "+clipText(d.Query)))
			}
			for _, dg := range d.Diagnosis {
				item = append(item, txt(" — "), strong("diagnosis:"), txt(" "+clipText(dg)))
			}
			notes.items = append(notes.items, item)
		}
		out = append(out, t, notes)
		var decisive []inline
		for _, d := range bad {
			if d.Outcome == decision.Fail && d.K > 0 && d.Z >= decision.DecisiveFactor*d.K {
				if len(decisive) > 0 {
					decisive = append(decisive, txt(", "))
				}
				decisive = append(decisive, code(string(d.Name)), txt(fmt.Sprintf(" z %.2f ≥ %.2f = √2 × k %.2f", d.Z, decision.DecisiveFactor*d.K, d.K)))
			}
		}
		if len(decisive) > 0 {
			// The decision's reason quotes √2·k, the table k: say why.
			out = append(out, block{kind: blPara, inl: append(append([]inline{strong("Decisive:"), txt(" ")}, decisive...),
				txt(". A failure at least √2 × k past zero blocks at once — more data would not turn it; between k and √2 × k the score weighs it and a hold extends the window."))})
		}
	}
	if len(system) > 0 {
		in := []inline{strong("Not held against the canary:"), txt(" both arms breached a hard limit under the same faults: ")}
		for i, d := range system {
			if i > 0 {
				in = append(in, txt(", "))
			}
			in = append(in, code(string(d.Name)))
		}
		out = append(out, block{kind: blPara, inl: in})
	}
	return out
}

func faultBlocks(faults []report.Fault) []block {
	out := []block{{kind: blHeading, level: 3, inl: []inline{txt("Faults in the run")}}}
	if len(faults) == 0 {
		return append(out, block{kind: blPara, inl: []inline{txt("No fault was injected before the run ended.")}})
	}
	t := block{kind: blTable, header: []string{"Fault", "Arm", "Target", "Applied", "Recovered", "Confirmed"}}
	for i, f := range faults {
		if i == rcMaxFaults {
			break
		}
		applied, recovered := "skipped", "—"
		if !f.AppliedAt.IsZero() {
			applied = clock(f.AppliedAt)
			recovered = "still in place at the end"
			if f.RecoveredAt != nil {
				recovered = clock(*f.RecoveredAt)
			}
		}
		t.rows = append(t.rows, [][]inline{{code(f.Kind)}, {txt(f.Arm)}, {code(orNone(f.Target))}, {txt(applied)}, {txt(recovered)}, {txt(orNone(f.Confirmed))}})
	}
	out = append(out, t)
	if len(faults) > rcMaxFaults {
		out = append(out, block{kind: blPara, inl: []inline{txt(fmt.Sprintf("… and %d more in the run's report/v1 (faults).", len(faults)-rcMaxFaults))}})
	}
	return out
}

func evidenceBlocks(n Notification) []block {
	out := []block{{kind: blHeading, level: 3, inl: []inline{txt("Evidence")}}}
	ev := n.Report.Evidence
	if ev == nil {
		return append(out, block{kind: blPara, inl: []inline{txt("No evidence record was written for this run.")}})
	}
	idx := strconv.FormatUint(ev.LedgerIndex, 10)
	entry := []inline{txt("Signed evidence record: ledger entry " + idx + fmt.Sprintf(" (tree size %d)", ev.TreeSize))}
	if n.Links.Ledger != "" {
		entry = append(entry, txt(", "), link("open it in the block explorer", n.Links.Ledger))
	}
	items := [][]inline{entry}
	if ev.EnvelopeSHA256 != "" {
		items = append(items, []inline{txt("DSSE envelope "), code("sha256:" + ev.EnvelopeSHA256)})
	}
	items = append(items, []inline{txt("Check it offline: "), code("chaosgate ledger entry --index " + idx), txt(" and "), code("chaosgate ledger proof --index " + idx)})
	return append(out, block{kind: blList, items: items})
}

func outcomeText(d decision.DimensionResult) string {
	var s string
	switch d.Outcome {
	case decision.Fail:
		s = "fail"
		if d.Critical {
			s = "fail (critical)"
		}
		if d.Breach == "canary" {
			s += fmt.Sprintf(", over the hard limit %s", value(d.HardLimit, d.Unit))
		}
	case decision.Inconclusive:
		s = "inconclusive"
		if d.Data != "" && d.Data != decision.DataOK {
			s += " (data: " + string(d.Data) + ")"
		}
	default:
		s = "pass"
	}
	if d.Leaning {
		s += ", leaning worse"
	}
	return s
}

// statistic is the test's figure: z against k for the sigma test, the
// p-value for a sequential one.
func statistic(d decision.DimensionResult) string {
	switch d.Test {
	case decision.MethodCritical:
		return "any violation fails"
	case decision.MethodSequential:
		s := "p = " + strconv.FormatFloat(d.PValue, 'g', 3, 64)
		if d.K > 0 {
			s += fmt.Sprintf("; z %.2f %s k %.2f", d.Z, cmp(d.Z, d.K), d.K)
		}
		return s
	}
	if d.K == 0 && d.Z == 0 {
		return "—"
	}
	return fmt.Sprintf("z %.2f %s k %.2f", d.Z, cmp(d.Z, d.K), d.K)
}

func cmp(z, k float64) string {
	if z >= k {
		return "≥"
	}
	return "<"
}

func sigma(d decision.DimensionResult) string {
	if d.Sigma == 0 {
		return "—"
	}
	return strconv.FormatFloat(d.Sigma, 'g', 4, 64)
}

// value formats a dimension's value in its unit (a ratio as a percentage).
func value(v float64, unit string) string {
	switch unit {
	case "ratio":
		return strconv.FormatFloat(v*100, 'g', 4, 64) + "%"
	case "":
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(none)"
	}
	return s
}

func clipText(s string) string { return truncate(s, rcMaxText) }

// oneLine turns control characters and line breaks into spaces and makes
// s valid UTF-8.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// commentSafe keeps what may stand inside an HTML comment.
func commentSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:+-", r)) {
			return r
		}
		return '_'
	}, clip(s, 128))
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "-_")
	}
	return s
}
