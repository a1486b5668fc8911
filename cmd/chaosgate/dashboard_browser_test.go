package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chaosgate/chaosgate/internal/browsertest"
	"github.com/chaosgate/chaosgate/web"
)

// TestDashboardShowsCommandAndServedRuns: `chaosgate serve` runs on a
// data directory; in real Chromium an auditor watches the idle dashboard
// while `chaosgate demo --quick` runs as a separate process on the same
// directory. The command's run shows up live, its events stream in and its
// charts draw; then serve runs a game day of its own. The dashboard lists
// both runs with their triggers; the command's run page has a chart with
// time and value axes and a shaded band for every fault kind it injected;
// its ledger entry links back to the run page; the pages read on a 375 px
// screen and in dark mode. With CHAOSGATE_SCREENSHOTS=DIR the pages are
// saved there (make screenshots writes docs/screenshots).
func TestDashboardShowsCommandAndServedRuns(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	shots := os.Getenv("CHAOSGATE_SCREENSHOTS")
	ctx := browsertest.Start(t, 8*time.Minute)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "chaosgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\n", data)), 0o644)
	p := startServe(t, bin, "-c", cfg, "--binary", bin)
	tok := serveTokens(t, data)
	poll := func(expr string, timeout time.Duration) { t.Helper(); browsertest.Poll(t, ctx, expr, timeout) }

	browsertest.Do(t, ctx, "sign in", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", tok["auditor"]), chromedp.Click("#signin"), chromedp.WaitVisible("#live"))
	poll(`document.querySelector("#idle") !== null`, 10*time.Second)

	// The command runs in its own process on the same data directory.
	demo := exec.Command(bin, "demo", "--quick", "-o", "json", "--data-dir", data)
	var stdout, stderr bytes.Buffer
	demo.Stdout, demo.Stderr = &stdout, &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- demo.Wait() }()
	t.Cleanup(func() {
		if demo.ProcessState == nil {
			demo.Process.Kill()
			<-exited
		}
	})
	poll(`document.querySelector(".live[data-run]") !== null`, 60*time.Second)
	seen := time.Now()
	cliID := browsertest.Eval[string](t, ctx, `document.querySelector(".live[data-run]").getAttribute("data-run")`)
	if !strings.HasPrefix(cliID, "cli-") && !strings.HasPrefix(cliID, "ci-") {
		t.Fatalf("live run %q is not the command's", cliID)
	}
	if first, ok := firstEventTime(filepath.Join(data, web.RunsSubdir, cliID+".events.jsonl")); ok {
		t.Logf("the command's run was on the dashboard %.2f s after its first event", seen.Sub(first).Seconds())
	}
	// Its events stream in over server-sent events from its events file,
	// and its charts draw while it runs.
	poll(`document.querySelector("#events") !== null && document.querySelector("#events").children.length > 0`, 30*time.Second)
	poll(`document.querySelector("#live-charts .x-tick") !== null`, 90*time.Second)
	var demoErr error
	select {
	case demoErr = <-exited:
	case <-time.After(5 * time.Minute):
		t.Fatalf("demo did not end:\n%s", tail(stderr.String(), 3000))
	}
	var rep struct {
		Verdict string
		Faults  []struct {
			Kind, Arm    string
			Availability *struct {
				Requests  int64
				RecoveryS *float64 `json:"recovery_s"`
			}
		}
		Resilience []struct {
			Kind, Arm     string
			Faults        int
			MeanRecoveryS float64 `json:"mean_recovery_s"`
			MaxRecoveryS  float64 `json:"max_recovery_s"`
		}
	}
	if demoErr != nil || json.Unmarshal(stdout.Bytes(), &rep) != nil || rep.Verdict != "promote" {
		t.Fatalf("demo: %v, verdict %q\n%s", demoErr, rep.Verdict, tail(stderr.String(), 3000))
	}

	// The report says how long each fault took to recover, per kind and
	// arm (MTTR), from the load the arms carried through it.
	measured := 0
	for _, f := range rep.Faults {
		if (f.Arm == "canary" || f.Arm == "control") && (f.Availability == nil || f.Availability.Requests == 0) {
			t.Errorf("fault %s on %s without the load it saw: %+v", f.Kind, f.Arm, f.Availability)
		}
		if f.Availability != nil {
			measured++
		}
	}
	if len(rep.Resilience) == 0 {
		t.Fatal("no resilience figures in the report")
	}
	for _, k := range rep.Resilience {
		t.Logf("resilience %s on %s: %d faults, MTTR %.1f s, longest %.1f s", k.Kind, k.Arm, k.Faults, k.MeanRecoveryS, k.MaxRecoveryS)
	}

	// A run of serve's own.
	code, body := p.do(tok["operator"], "POST", "/api/v1/runs", `{"scenario":"pod-kill","revision":"served-rev"}`)
	if code != 202 {
		t.Fatalf("start: %d %s", code, body)
	}
	var served struct{ ID string }
	json.Unmarshal(body, &served)
	p.follow(tok["viewer"], served.ID, nil)

	// Both runs in one history, with their triggers.
	browsertest.Do(t, ctx, "dashboard", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible("#history"))
	poll(fmt.Sprintf(`document.querySelector('#run-rows tr[data-run=%q]') !== null && document.querySelector('#run-rows tr[data-run=%q]') !== null`, cliID, served.ID), 10*time.Second)
	cliRow := browsertest.Text(t, ctx, fmt.Sprintf(`#run-rows tr[data-run=%q]`, cliID))
	servedRow := browsertest.Text(t, ctx, fmt.Sprintf(`#run-rows tr[data-run=%q]`, served.ID))
	if !strings.Contains(cliRow, "demo") || !strings.Contains(cliRow, "promote") || !strings.Contains(servedRow, "api · operator") {
		t.Fatalf("history rows: %q / %q", cliRow, servedRow)
	}
	browsertest.Screenshot(t, ctx, shots, "dashboard.png", true)

	// The command's run page: axes, and a shaded band for every fault kind.
	browsertest.Do(t, ctx, "run page", chromedp.Navigate(p.url+"/runs/"+cliID), chromedp.WaitVisible("#chart-p99"))
	xt := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#chart-p99 .x-tick").length`)
	yt := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#chart-p99 .y-tick").length`)
	bands := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#chart-p99 rect.fault-band").length`)
	labels := browsertest.Eval[string](t, ctx, `Array.from(document.querySelectorAll("#chart-p99 .fault-label")).map(function (e) { return e.textContent; }).join("|")`)
	if xt < 4 || yt < 3 || bands == 0 {
		t.Fatalf("run chart: %d time ticks, %d value ticks, %d fault bands", xt, yt, bands)
	}
	for _, f := range rep.Faults {
		if !strings.Contains(labels, f.Kind) {
			t.Errorf("no fault band labelled %s on the run chart (labels %q)", f.Kind, labels)
		}
	}
	if chips := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#step-chips .chip").length`); chips == 0 {
		t.Error("no verdict chips on the run page")
	}
	rows := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#resilience-rows tr").length`)
	bars := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#recovery-chart .bars li").length`)
	if rows != len(rep.Resilience) || bars != measured {
		t.Errorf("run page resilience: %d rows for %d kinds, %d recovery bars for %d measured faults", rows, len(rep.Resilience), bars, measured)
	}
	browsertest.Screenshot(t, ctx, shots, "run.png", false)

	// Its ledger entry links back to it.
	browsertest.Do(t, ctx, "entry", chromedp.Click("#entry-link"), chromedp.WaitVisible("#sig-status"))
	if sig := browsertest.Text(t, ctx, "#sig-status"); sig != "verified" {
		t.Fatalf("entry signature: %q", sig)
	}
	href := browsertest.Eval[string](t, ctx, `document.querySelector("#run-link").getAttribute("href")`)
	if href != "/runs/"+cliID {
		t.Fatalf("entry links to %q, want the run page of %s", href, cliID)
	}
	browsertest.Screenshot(t, ctx, shots, "entry.png", true)
	browsertest.Do(t, ctx, "back to the run", chromedp.Click("#run-link"), chromedp.WaitVisible("#chart-p99"))

	// A missing run gets the styled not-found page.
	browsertest.Do(t, ctx, "not found", chromedp.Navigate(p.url+"/runs/no-such-run"), chromedp.WaitVisible("#not-found"))

	// On a phone at night: 375 px wide, dark mode, nothing wider than the
	// screen, and the keyboard reaches the content first.
	browsertest.Do(t, ctx, "phone", chromedp.EmulateViewport(375, 812), browsertest.ColorScheme("dark"),
		chromedp.Navigate(p.url+"/"), chromedp.WaitVisible("#history"))
	if w := browsertest.Eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the dashboard is %d px wide on a 375 px screen", w)
	}
	if bg := browsertest.Eval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`); bg == "rgb(246, 247, 249)" {
		t.Errorf("dark mode not followed: background %s", bg)
	}
	browsertest.Do(t, ctx, "tab", chromedp.KeyEvent("\t"))
	if cls := browsertest.Eval[string](t, ctx, `document.activeElement.className`); cls != "skip" {
		t.Errorf("the first Tab focuses %q, want the skip link", cls)
	}
	browsertest.Screenshot(t, ctx, shots, "dashboard-phone-dark.png", false)
}

// firstEventTime is the time of the first event in an events file.
func firstEventTime(path string) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		return time.Time{}, false
	}
	var ev struct{ T time.Time }
	if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.T.IsZero() {
		return time.Time{}, false
	}
	return ev.T, true
}
