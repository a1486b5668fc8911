package node

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg          *prometheus.Registry
	ingest       *prometheus.CounterVec
	rejects      *prometheus.CounterVec
	dedupHits    *prometheus.CounterVec
	gaps         prometheus.Counter
	gapSeqs      prometheus.Counter
	late         prometheus.Counter
	applySeconds prometheus.Histogram
	forwardErrs  prometheus.Counter
	forwardGone  prometheus.Counter
	forwards     prometheus.Counter
	hlcOffset    prometheus.Counter
	httpRequests *prometheus.CounterVec
	leaked       prometheus.GaugeFunc
	wsOpened     prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.ingest = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_ingest_total", Help: "Messages ingested by result status."}, []string{"status"})
	m.rejects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_rejected_total", Help: "Messages rejected by admission control, by reason."}, []string{"reason"})
	m.dedupHits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_dedup_hits_total", Help: "Duplicates caught, by level (seq, msg_id)."}, []string{"level"})
	m.gaps = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_gaps_total", Help: "GAP records emitted (applied on this replica)."})
	m.gapSeqs = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_gap_seqs_total", Help: "Sequence numbers declared missing by GAP records."})
	m.late = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_late_total", Help: "Messages that arrived after their sequence was declared a gap."})
	m.applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chaosgate_aggregator_apply_seconds", Help: "Latency from proposal to commit+apply of a batch.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.forwardErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_forward_errors_total", Help: "Requests that could not be forwarded to a leader."})
	m.forwardGone = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_forwards_abandoned_total", Help: "Forwarded requests whose client went away (cancelled, timed out) before the leader answered: not a failure of the leader."})
	m.forwards = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_forwards_total", Help: "Requests forwarded to a partition leader."})
	m.hlcOffset = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_hlc_offset_rejects_total", Help: "Received HLC timestamps refused for exceeding the max clock offset."})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_http_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	m.wsOpened = prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_aggregator_websocket_connections_opened_total", Help: "WebSocket ingest connections accepted."})
	f(m.wsOpened)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_websocket_connections", Help: "WebSocket ingest connections open."}, func() float64 { return float64(n.ws.count()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_connection_buckets", Help: "Per-connection token buckets held."}, func() float64 { return float64(n.conns.Len()) }))
	for _, c := range []prometheus.Collector{m.ingest, m.rejects, m.dedupHits, m.gaps, m.gapSeqs, m.late, m.applySeconds, m.forwardErrs, m.forwardGone, m.forwards, m.hlcOffset, m.httpRequests} {
		f(c)
	}
	defect := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chaosgate_aggregator_defect", Help: "1 for each defect turned on (--defect)."}, []string{"name"})
	for _, d := range n.cfg.Defects.List() {
		defect.WithLabelValues(d).Set(1)
	}
	f(defect)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_clock_skew_seconds", Help: "Offset added to the physical clock by the admin API (the clock-skew fault's input)."}, func() float64 { return float64(n.skew.Load()) / 1e9 }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_physical_clock_seconds", Help: "The physical clock the HLC reads (Unix seconds, skew included)."}, func() float64 { return float64(n.physical()) / 1e9 }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_leaked_bytes", Help: "Bytes retained by the leak defect."}, func() float64 { return float64(n.leakedBytes.Load()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_queued_unbounded", Help: "Messages parked by the unbounded-queue defect."}, func() float64 { return float64(n.unboundedQueued.Load()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_memory_bytes", Help: "Memory the admission control sees (Go runtime total minus released)."}, func() float64 { return float64(n.memBytes.Load()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_rss_cap_bytes", Help: "Configured memory cap (--rss-cap)."}, func() float64 { return float64(n.cfg.RSSCap) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_inflight_requests", Help: "HTTP/gRPC requests in flight."}, func() float64 { return float64(n.inflightReq.Load()) }))
	f(&partitionCollector{n: n})
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	descTerm     = prometheus.NewDesc("chaosgate_aggregator_raft_term", "Raft term (the fencing epoch) per partition.", []string{"partition"}, nil)
	descLeader   = prometheus.NewDesc("chaosgate_aggregator_raft_leader", "1 when this node leads the partition.", []string{"partition"}, nil)
	descLeaderOK = prometheus.NewDesc("chaosgate_aggregator_raft_has_leader", "1 when the partition has a known leader.", []string{"partition"}, nil)
	descDepth    = prometheus.NewDesc("chaosgate_aggregator_reorder_depth", "Messages held in the reorder buffer per partition.", []string{"partition"}, nil)
	descDedup    = prometheus.NewDesc("chaosgate_aggregator_dedup_entries", "Entries in the (msg_id, fingerprint) dedup set per partition.", []string{"partition"}, nil)
	descHWM      = prometheus.NewDesc("chaosgate_aggregator_stream_high_watermark", "Output stream length per partition.", []string{"partition"}, nil)
	descLimit    = prometheus.NewDesc("chaosgate_aggregator_concurrency_limit", "Adaptive limit on in-flight proposed messages per partition.", []string{"partition"}, nil)
	descInflight = prometheus.NewDesc("chaosgate_aggregator_inflight_messages", "Proposed messages awaiting commit per partition.", []string{"partition"}, nil)
	descApplied  = prometheus.NewDesc("chaosgate_aggregator_raft_applied_index", "Last raft index applied per partition.", []string{"partition"}, nil)
)

type partitionCollector struct{ n *Node }

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descLeader, descLeaderOK, descDepth, descDedup, descHWM, descLimit, descInflight, descApplied} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.n.groupsSnapshot() {
		p := itoa(g.id)
		b := func(v bool) float64 {
			if v {
				return 1
			}
			return 0
		}
		depth, dd, _ := g.fsm.stats()
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(g.epoch()), p)
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b(g.isLeader()), p)
		ch <- prometheus.MustNewConstMetric(descLeaderOK, prometheus.GaugeValue, b(g.leader() != ""), p)
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(depth), p)
		ch <- prometheus.MustNewConstMetric(descDedup, prometheus.GaugeValue, float64(dd), p)
		ch <- prometheus.MustNewConstMetric(descHWM, prometheus.GaugeValue, float64(g.fsm.hwm.Load()), p)
		ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, float64(g.aimd.Limit()), p)
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(g.aimd.Inflight()), p)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(g.raft.AppliedIndex()), p)
	}
}

// forwardFailed counts a forward that got no answer from the leader: a
// failure of the leader (a dependency failure) unless the request's own
// client went away first, which says nothing about the leader.
func (m *metrics) forwardFailed(ctx context.Context) {
	if ctx.Err() != nil {
		m.forwardGone.Inc()
		return
	}
	m.forwardErrs.Inc()
}
