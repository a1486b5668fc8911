package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execute runs the command line like main does and returns the exit code,
// stdout and the error text.
func execute(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitPromote, out.String(), ""
	}
	var ee *exitError
	if errors.As(err, &ee) {
		msg := ""
		if ee.err != nil {
			msg = ee.err.Error()
		}
		return ee.code, out.String(), msg
	}
	return exitUsage, out.String(), err.Error()
}

const judgeData = "../../decision/testdata/judge/"

func TestDecideExitCodes(t *testing.T) {
	cases := map[string]int{"good": exitPromote, "error-regression": exitBlock, "missing-latency": exitHold, "consistency": exitBlock}
	for name, want := range cases {
		for _, o := range []string{"table", "json"} {
			code, out, msg := execute(t, "decide", "--input", judgeData+name+".json", "-o", o)
			if code != want {
				t.Errorf("%s -o %s: exit %d, want %d (%s)\n%s", name, o, code, want, msg, out)
			}
		}
	}
}

func TestDecideJSONContract(t *testing.T) {
	code, out, _ := execute(t, "decide", "--input", judgeData+"latency-retries.json", "-o", "json", "-c", "../../decision/decision.example.yaml")
	if code != exitBlock {
		t.Fatalf("exit %d", code)
	}
	var v struct {
		Verdict    string   `json:"verdict"`
		Score      *float64 `json:"score"`
		Coverage   *float64 `json:"coverage"`
		ConfigHash string   `json:"config_hash"`
		Dimensions []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.Verdict != "block" || v.Score == nil || v.Coverage == nil || !strings.HasPrefix(v.ConfigHash, "sha256:") || len(v.Dimensions) != 8 {
		t.Fatalf("contract fields: %+v", v)
	}
	for _, d := range v.Dimensions {
		for _, f := range []string{"name", "outcome", "z", "k", "sigma", "effect", "confidence", "weight", "contribution", "rule", "reason"} {
			if _, ok := d[f]; !ok {
				t.Fatalf("dimension %v lacks %q", d["name"], f)
			}
		}
	}
}

func TestDecideTableExplains(t *testing.T) {
	_, out, _ := execute(t, "decide", "--input", judgeData+"latency-retries.json")
	for _, want := range []string{"VERDICT BLOCK", "latency_p99", "FAIL", "retries-suspected", "σ̂", "inputs: p99(latency_ms)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestDecideMalformedInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "w.json")
	if err := os.WriteFile(bad, []byte(`{"at":"2026-11-22T10:00:00Z","canary":{"latency_ms":[1,2,3,"4"]},"control":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, msg := execute(t, "decide", "--input", bad)
	if code != exitUsage || !strings.Contains(msg, "$.canary.latency_ms[3]: want number, got string") {
		t.Fatalf("exit %d: %s", code, msg)
	}
	badCfg := filepath.Join(dir, "decision.yaml")
	if err := os.WriteFile(badCfg, []byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\nalpha: lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, msg = execute(t, "decide", "--input", judgeData+"good.json", "-c", badCfg)
	if code != exitUsage || !strings.Contains(msg, "decision.yaml:3:8: alpha") {
		t.Fatalf("bad config: exit %d: %s", code, msg)
	}
	if code, _, _ := execute(t, "decide"); code != exitUsage {
		t.Fatalf("no --input: exit %d", code)
	}
}
