package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

// blockedRun is a run blocked at 50% on latency_p99 with its full
// explanation, two faults (one never recovered) and its evidence record.
func blockedRun() Run {
	r := sampleRun("block")
	r.Report.Steps[1].Dimensions = []decision.DimensionResult{
		{Name: "latency_p99", Outcome: decision.Fail, Canary: 61.2, Control: 9.4, Unit: "ms", Test: decision.MethodSigma,
			Sigma: 0.0312, SigmaSource: "time-of-day bucket n=6 within whole history n=48 (log scale)", Z: 6.01, K: 3,
			Effect: 1.87, MinEffect: 0.1, Rule: "adaptive-sigma", Reason: "p99 canary 61.2 ms vs control 9.4 ms (+551%): z=6.01 > k=3.00",
			Query: "p99(latency_ms): canary 61.2 ms over 3000 samples"},
		{Name: "error_rate", Outcome: decision.Fail, Canary: 0.004, Control: 0.0005, Unit: "ratio", Test: decision.MethodSequential,
			PValue: 0.00021, Rule: "sequential-test", Breach: "canary", HardLimit: 0.0015, Reason: "canary 0.4% vs control 0.05%"},
		{Name: "gc_pause", Outcome: decision.Inconclusive, Data: decision.DataFew, Unit: "long pauses/min", Reason: "too few samples"},
		{Name: "dependency_sla", Outcome: decision.Pass, Breach: "system", Reason: "both arms below the SLA"},
		{Name: "memory_growth", Outcome: decision.Pass, Reason: "within noise"},
	}
	r.Report.Steps[1].Reason = "blocked at 50%: decisive failure: latency_p99 (z 6.01 ≥ 4.24)"
	applied := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	rec := applied.Add(7 * time.Second)
	r.Report.Faults = []report.Fault{
		{Kind: "networkDelay", Arm: "canary", Target: "n2", AppliedAt: applied, RecoveredAt: &rec, Confirmed: "confirmed"},
		{Kind: "podKill", Arm: "control", Target: "n1", AppliedAt: applied, Confirmed: "inconclusive"},
		{Kind: "partition", Arm: "canary", Target: "n1,n3", Confirmed: "inconclusive"},
	}
	r.Report.Evidence = &report.Evidence{LedgerIndex: 17, TreeSize: 18, EnvelopeSHA256: "ab12"}
	return r
}

func TestRootCauseExplainsTheFailingDimensions(t *testing.T) {
	n := New(blockedRun(), "https://cg.example.com/")
	md := RootCause(n)
	t.Logf("root-cause report:\n%s", md)
	for _, want := range []string{
		"## ✗ Release blocked: revision `local:defect-slow-path`",
		"**Run:** [cli-20260101-000000-abcd](https://cg.example.com/runs/cli-20260101-000000-abcd)",
		"**Ledger entry:** [17](https://cg.example.com/explorer/entries/17)",
		"**Decision:** blocked at 50%: decisive failure: latency\\_p99 \\(z 6.01 ≥ 4.24\\)",
		"### Why: the 50% step",
		"| Dimension | Outcome | Canary | Control | Test | Statistic | σ̂ | Rule |",
		"| `latency_p99` | fail | 61.2 ms | 9.4 ms | sigma | z 6.01 ≥ k 3.00 | 0.0312 | `adaptive-sigma` |",
		"**Decisive:** `latency_p99` z 6.01 ≥ 4.24 = √2 × k 3.00. A failure at least √2 × k past zero blocks at once",
		"| `error_rate` | fail, over the hard limit 0.15% | 0.4% | 0.05% | sequential | p = 0.00021 |",
		"| `gc_pause` | inconclusive \\(data: few\\) |",
		"**σ̂ from:** time-of-day bucket n=6 within whole history n=48 \\(log scale\\)",
		"**Not held against the canary:** both arms breached a hard limit under the same faults: `dependency_sla`",
		"| `networkDelay` | canary | `n2` | 00:00:10 | 00:00:17 | confirmed |",
		"| `podKill` | control | `n1` | 00:00:10 | still in place at the end | inconclusive |",
		"| `partition` | canary | `n1,n3` | skipped | — | inconclusive |",
		"| 50% | block | 0.20 | 1.00 | — |",
		"DSSE envelope `sha256:ab12`",
		"`chaosgate ledger proof --index 17`",
		"<!-- chaosgate root-cause report, run cli-20260101-000000-abcd -->",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "memory_growth") {
		t.Errorf("a passing dimension is listed as a cause")
	}
	if n.Links.Ledger != "https://cg.example.com/explorer/entries/17" {
		t.Errorf("ledger link %q", n.Links.Ledger)
	}
	// Without a dashboard: no links, the ids as code.
	md = RootCause(New(blockedRun(), ""))
	if strings.Contains(md, "](") || !strings.Contains(md, "**Run:** `cli-20260101-000000-abcd`") || !strings.Contains(md, "**Ledger entry:** 17") {
		t.Errorf("without a dashboard:\n%s", md)
	}
}

func TestRootCauseOfAnAbortedRunWithoutSteps(t *testing.T) {
	r := sampleRun("block")
	r.Report.Steps = nil
	r.Reason = "aborted: abort condition error_rate > 5% on the canary"
	md := RootCause(New(r, ""))
	for _, want := range []string{"## ✗ Release aborted, blocked: revision", "No canary step was judged before the run ended.",
		"**Decision:** aborted: abort condition error\\_rate \\> 5% on the canary", "No fault was injected before the run ended.",
		"No evidence record was written for this run."} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	r = sampleRun("hold")
	r.Report.Steps[1].Dimensions = []decision.DimensionResult{{Name: "error_rate", Outcome: decision.Pass, Leaning: true, Test: decision.MethodSequential, PValue: 0.04}}
	md = RootCause(New(r, ""))
	if !strings.Contains(md, "## ? Release held") || !strings.Contains(md, "| `error_rate` | pass, leaning worse |") {
		t.Errorf("hold on a leaning dimension:\n%s", md)
	}
}

// hostile is run data that would be markup, HTML, links, mentions and
// references if it were not escaped.
const hostile = "@channel <script>alert(1)</script> [x](http://evil.example) | ![i](http://evil.example/i.png) `code` *bold* #12 !3 ~label\n# heading\r\n- item & &amp; \\| {{x}} [~admin] h1. x"

func TestRootCauseEscapesWhatComesFromTheRun(t *testing.T) {
	r := blockedRun()
	r.Report.Revision, r.Scenario, r.Reason, r.Report.RunID = hostile, hostile, hostile, hostile
	r.Report.Steps[1].Dimensions[0].Name = decision.Kind("lat|ency`x")
	r.Report.Steps[1].Dimensions[0].Reason = hostile
	r.Report.Steps[1].Dimensions[0].Diagnosis = []string{hostile}
	r.Report.Faults[0].Target = hostile
	n := New(r, "https://cg.example.com")
	md := RootCause(n)
	t.Logf("escaped:\n%s", md)
	visible := outsideCode(md)
	for _, bad := range []string{"<script>", "](http://evil", "@channel", "\n# heading", "\n- item", "#12", "!3", "~label", "&amp;", "[x]"} {
		if strings.Contains(visible, bad) {
			t.Errorf("markdown carries %q unescaped", bad)
		}
	}
	checkMarkdownTables(t, md)
	benign := RootCause(New(blockedRun(), "https://cg.example.com"))
	if got, want := strings.Count(md, "\n"), strings.Count(benign, "\n"); got != want {
		t.Errorf("%d lines, want %d: run data added lines", got, want)
	}
	wiki := renderWiki(rootCauseDoc(n))
	for _, bad := range []string{"[x]", "{{x}}", "[~admin]", "\nh1.", "*bold*", "|![i]"} {
		if strings.Contains(wiki, bad) {
			t.Errorf("wiki markup carries %q unescaped:\n%s", bad, wiki)
		}
	}
	if strings.Count(wiki, "\n") != strings.Count(renderWiki(rootCauseDoc(New(blockedRun(), "https://cg.example.com"))), "\n") {
		t.Errorf("run data added wiki lines")
	}
	if s := RootCauseSummary(n); strings.ContainsAny(s, "\r\n") || len([]rune(s)) > 255 {
		t.Errorf("summary %q", s)
	}
}

// outsideCode is md without its code spans and link destinations (where
// nothing is markup, nor a mention): what a reader sees as text.
func outsideCode(md string) string {
	var b strings.Builder
	for i := 0; i < len(md); i++ {
		switch {
		case md[i] == '\\' && i+1 < len(md):
			b.WriteString(md[i : i+2])
			i++
		case md[i] == '`':
			n := 1
			for i+n < len(md) && md[i+n] == '`' {
				n++
			}
			fence := md[i : i+n]
			end := strings.Index(md[i+n:], fence)
			for end >= 0 && i+n+end+n < len(md) && md[i+n+end+n] == '`' {
				next := strings.Index(md[i+n+end+n:], fence)
				if next < 0 {
					end = -1
					break
				}
				end += n + next
			}
			if end < 0 {
				b.WriteString(fence)
				i += n - 1
				continue
			}
			b.WriteString("CODE")
			i += n + end + n - 1
		case strings.HasPrefix(md[i:], "]("):
			end := strings.IndexByte(md[i:], ')')
			b.WriteString("](LINK)")
			i += end
		default:
			b.WriteByte(md[i])
		}
	}
	return b.String()
}

// checkMarkdownTables checks every table row has as many cells as its
// header (an unescaped pipe from the run would add one).
func checkMarkdownTables(t *testing.T, md string) {
	t.Helper()
	cols := -1
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = -1
			continue
		}
		n := unescapedPipes(line)
		if cols < 0 {
			cols = n
		} else if n != cols {
			t.Errorf("table row with %d cells, header has %d: %q", n-1, cols-1, line)
		}
	}
}

func unescapedPipes(line string) int {
	n := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n
}

func TestRootCauseADF(t *testing.T) {
	n := New(blockedRun(), "https://cg.example.com")
	raw, err := json.Marshal(renderADF(rootCauseDoc(n)))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["type"] != "doc" || doc["version"] != float64(1) {
		t.Fatalf("not an ADF document: %s", raw)
	}
	var texts []string
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		if node["type"] == "text" {
			s, _ := node["text"].(string)
			if s == "" {
				t.Errorf("empty text node")
			}
			marks, _ := node["marks"].([]any)
			for _, m := range marks {
				if m.(map[string]any)["type"] == "code" {
					s = "`" + s + "`"
				}
				if m.(map[string]any)["type"] == "link" {
					s += " -> " + m.(map[string]any)["attrs"].(map[string]any)["href"].(string)
				}
			}
			texts = append(texts, s)
		}
		content, _ := node["content"].([]any)
		for _, c := range content {
			walk(c.(map[string]any))
		}
	}
	walk(doc)
	all := strings.Join(texts, "|")
	for _, want := range []string{"`latency_p99`", "z 6.01 ≥ k 3.00", "z 6.01 ≥ 4.24 = √2 × k 3.00", "17 -> https://cg.example.com/explorer/entries/17", "61.2 ms"} {
		if !strings.Contains(all, want) {
			t.Errorf("ADF lacks %q: %s", want, all)
		}
	}
}
