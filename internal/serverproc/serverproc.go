// Package serverproc runs a server process for a test: its output in a log
// file of its own directory, stopped by pid when the test ends (SIGTERM,
// then SIGKILL after 10 s), and ready when an HTTP path answers 200. The
// test harnesses of real servers (internal/promtest, internal/logstest)
// start their binaries through it.
package serverproc

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a running server.
type Process struct {
	// Name names the server in errors ("prometheus").
	Name string
	// LogPath is the file that holds the server's stdout and stderr.
	LogPath string
	cmd     *exec.Cmd
}

// Start runs bin with args, its stdout and stderr in DIR/NAME.log, and
// waits until GET readyURL answers 200. It fails t when the server cannot
// start, exits first or is not ready within readyTimeout, with the tail of
// its log. The process is stopped when t ends.
func Start(t testing.TB, name, bin string, args []string, dir, readyURL string, readyTimeout time.Duration) *Process {
	t.Helper()
	p := &Process{Name: name, LogPath: filepath.Join(dir, name+".log")}
	logf, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// The server dies with the test process even when the test binary
	// ends without its cleanups (a panic, a -timeout): a leftover server
	// would load the host under the next tests.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				http.DefaultClient.CloseIdleConnections()
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited before it was ready:\n%s", name, p.Log())
		case <-ctx.Done():
			t.Fatalf("%s not ready within %s:\n%s", name, readyTimeout, p.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Log returns the last 30 lines of the server's log.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
