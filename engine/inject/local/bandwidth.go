package local

import (
	"context"
	"fmt"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

// transferFor is how a bandwidth fault's throughput is measured on a
// proxy: the configured TransferFor, else an HTTP GET of /metrics (a body
// of some tens of kilobytes) wherever a round trip can be measured.
func (in *Injector) transferFor(name string) proxy.Transfer {
	if in.cfg.TransferFor != nil {
		return in.cfg.TransferFor(name)
	}
	if in.cfg.RoundTripFor(name) != nil {
		return proxy.HTTPTransfer("/metrics")
	}
	return nil
}

// measurableTransfer is the first edge of refs whose throughput can be
// measured.
func (in *Injector) measurableTransfer(refs []ToxicRef) string {
	for _, r := range refs {
		if in.transferFor(r.Proxy) != nil && in.addr(r.Proxy) != "" {
			return r.Proxy
		}
	}
	return ""
}

// bandwidthTransfers is the number of transfers a throughput measurement
// takes before the cap and under it; transferTimeout bounds one of them.
const (
	bandwidthTransfersBefore = 5
	bandwidthTransfers       = 3
)

func transferTimeout(bytesPerSecond int64) time.Duration {
	return 2*time.Second + time.Duration(float64(256<<10)/float64(max(1, bytesPerSecond))*float64(time.Second))
}

// injectBandwidth measures the throughput of the first measurable edge
// (once per fault) and caps every chosen edge.
func (in *Injector) injectBandwidth(ctx context.Context, f engine.Fault, refs []ToxicRef) error {
	if p := in.measurableTransfer(refs); p != "" {
		in.mu.Lock()
		_, done := in.rateBefore[f.ID]
		in.mu.Unlock()
		if !done {
			s := proxy.MeasureThroughput(ctx, in.transferFor(p), in.addr(p), bandwidthTransfersBefore, transferTimeout(f.BytesPerSecond))
			in.mu.Lock()
			in.rateBefore[f.ID] = s
			in.mu.Unlock()
		}
	}
	for _, r := range refs {
		err := in.proxies().AddBandwidth(r.Proxy, r.Toxic, f.BytesPerSecond)
		if err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
			return err
		}
	}
	return nil
}

// confirmBandwidth measures the throughput of a capped edge again and
// compares it with the cap and with the throughput before.
func (in *Injector) confirmBandwidth(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	p := in.measurableTransfer(u.Toxics)
	in.mu.Lock()
	before, ok := in.rateBefore[a.ID]
	in.mu.Unlock()
	if p == "" || !ok {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("bandwidth capped on %d edges; none can be measured", len(u.Toxics))}
	}
	after := proxy.MeasureThroughput(ctx, in.transferFor(p), in.addr(p), bandwidthTransfers, transferTimeout(a.Fault.BytesPerSecond))
	c := proxy.ConfirmBandwidth(before, after, a.Fault.BytesPerSecond)
	c.Measurement = p + ": " + c.Measurement
	return c
}
