package upstream

import (
	"github.com/prometheus/client_golang/prometheus"
)

// upMetrics are the upstreams' Prometheus metrics (one set per node).
type upMetrics struct {
	messages           *prometheus.CounterVec
	retries            *prometheus.CounterVec
	deadLettered       *prometheus.CounterVec
	replays            *prometheus.CounterVec
	breakerTransitions *prometheus.CounterVec
	rebalances         *prometheus.CounterVec
	processSeconds     *prometheus.HistogramVec
	lag                *prometheus.GaugeVec
	committed          *prometheus.GaugeVec
	endOffset          *prometheus.GaugeVec
}

func newUpMetrics() *upMetrics {
	return &upMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_upstream_messages_total",
			Help: "Upstream messages accounted for, by upstream and result (stored, duplicate)."}, []string{"upstream", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_upstream_retries_total",
			Help: "Upstream message attempts retried after a failure."}, []string{"upstream"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_upstream_dead_lettered_total",
			Help: "Upstream messages written to the dead-letter queue, by reason (retries_exhausted, invalid, late, stale_epoch, other)."}, []string{"upstream", "reason"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_dlq_replays_total",
			Help: "Dead letters replayed, by result (stored, duplicate, transient, permanent)."}, []string{"result"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_upstream_breaker_transitions_total",
			Help: "Circuit breaker state changes of an upstream's downstream path."}, []string{"upstream", "from", "to"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_aggregator_upstream_rebalance_events_total",
			Help: "Consumer-group events of an upstream: assigned, revoked, lost."}, []string{"upstream", "event"}),
		processSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chaosgate_aggregator_upstream_process_seconds",
			Help:    "Time from taking a batch from the upstream to having every message of it stored or dead-lettered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"upstream"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chaosgate_aggregator_upstream_consumer_lag_messages",
			Help: "Messages in the upstream not yet stored and acknowledged, per upstream and upstream partition (\"all\" for a JetStream consumer)."}, []string{"upstream", "partition"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chaosgate_aggregator_upstream_committed_offset",
			Help: "Next upstream offset to consume (Kafka committed offset, JetStream ack floor + 1), per upstream and partition."}, []string{"upstream", "partition"}),
		endOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chaosgate_aggregator_upstream_end_offset",
			Help: "Upstream high watermark (Kafka end offset, JetStream last sequence + 1), per upstream and partition."}, []string{"upstream", "partition"}),
	}
}

func (m *upMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.retries, m.deadLettered, m.replays, m.breakerTransitions, m.rebalances, m.processSeconds,
		m.lag, m.committed, m.endOffset}
}
