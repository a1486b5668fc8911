package load

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chaosgate/chaosgate/engine/history"
)

// statGauges maps aggregator metrics to the names of the history's stats
// events (I6). Per-partition gauges are summed into the node's total when
// their cap is per node (dedup entries, in-flight messages) and reduced to
// their maximum otherwise (reorder depth).
var statGauges = map[string]string{
	"chaosgate_aggregator_memory_bytes":      "memory_bytes",
	"chaosgate_aggregator_rss_cap_bytes":     "memory_bytes_cap",
	"chaosgate_aggregator_reorder_depth":     "reorder_depth",
	"chaosgate_aggregator_dedup_entries":     "dedup_entries",
	"chaosgate_aggregator_inflight_requests": "inflight_requests",
	"chaosgate_aggregator_inflight_messages": "inflight_messages",
}

// StatsDetail scrapes GET /metrics of one node and returns its stats
// detail ("name=value ..." with the caps of caps appended), for a
// {"op":"node","event":"stats"} history line.
func StatsDetail(ctx context.Context, hc *http.Client, addr string, caps map[string]float64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: GET /metrics: HTTP %d", addr, resp.StatusCode)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return "", err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		return "", fmt.Errorf("%s: /metrics: %w", addr, err)
	}
	summed := map[string]bool{"dedup_entries": true, "inflight_messages": true}
	vals := map[string]float64{}
	for metric, name := range statGauges {
		f := fams[metric]
		if f == nil {
			continue
		}
		for i, m := range f.GetMetric() {
			v := gaugeValue(m)
			switch cur, ok := vals[name]; {
			case summed[name]:
				vals[name] = cur + v
			case i == 0 || !ok || v > cur:
				vals[name] = v
			}
		}
	}
	for name, c := range caps {
		vals[name] = c
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%g", n, vals[n])
	}
	return b.String(), nil
}

func gaugeValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// statsGrace is how long a round of stats scrapes under way when the
// phase ends may still take: a node deep in an overload answers late, and
// its answer from the burst's tail is the sample the I6 caps check needs
// most.
const statsGrace = 2 * time.Second

// statsLoop records every target's stats every interval until ctx ends.
// Each round scrapes the targets together, each on its own deadline, so
// that one node slow to answer does not starve the others of samples; a
// round under way when ctx ends gets statsGrace to finish.
func (g *Generator) statsLoop(ctx context.Context) {
	var mu sync.Mutex
	names := map[string]string{}
	// its own connections: the load's may all be busy
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	t := time.NewTicker(g.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, func() { time.AfterFunc(statsGrace, cancel) })
		var wg sync.WaitGroup
		for _, addr := range g.cfg.Targets() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.recordStats(rctx, hc, addr, names, &mu)
			}()
		}
		wg.Wait()
		stop()
		cancel()
	}
}

// recordStats scrapes one target and records its "stats" node event;
// names maps the target's address to its node id (under mu), learnt once.
func (g *Generator) recordStats(ctx context.Context, hc *http.Client, addr string, names map[string]string, mu *sync.Mutex) {
	mu.Lock()
	id := names[addr]
	mu.Unlock()
	if id == "" {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ci, err := FetchCluster(cctx, StaticTargets(addr))
		cancel()
		if err == nil && ci.Node != "" {
			id = ci.Node
			mu.Lock()
			names[addr] = id
			mu.Unlock()
		} else {
			id = addr
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	detail, err := StatsDetail(sctx, hc, addr, g.cfg.StatsCaps)
	cancel()
	if err != nil || detail == "" {
		return // a node that is down has no stats
	}
	g.record(history.Line{Op: history.OpNode, T: time.Now(), Node: id, NodeEvent: history.NodeStats, Detail: detail})
}
