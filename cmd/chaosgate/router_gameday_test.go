package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// routedGameDay is a local game day whose load goes through chaosgate's
// own router, with a header match for users' requests.
const routedGameDay = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: routed
spec:
  target:
    local: {nodes: 3, partitions: 2}
  steadyState: 1s
  canary:
    steps: [10, 50]
  traffic:
    provider: router
    header: {name: x-canary, value: always}
  probes:
    availability: {sources: 4, rate: 300}
  faults:
    - name: kill-one
      duration: 2s
      podKill: {}
`

// TestRunThroughTheRouter: with traffic: {provider: router} the game
// day's load reaches every arm through the router, pinned to its arm (the
// router counts each arm's requests, all by the pin header), a user's
// requests to the router's address during the 50 % step split exactly
// 50:50 by the weight, and those carrying x-canary: always all reach the
// canary; the good canary is not blocked and both clusters keep every
// consistency invariant.
func TestRunThroughTheRouter(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	file := writeExperiment(t, "routed", routedGameDay)
	cmd, stdout, lw := startBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", t.TempDir())
	if !lw.waitFor("router: at 10% ", 3*time.Minute) {
		t.Fatalf("the run never left its 10%% step:\n%s", lw.text())
	}
	m := regexp.MustCompile(`router: (http://127\.0\.0\.1:\d+) in front of the arms`).FindStringSubmatch(lw.text())
	if m == nil {
		t.Fatalf("no router address in the log:\n%s", lw.text())
	}
	// The 50 % step is on: the weight is 50.
	arms := func(header string) map[string]int {
		got := map[string]int{}
		for i := 0; i < 100; i++ {
			req, _ := http.NewRequest(http.MethodGet, m[1]+"/livez", nil)
			if header != "" {
				req.Header.Set(header, "always")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// The arm decides; the status may be a 502 while a fault
			// holds one of the arm's replicas down.
			got[resp.Header.Get("X-Chaosgate-Arm")]++
		}
		return got
	}
	byWeight, byHeader := arms(""), arms("x-canary")
	<-lw.done // stderr read to its end before Wait closes the pipe
	if err := cmd.Wait(); err != nil {
		t.Logf("exit: %v", err)
	}
	stderr := lw.text()
	r := decodeReport(t, stdout.String(), stderr)
	// A good canary is never blocked. On a starved host (a 2-core CI
	// machine running other packages' tests) the judge may hold it for
	// more data instead of promoting: that is the judge's call on noisy
	// windows, tested in the decision package, not the router's.
	goodVerdict := (r.Verdict == "promote" && r.ExitCode == 0) || (r.Verdict == "hold" && r.ExitCode == 3)
	if !goodVerdict || r.Probes.Consistency == nil || !r.Probes.Consistency.Canary.OK || !r.Probes.Consistency.Control.OK {
		t.Fatalf("verdict %q exit %d consistency %+v\n%s", r.Verdict, r.ExitCode, r.Probes.Consistency, tail(stderr, 4000))
	}
	if r.Verdict == "hold" {
		t.Logf("the good canary was held, not promoted (a loaded host): %s", r.Reason)
	}
	if byWeight["canary"] != 50 || byWeight["control"] != 50 || byHeader["canary"] != 100 {
		t.Fatalf("users' requests at the 50%% step: by weight %v, with x-canary %v", byWeight, byHeader)
	}
	for _, step := range []string{"10%", "50%"} {
		line := regexp.MustCompile(`router: at ` + step + ` canary (\d+), control (\d+), calibration (\d+) requests \(([^)]*)\)`).FindStringSubmatch(stderr)
		if line == nil || line[1] == "0" || line[2] == "0" || line[3] == "0" {
			t.Fatalf("router counts at %s: %v\n%s", step, line, tail(stderr, 3000))
		}
		t.Logf("router at %s: canary %s, control %s, calibration %s (%s)", step, line[1], line[2], line[3], line[4])
		if step == "50%" && (!strings.Contains(line[4], "canary/weight 50") || !strings.Contains(line[4], "control/weight 50") || !strings.Contains(line[4], "canary/header")) {
			t.Fatalf("the 50%% step's counts miss the users' requests: %s", line[4])
		}
	}
}
