// Package logstest starts a real log server for tests: VictoriaLogs
// (Apache-2.0), built from the Go module proxy by
// scripts/build-victoria-logs.sh. It accepts Loki's push API and answers
// LogsQL. The server listens on a free 127.0.0.1 port with its own storage
// directory and is stopped by pid when the test ends. Outside CI a missing
// binary skips the test; with CI=true it fails it.
package logstest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// Version is the VictoriaLogs release the build script caches.
const Version = "1.52.2"

// Server is a running VictoriaLogs.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the storage and the server's log.
	Dir string
	cmd *exec.Cmd
}

// Start runs VictoriaLogs and waits until it answers /health.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := buildcache.Binary(t, "VICTORIA_LOGS_BIN", "victoria-logs-"+Version, "scripts/build-victoria-logs.sh")
	dir := t.TempDir()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	logf, err := os.Create(filepath.Join(dir, "victoria-logs.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(dir, "data"),
		"-loggerLevel=WARN", "-retentionPeriod=7d")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start victoria-logs: %v", err)
	}
	s := &Server{URL: "http://" + addr, Dir: dir, cmd: cmd}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				http.DefaultClient.CloseIdleConnections()
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("victoria-logs exited before it was ready:\n%s", s.Log())
		case <-ctx.Done():
			t.Fatalf("victoria-logs not ready within 30 s:\n%s", s.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Log returns the tail of the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "victoria-logs.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
