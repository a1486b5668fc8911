// Package bench runs the aggregator benchmark side by side with a real peer,
// NATS JetStream: the same workload (payload sizes, sources, keys, closed
// and open loop, batch size) against a local 3-node aggregator cluster and a
// local 3-server JetStream R3 cluster with message deduplication, and
// reports msgs/s and latency quantiles for both.
package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Workload is one benchmark cell, run identically against both systems.
type Workload struct {
	Payload     int           // bytes per message
	Sources     int           // sources (aggregator) / publishers (JetStream)
	Keys        int           // group keys (aggregator) / subjects (JetStream)
	Batch       int           // messages per request / per async publish burst
	Concurrency int           // closed loop: requests in flight; 0 with Rate > 0
	Rate        float64       // open loop: messages per second (0: closed loop)
	Duration    time.Duration // how long the cell runs
	// RouteToLeader sends aggregator messages straight to their partition
	// leaders (JetStream clients always publish through any server).
	RouteToLeader bool
	// Client is how the aggregator is driven: ClientGRPC (default), a
	// partition-aware producer on the gRPC Ingest streams, or ClientHTTP,
	// chaosgate's load generator posting JSON batches.
	Client string
}

// The aggregator clients of the benchmark.
const (
	ClientGRPC = "grpc"
	ClientHTTP = "http"
)

// Mode names the loop.
func (w Workload) Mode() string {
	if w.Rate > 0 {
		return fmt.Sprintf("open %.0f/s", w.Rate)
	}
	return fmt.Sprintf("closed c=%d", w.Concurrency)
}

// Name labels the cell.
func (w Workload) Name() string {
	return fmt.Sprintf("%dB %s batch=%d", w.Payload, w.Mode(), w.Batch)
}

// WorkloadFigures is one system's figures for one workload.
type WorkloadFigures struct {
	System     string        `json:"system"`
	Tier       string        `json:"durability"`
	Workload   string        `json:"workload"`
	Acked      int64         `json:"acked"`
	Errors     int64         `json:"errors"`
	Throughput float64       `json:"msgs_per_s"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	P999       time.Duration `json:"p999"`
}

// sendFunc sends n new messages and returns how many were acknowledged.
type sendFunc func(ctx context.Context, n int) (int, error)

// drive runs w against send: closed loop with w.Concurrency workers, or open
// loop issuing a batch every Batch/Rate seconds with latency measured from
// the scheduled time (no coordinated omission).
func drive(ctx context.Context, w Workload, send sendFunc) (acked, errs int64, hist *hdrhistogram.Histogram, elapsed time.Duration) {
	hist = hdrhistogram.New(1, 60_000_000, 3)
	var mu sync.Mutex
	var a, e atomic.Int64
	one := func(sched time.Time) {
		n, err := send(ctx, w.Batch)
		a.Add(int64(n))
		if err != nil || n < w.Batch {
			e.Add(int64(w.Batch - n))
			return
		}
		mu.Lock()
		_ = hist.RecordValue(max(1, time.Since(sched).Microseconds()))
		mu.Unlock()
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, w.Duration)
	defer cancel()
	var wg sync.WaitGroup
	if w.Rate > 0 {
		interval := time.Duration(float64(time.Second) * float64(w.Batch) / w.Rate)
		sem := make(chan struct{}, 4096)
		next := time.Now()
		for dctx.Err() == nil {
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-dctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			if dctx.Err() != nil {
				break
			}
			sched := next
			next = next.Add(interval)
			select {
			case sem <- struct{}{}:
			case <-dctx.Done():
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				one(sched)
			}()
		}
	} else {
		for i := 0; i < max(1, w.Concurrency); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for dctx.Err() == nil {
					one(time.Now())
				}
			}()
		}
	}
	wg.Wait()
	return a.Load(), e.Load(), hist, time.Since(start)
}

func quantiles(r *WorkloadFigures, h *hdrhistogram.Histogram) {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	r.P50, r.P99, r.P999 = us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(99)), us(h.ValueAtQuantile(99.9))
}
