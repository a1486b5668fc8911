// Package promtest starts a real Prometheus server (Debian's prometheus
// package, 2.42) on 127.0.0.1 for tests: a free port, its own storage
// directory, a 1 s scrape interval, stopped by pid when the test ends.
// Outside CI a missing binary skips the test; with CI=true it fails it.
package promtest

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

	"github.com/chaosgate/chaosgate/internal/freeport"
)

// Server is a running Prometheus.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the configuration, the TSDB and the log.
	Dir string
	cmd *exec.Cmd
}

// Binary returns the prometheus binary: $PROMETHEUS_BIN, else the one on
// PATH. Outside CI a missing binary skips t; with CI=true it fails t.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("PROMETHEUS_BIN"); b != "" {
		return b
	}
	b, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prometheus not found (CI: make test installs Debian's prometheus package)")
		}
		t.Skip("prometheus not found (hint: apt-get install -y prometheus)")
	}
	return b
}

// Start runs Prometheus scraping every second with scrapeConfigs (the
// YAML list under scrape_configs:, indented by two spaces per level as it
// would be at the top level) and waits until it is ready.
func Start(t testing.TB, scrapeConfigs string) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + scrapeConfigs
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start prometheus: %v", err)
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				http.DefaultClient.CloseIdleConnections()
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited before it was ready:\n%s", s.Log())
		case <-ctx.Done():
			t.Fatalf("prometheus not ready within 60 s:\n%s", s.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Log returns the tail of the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "prometheus.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
