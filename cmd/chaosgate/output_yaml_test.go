package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestOutputYAML: a command whose -o offers JSON prints the same document
// as YAML with -o yaml, with its exit code, a failing verdict included.
func TestOutputYAML(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "h.jsonl")
	lines := `{"op":"send","t":"2026-01-01T00:00:00Z","client":"c","source":"s1","seq":1,"msg_id":"m1","key":"k","result":"ok","partition":0,"epoch":1,"node":"n1"}
`
	if err := os.WriteFile(hist, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var asJSON, asYAML bytes.Buffer
	codeJSON := runTo(t, &asJSON, "check", "--history", hist, "-o", "json")
	codeYAML := runTo(t, &asYAML, "check", "--history", hist, "-o", "yaml")
	if codeJSON != exitBlock || codeYAML != codeJSON {
		t.Fatalf("exit codes json %d, yaml %d (want %d: the acknowledged message is lost)", codeJSON, codeYAML, exitBlock)
	}
	var a, b any
	if err := json.Unmarshal(asJSON.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(asYAML.Bytes(), &b); err != nil || !reflect.DeepEqual(a, b) || strings.HasPrefix(strings.TrimSpace(asYAML.String()), "{") {
		t.Fatalf("-o yaml is not the JSON document as YAML (%v):\n%s", err, asYAML.String())
	}
}

// TestDryRunKeepsItsOwnYAML: --dry-run -o yaml prints the objects' own
// YAML stream (with its comments), not a converted JSON document.
func TestDryRunKeepsItsOwnYAML(t *testing.T) {
	pods := filepath.Join(t.TempDir(), "pods.yaml")
	if err := os.WriteFile(pods, []byte("canary: {namespace: shop, pods: [web-canary-0]}\ncontrol: {namespace: shop, pods: [web-0, web-1]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := runTo(t, &out, "run", "-f", filepath.Join("..", "..", "scenarios", "library", "pod-kill.yaml"), "--target", "k8s", "--dry-run", "--pods", pods, "-o", "yaml")
	if code != exitPromote || !strings.HasPrefix(out.String(), "# chaosgate ") || !strings.Contains(out.String(), "kind: PodChaos") {
		t.Fatalf("dry run -o yaml: exit %d\n%s", code, out.String())
	}
}

// runTo runs the command line with stdout captured.
func runTo(t *testing.T, out *bytes.Buffer, args ...string) int {
	t.Helper()
	root := newRootCmd()
	root.SetOut(out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if ferr := flushYAML(cmd); ferr != nil && err == nil {
		t.Fatal(ferr)
	}
	var ee *exitError
	switch {
	case err == nil:
		return exitPromote
	case errors.As(err, &ee):
		return ee.code
	}
	return exitUsage
}

func FuzzJSONToYAML(f *testing.F) {
	f.Add([]byte(`{"a":[1,2.5,"x"],"b":{"c":null,"d":true}}`))
	f.Add([]byte(`{"a":1} {"b":2}`))
	f.Add([]byte(`"yes"`))
	f.Add([]byte(`{"a":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := jsonToYAML(b)
		if err != nil {
			return
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		if dec.Decode(&v) != nil || dec.More() {
			return // several values: one YAML document each
		}
		var back any
		if err := yaml.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q gave YAML that does not parse: %v\n%s", b, err, out)
		}
		jb, _ := json.Marshal(v)
		bb, _ := json.Marshal(back)
		if !bytes.Equal(jb, bb) {
			t.Fatalf("%q: YAML reads back as %s, want %s", b, bb, jb)
		}
	})
}
