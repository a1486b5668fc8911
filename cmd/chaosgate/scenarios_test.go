package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/scenarios"
)

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	if err != nil {
		code = exitUsage
		if ee, ok := err.(*exitError); ok {
			code = ee.code
		}
	}
	return out.String(), errb.String(), code
}

func TestScenariosListValidateExplain(t *testing.T) {
	out, _, code := runCLI(t, "scenarios", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("list exit %d", code)
	}
	var list []scenarioSummary
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != len(scenarios.LibraryNames()) || len(list) < 20 {
		t.Fatalf("list: %d entries, %v", len(list), err)
	}
	bad := filepath.Join("..", "..", "scenarios", "testdata", "bad", "shape-enum.yaml")
	good := filepath.Join("..", "..", "scenarios", "testdata", "good", "kubernetes.yaml")
	out, errOut, code := runCLI(t, "scenarios", "validate", good, bad)
	if code != exitUsage || !strings.Contains(out, "kubernetes.yaml: ok") || !strings.Contains(errOut, `shape-enum.yaml:9:26: spec.faults[0].partition.shape: unknown partition shape "halfs" (hint: did you mean "halves"?`) {
		t.Fatalf("validate: exit %d\nout %s\nerr %s", code, out, errOut)
	}
	if _, _, code := runCLI(t, "scenarios", "validate", good); code != 0 {
		t.Fatalf("validate good: exit %d", code)
	}
	out, _, code = runCLI(t, "scenarios", "explain", "default-gameday")
	if code != 0 || !strings.Contains(out, "canary step 100%") || !strings.Contains(out, "partition majorities-ring") {
		t.Fatalf("explain: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "scenarios", "explain", "upstreams")
	if code != 0 || !strings.Contains(out, "broker of upstream nats killed (SIGKILL)") || !strings.Contains(out, "leaves the group of upstream nats") {
		t.Fatalf("explain upstreams: exit %d\n%s", code, out)
	}
	if _, _, code := runCLI(t, "scenarios", "explain", "no-such-scenario"); code != exitUsage {
		t.Fatalf("explain unknown: exit %d", code)
	}
	out, _, code = runCLI(t, "scenarios", "explain", "pod-kill", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "duration: 5s") {
		t.Fatalf("explain yaml: exit %d\n%s", code, out)
	}
}

func TestAbortWithoutLiveRunIsUsageError(t *testing.T) {
	_, _, code := runCLI(t, "abort", "--data-dir", t.TempDir())
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
}

func TestBenchProxyRunsBothPaths(t *testing.T) {
	out, _, code := runCLI(t, "bench", "proxy", "-n", "200", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var rows []proxyBenchRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[0].P50Ms <= 0 || rows[1].P50Ms <= 0 {
		t.Fatalf("rows %+v, %v", rows, err)
	}
}
