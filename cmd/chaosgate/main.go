// Command chaosgate is the chaos-engineering and canary-verification platform:
// it runs the reference aggregator, injects faults, probes, judges a canary
// against its control, gates promotion and records signed evidence.
//
// This package is wiring only: flags, configuration, which adapters to use,
// start and stop. The behaviour lives in the domain packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/chaosgate/chaosgate/decision"
)

// Exit codes shared by run, gate and decide (docs/exit-codes.md); a
// verdict's own comes from decision.Decision.ExitCode.
const (
	exitPromote = decision.ExitPromote   // promote / pass
	exitBlock   = decision.ExitBlock     // block (rollback) or a violated invariant
	exitUsage   = decision.ExitNoVerdict // usage, configuration or infrastructure error: the platform could not judge
	exitHold    = decision.ExitHold      // hold / inconclusive
)

// exitError carries the process exit code a command wants, with the error to
// print (nil for a clean non-zero exit such as a BLOCK verdict).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// withExitCode wraps err so that main exits with code. A nil err means the
// command already reported its outcome and only the exit code matters.
func withExitCode(code int, err error) error { return &exitError{code: code, err: err} }

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitPromote
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "chaosgate:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "chaosgate:", err)
	return exitUsage
}

// newLogger returns the process logger: text on stderr at the given level.
func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
