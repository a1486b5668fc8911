package main

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// TestMain stops the shared test control plane (k8senv.Get) after the
// tests and checks for leaked goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(k8senv.Main(m), append(k8senv.LeakOptions(), leakcheck.StuckToxiproxyLink())...)
}

func TestVersionPrintsRelease(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatalf("version: %v", err)
	}
	if !strings.HasPrefix(out.String(), "chaosgate "+version+" ") {
		t.Fatalf("version output %q does not start with the release", out.String())
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	if code := run([]string{"no-such-command"}); code != exitUsage {
		t.Fatalf("exit code = %d, want %d", code, exitUsage)
	}
}

func TestLogFlags(t *testing.T) {
	t.Cleanup(func() { _ = parseLogFlags("text", "") })
	for _, args := range [][]string{{"--log-format", "yaml", "version"}, {"--log-level", "loud", "version"}} {
		if code := run(args); code != exitUsage {
			t.Fatalf("%v: exit code %d, want %d", args, code, exitUsage)
		}
	}
	if code := run([]string{"version", "--log-format", "json", "--log-level", "debug"}); code != exitPromote {
		t.Fatalf("valid log flags: exit code %d", code)
	}
	h := newLogger(slog.LevelWarn).Handler()
	if _, ok := h.(*slog.JSONHandler); !ok || !h.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatalf("--log-format json --log-level debug gave %T (debug enabled: %v)", h, h.Enabled(context.Background(), slog.LevelDebug))
	}
	_ = parseLogFlags("text", "")
	h = newLogger(slog.LevelWarn).Handler()
	if _, ok := h.(*slog.TextHandler); !ok || h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatalf("defaults gave %T (info enabled: %v), want text at the command's warn", h, h.Enabled(context.Background(), slog.LevelInfo))
	}
}

// The shipped binary does not link the benchmarks' peer libraries (the
// ledger's comparison with tessera lives in cmd/chaosgate-bench) nor the
// image builder (go-containerregistry, used by make image only).
func TestShippedBinaryLinksNoBenchPeers(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain not on PATH (go test runs under it): %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := map[string]string{
		"transparency-dev/tessera":    "benchmarks against it belong in cmd/chaosgate-bench",
		"google/go-containerregistry": "the image builder belongs in internal/ociimage, run by make image",
	}
	for _, dep := range strings.Fields(string(out)) {
		for mod, why := range banned {
			if strings.Contains(dep, mod) {
				t.Errorf("chaosgate links %s: %s", dep, why)
			}
		}
	}
}
