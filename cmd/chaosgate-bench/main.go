// Command chaosgate-bench holds the benchmarks that measure chaosgate against
// a peer library the chaosgate binary itself does not ship: `chaosgate-bench
// ledger` runs the evidence ledger side by side with tessera's POSIX log.
// Keeping them here keeps the peers out of the shipped chaosgate binary.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

// Exit codes: 0 done, 2 bad flags or a storage error (as chaosgate's own
// commands that cannot produce a result).
const (
	exitOK    = 0
	exitUsage = 2
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "chaosgate-bench",
		Short:         "Benchmarks of chaosgate against peers the chaosgate binary does not link",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cpuProfile string
	var profileFile *os.File
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (read it with `go tool pprof`)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		profileFile = f
		return nil
	}
	root.PersistentPostRunE = func(*cobra.Command, []string) error {
		if profileFile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return profileFile.Close()
	}
	root.AddCommand(newBenchLedgerCmd())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "chaosgate-bench:", err)
	os.Exit(exitUsage) // every error: bad flags, an unknown command or a storage error
}
