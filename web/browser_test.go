package web

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chaosgate/chaosgate/internal/browsertest"
)

func TestBrowserDashboardAndExplorer(t *testing.T) {
	dir := t.TempDir()
	revA, revB := "sha256:"+strings.Repeat("3c", 32), "sha256:"+strings.Repeat("4d", 32)
	recordEvidence(t, dir, revA, "pod-kill", "promote", "trace-a")
	recordEvidence(t, dir, revB, "split-brain", "block", "trace-b")
	gate := make(chan struct{})
	h := newHarness(t, dir, scripted(gate), nil)

	ctx := browsertest.Start(t, 90*time.Second)

	id := h.startRun(`{"scenario":"default-gameday-quick","revision":"promote-browser"}`)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	poll := func(expr string) {
		t.Helper()
		// A navigation (the dashboard reloads when a run ends; a form
		// submit loads a new page) interrupts a poll: the page's
		// JavaScript context goes away under it. Poll again on the new
		// page.
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second)))
			if err == nil {
				return
			}
			if time.Now().After(deadline) || !browsertest.InterruptedByNavigation(err) {
				t.Fatalf("waiting for %s: %v", expr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The dashboard redirects to the login form; the operator signs in and
	// sees the live run: events over SSE, active faults, the kill switch.
	do("login page", chromedp.Navigate(h.hs.URL+"/"), chromedp.WaitVisible("#token"))
	loginURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loginURL, "/login") {
		t.Fatalf("not redirected to the login form: %q %v", loginURL, err)
	}
	do("sign in", chromedp.SendKeys("#token", roleTokens[RoleOperator]), chromedp.Click("#signin"), chromedp.WaitVisible("#live"))
	poll(`document.querySelector("#events") !== null && document.querySelector("#events").textContent.includes("podKill canary/n2")`)
	poll(`document.querySelector("#faults") !== null && document.querySelector("#faults").textContent.includes("podKill")`)
	// The live chart has the canary's sample from the state event.
	// The chart may not be drawn yet when the poll starts: a missing
	// polyline is "not yet", not an exception that ends the poll.
	poll(`(p => p !== null && (p.getAttribute("points") || "") !== "")(document.querySelector("#chart-p99 polyline.s-canary"))`)
	events, faults, killText := text("#events"), text("#faults"), text("#kill")
	if !strings.Contains(events, "steady state before") || !strings.Contains(faults, "podKill canary/n2") || !strings.Contains(killText, "Kill switch") {
		t.Fatalf("live view: events %q, faults %q, kill %q", events, faults, killText)
	}
	// The run ends: the page reloads on the end event and the history shows
	// the verdict; the decision matrix explains the step.
	close(gate)
	poll(`document.querySelector("#idle") !== null`)
	history, matrix := text("#history"), text("#matrix")
	if !strings.Contains(history, id) || !strings.Contains(history, "promote") || !strings.Contains(matrix, "error rate within sigma") {
		t.Fatalf("history %q\nmatrix %q", history, matrix)
	}
	// An idle dashboard picks up a run started elsewhere (here: the API).
	gate2 := make(chan struct{})
	h.srv.opt.Run = scripted(gate2)
	id2 := h.startRun(`{"scenario":"pod-kill","revision":"hold-idle"}`)
	poll(`document.querySelector(".live[data-run]") !== null && document.querySelector(".live[data-run]").getAttribute("data-run") === "` + id2 + `"`)
	close(gate2)
	poll(`document.querySelector("#idle") !== null`)
	// An auditor searches the block explorer by revision and opens the entry.
	do("sign out", chromedp.Click("form.who button"), chromedp.WaitVisible("#token"))
	do("sign in as auditor", chromedp.SendKeys("#token", roleTokens[RoleAuditor]), chromedp.Click("#signin"), chromedp.WaitVisible("#history"))
	do("search", chromedp.Navigate(h.hs.URL+"/explorer"), chromedp.WaitVisible("#q-revision"),
		chromedp.SendKeys("#q-revision", revB), chromedp.Click("#search-go"))
	poll(`location.search.includes("revision=")`)
	do("results", chromedp.WaitVisible("#entry-rows"))
	rows := text("#entry-rows")
	if !strings.Contains(rows, revB) || strings.Contains(rows, revA) || !strings.Contains(rows, "split-brain") {
		t.Fatalf("search rows %q", rows)
	}
	do("open entry", chromedp.Click("#entry-rows a"), chromedp.WaitVisible("#sig-status"))
	if sig, proof, rev := text("#sig-status"), text("#proof-status"), text("#revision"); sig != "verified" || proof != "verified" || rev != revB {
		t.Fatalf("entry: signature %q, proof %q, revision %q", sig, proof, rev)
	}
}
