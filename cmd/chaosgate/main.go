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
	"sync/atomic"
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
	cmd, err := root.ExecuteContextC(ctx)
	if ferr := flushYAML(cmd); ferr != nil && err == nil {
		err = withExitCode(exitUsage, ferr)
	}
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

// logConfig is the root's --log-format and --log-level, for every
// command's logger.
type logConfig struct {
	json  bool
	level *slog.Level // nil: the command's own default
}

// logSettings holds the logConfig in force (commands may run concurrently
// in one process, as the tests run them).
var logSettings atomic.Pointer[logConfig]

// parseLogFlags checks --log-format and --log-level and keeps them.
func parseLogFlags(format, level string) error {
	var c logConfig
	switch format {
	case "text", "":
	case "json":
		c.json = true
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	if level != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
		}
		c.level = &l
	}
	logSettings.Store(&c)
	return nil
}

// newLogger returns the process logger on stderr: the command's default
// level unless --log-level says otherwise, text unless --log-format json.
func newLogger(level slog.Level) *slog.Logger {
	c := logSettings.Load()
	if c == nil {
		c = &logConfig{}
	}
	if c.level != nil {
		level = *c.level
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
