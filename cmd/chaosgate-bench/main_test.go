package main

import (
	"bytes"
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cli runs chaosgate-bench in-process and returns stdout, stderr text and
// the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return out.String(), errb.String(), exitOK
	}
	errb.WriteString(err.Error())
	return out.String(), errb.String(), exitUsage
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	if _, errs, code := cli(t, "nope"); code != exitUsage || errs == "" {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errs)
	}
}
