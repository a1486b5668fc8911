// Package logstest starts a real log server for tests: VictoriaLogs
// (Apache-2.0), built from the Go module proxy by
// scripts/build-victoria-logs.sh. It accepts Loki's push API and answers
// LogsQL. The server listens on a free 127.0.0.1 port with its own storage
// directory and is stopped by pid when the test ends. Outside CI a missing
// binary skips the test; with CI=true it fails it.
package logstest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/serverproc"
)

// Version is the VictoriaLogs release the build script caches.
const Version = "1.52.2"

// Server is a running VictoriaLogs.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the storage and the server's log.
	Dir  string
	proc *serverproc.Process
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
	url := "http://" + addr
	proc := serverproc.Start(t, "victoria-logs", bin, []string{"-httpListenAddr=" + addr,
		"-storageDataPath=" + filepath.Join(dir, "data"), "-loggerLevel=WARN", "-retentionPeriod=7d"}, dir, url+"/health", 30*time.Second)
	return &Server{URL: url, Dir: dir, proc: proc}
}

// Log returns the tail of the server's log.
func (s *Server) Log() string { return s.proc.Log() }
