package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// nativeYAML marks a command that writes -o yaml itself; every other
// command with a JSON -o gets YAML by converting its JSON.
const nativeYAML = "chaosgate.io/native-yaml"

// yamlCapture is a command's JSON output held back to be written as YAML.
type yamlCapture struct {
	buf bytes.Buffer
	out io.Writer
}

var (
	yamlMu      sync.Mutex
	yamlPending = map[*cobra.Command]*yamlCapture{}
)

// captureYAML turns `-o yaml` into `-o json` for a command whose -o
// offers JSON, and holds its output back for flushYAML.
func captureYAML(cmd *cobra.Command) error {
	f := cmd.Flags().Lookup("output")
	if f == nil || f.Value.String() != "yaml" || cmd.Annotations[nativeYAML] == "true" || !strings.Contains(f.Usage, "json") {
		return nil
	}
	if dr := cmd.Flags().Lookup("dry-run"); dr != nil && dr.Value.String() != dryRunNone && dr.Value.String() != "false" {
		return nil // --dry-run -o yaml prints its own stream of objects
	}
	if err := f.Value.Set("json"); err != nil {
		return err
	}
	c := &yamlCapture{out: cmd.OutOrStdout()}
	cmd.SetOut(&c.buf)
	yamlMu.Lock()
	yamlPending[cmd] = c
	yamlMu.Unlock()
	return nil
}

// flushYAML writes what cmd held back as YAML (one document per JSON
// value), whether or not the command failed: a BLOCK verdict still prints
// its report.
func flushYAML(cmd *cobra.Command) error {
	yamlMu.Lock()
	c := yamlPending[cmd]
	delete(yamlPending, cmd)
	yamlMu.Unlock()
	if c == nil {
		return nil
	}
	y, err := jsonToYAML(c.buf.Bytes())
	if err != nil {
		// Never lose the output: write it as it came.
		_, _ = c.out.Write(c.buf.Bytes())
		return fmt.Errorf("-o yaml: %w", err)
	}
	_, err = c.out.Write(y)
	return err
}

// jsonToYAML converts a stream of JSON values to YAML documents.
func jsonToYAML(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var out bytes.Buffer
	for n := 0; ; n++ {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return out.Bytes(), nil
			}
			return nil, fmt.Errorf("output value %d is not JSON: %w", n+1, err)
		}
		y, err := yaml.JSONToYAML(v)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
}
