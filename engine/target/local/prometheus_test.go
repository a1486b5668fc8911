package local

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaosgate/chaosgate/engine"
)

// TestStartedPrometheusScrapesTargetsWithArmLabelsAndStopsByPid starts a
// real Prometheus on a node served by a real client_golang handler: the
// series carry the arm and node labels chaosgate's selectors match, and
// Stop ends the process by pid.
func TestStartedPrometheusScrapesTargetsWithArmLabelsAndStopsByPid(t *testing.T) {
	if _, err := PrometheusBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: %v", err)
		}
		t.Skip(err)
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests."})
	reg.MustRegister(c)
	c.Add(7)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	p, err := StartPrometheus(context.Background(), PrometheusConfig{Dir: t.TempDir(), Interval: time.Second,
		Targets: []ScrapeTarget{{Arm: "canary", Node: "n1", Addr: l.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") || p.Proc.Pid <= 0 {
		t.Fatalf("URL %q, proc %+v", p.URL, p.Proc)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	q := url.QueryEscape(`test_requests_total{job="chaosgate", arm="canary", node="n1"}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		resp, err := client.Get(p.URL + "/api/v1/query?query=" + q)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		if err == nil && len(body.Data.Result) == 1 && body.Data.Result[0].Value[1] == "7" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scraped sample with the arm and node labels within 30 s (err %v, %+v)\n%s", err, body, p.Log())
		}
		time.Sleep(300 * time.Millisecond)
	}
	pid := p.Proc.Pid
	p.Stop()
	if _, _, err := engine.ProcStat(pid); engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("prometheus pid %d still exists after Stop (err %v)", pid, err)
	}
}
