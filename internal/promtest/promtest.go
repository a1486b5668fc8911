// Package promtest starts a real Prometheus server on 127.0.0.1 for tests:
// Debian's prometheus package (2.42), or Prometheus 3.16.0 built with
// Kubernetes service discovery (scripts/build-prometheus-kubernetes-sd.sh)
// for the test cluster. A free port, its own storage directory, stopped by
// pid when the test ends. Outside CI a missing binary skips the test; with
// CI=true it fails it.
package promtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/serverproc"
)

// Server is a running Prometheus.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the configuration, the TSDB and the log.
	Dir  string
	proc *serverproc.Process
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

// KubernetesSDVersion is the Prometheus built with Kubernetes service
// discovery.
const KubernetesSDVersion = "3.16.0"

// KubernetesSDBinary returns Prometheus with kubernetes_sd_configs:
// $PROMETHEUS_KUBERNETES_SD_BIN, else the cached build of
// scripts/build-prometheus-kubernetes-sd.sh (make test builds it). Outside
// CI a missing binary skips t; with CI=true it fails t.
func KubernetesSDBinary(t testing.TB) string {
	t.Helper()
	return buildcache.Binary(t, "PROMETHEUS_KUBERNETES_SD_BIN", "prometheus-kubernetes-sd-"+KubernetesSDVersion, "scripts/build-prometheus-kubernetes-sd.sh")
}

// Start runs Debian's Prometheus scraping every second with scrapeConfigs
// (the YAML list under scrape_configs:, indented by two spaces per level
// as it would be at the top level) and waits until it is ready.
func Start(t testing.TB, scrapeConfigs string) *Server {
	t.Helper()
	conf := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + scrapeConfigs
	return StartConfig(t, Binary(t), conf)
}

// StartConfig runs the Prometheus binary bin with the whole configuration
// file conf and waits until it is ready.
func StartConfig(t testing.TB, bin, conf string) *Server {
	t.Helper()
	dir := t.TempDir()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := serverproc.Start(t, "prometheus", bin, []string{"--config.file=" + cfgPath, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, dir, "http://"+addr+"/-/ready", 60*time.Second)
	return &Server{URL: "http://" + addr, Dir: dir, proc: proc}
}

// Log returns the tail of the server's log.
func (s *Server) Log() string { return s.proc.Log() }
