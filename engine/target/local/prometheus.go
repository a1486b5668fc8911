package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// PrometheusBinary returns the prometheus executable: the one on PATH, else
// /usr/bin/prometheus (Debian's prometheus package). It fails with
// engine.KindInvalid when neither exists.
func PrometheusBinary() (string, error) {
	if b, err := exec.LookPath("prometheus"); err == nil {
		return b, nil
	}
	if st, err := os.Stat("/usr/bin/prometheus"); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return "/usr/bin/prometheus", nil
	}
	return "", engine.E(engine.KindInvalid, "prometheus", errors.New("no prometheus binary on PATH or in /usr/bin (hint: apt-get install -y prometheus, or pass --prometheus URL of a running server)"))
}

// ScrapeTarget is one node Prometheus scrapes: its /metrics address and
// the labels chaosgate's selectors match (arm, node).
type ScrapeTarget struct {
	Arm, Node, Addr string
}

// PrometheusConfig describes a Prometheus started for a run.
type PrometheusConfig struct {
	// Binary is the prometheus executable (empty: PrometheusBinary).
	Binary string
	// Dir holds the configuration, the TSDB and the log.
	Dir string
	// Targets are scraped every Interval with the labels job="chaosgate",
	// arm and node.
	Targets  []ScrapeTarget
	Interval time.Duration // default 1s
}

// Prometheus is a running Prometheus server, a child of this process: it
// dies with it (Pdeathsig on Linux) and Stop ends it by pid.
type Prometheus struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Proc identifies the process (pid and start time) for a journal.
	Proc engine.Proc
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// FileSD returns the targets in Prometheus' file_sd format, so that a
// user's own Prometheus can scrape the same nodes with the same labels
// (file_sd_configs: [{files: [PATH]}]).
func FileSD(targets []ScrapeTarget) ([]byte, error) {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	gs := make([]group, 0, len(targets))
	for _, t := range sortedTargets(targets) {
		gs = append(gs, group{Targets: []string{t.Addr}, Labels: map[string]string{"job": "chaosgate", "arm": t.Arm, "node": t.Node}})
	}
	return json.MarshalIndent(gs, "", "  ")
}

func sortedTargets(ts []ScrapeTarget) []ScrapeTarget {
	out := append([]ScrapeTarget(nil), ts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Arm+"/"+out[i].Node < out[j].Arm+"/"+out[j].Node })
	return out
}

// PrometheusYAML is the configuration a started Prometheus runs: one
// static target per node, labelled with its arm and node.
func PrometheusYAML(targets []ScrapeTarget, interval time.Duration) string {
	if interval <= 0 {
		interval = time.Second
	}
	iv := strconv.FormatInt(max(1, interval.Milliseconds()), 10) + "ms"
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\nscrape_configs:\n  - job_name: chaosgate\n    static_configs:\n", iv, iv, iv)
	for _, t := range sortedTargets(targets) {
		fmt.Fprintf(&b, "      - targets: [%q]\n        labels: {arm: %q, node: %q}\n", t.Addr, t.Arm, t.Node)
	}
	return b.String()
}

// StartPrometheus writes the configuration, starts Prometheus on a free
// 127.0.0.1 port with its TSDB under cfg.Dir, and waits (at most 60 s)
// until it is ready. The caller stops it with Stop.
func StartPrometheus(ctx context.Context, cfg PrometheusConfig) (*Prometheus, error) {
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = PrometheusBinary(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, engine.E(engine.KindUnavailable, "prometheus", err)
	}
	cfgPath := filepath.Join(cfg.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(PrometheusYAML(cfg.Targets, cfg.Interval)), 0o644); err != nil {
		return nil, engine.E(engine.KindUnavailable, "prometheus", err)
	}
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, engine.E(engine.KindUnavailable, "prometheus", err)
	}
	logf, err := os.Create(filepath.Join(cfg.Dir, "prometheus.log"))
	if err != nil {
		return nil, engine.E(engine.KindUnavailable, "prometheus", err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(cfg.Dir, "data"),
		"--web.listen-address="+addrs[0], "--log.level=warn", "--storage.tsdb.retention.time=1d")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, engine.E(engine.KindUnavailable, "prometheus", fmt.Errorf("start %s: %w", bin, err))
	}
	p := &Prometheus{URL: "http://" + addrs[0], dir: cfg.Dir, cmd: cmd, done: make(chan struct{}), logf: logf}
	p.Proc, _ = engine.ProcOf(cmd.Process.Pid)
	if p.Proc.Pid == 0 {
		p.Proc.Pid = cmd.Process.Pid
	}
	go func() { cmd.Wait(); close(p.done) }()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for {
		req, _ := http.NewRequestWithContext(wctx, http.MethodGet, p.URL+"/-/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			p.Stop()
			return nil, engine.E(engine.KindUnavailable, "prometheus", fmt.Errorf("exited before it was ready:\n%s", p.Log()))
		case <-wctx.Done():
			p.Stop()
			return nil, engine.E(engine.KindUnavailable, "prometheus", fmt.Errorf("not ready within 60 s: %v\n%s", wctx.Err(), p.Log()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the server by pid (SIGTERM, SIGKILL after 10 s) and waits for
// it. Safe to call more than once.
func (p *Prometheus) Stop() {
	if p == nil || p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.logf.Close()
}

// Log returns the tail of the server's log.
func (p *Prometheus) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "prometheus.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
