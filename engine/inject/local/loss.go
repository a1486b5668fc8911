package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/internal/pktloss"
)

// KernelLossUndo is a packetLoss or corrupt played with real dropped
// packets: the nftables table that drops them, the loopback ports it
// drops on (the listening ports of the chosen edges' proxies, so every
// packet a sender on the edge sends into it or gets back from it is at
// risk) and the edges, kept to measure the effect.
type KernelLossUndo struct {
	Table string     `json:"table"`
	Ports []int      `json:"ports"`
	Edges []ToxicRef `json:"edges"`
}

// prepareLoss chooses how a packetLoss or corrupt is played. Where this
// process may program nftables, the kernel drops the share of the TCP
// packets on the edges' proxy ports, and TCP recovers them as it would on a
// real network (retransmission timeouts, a shrinking congestion window).
// Elsewhere, or with Config.LossInProxies, the proxies play it: a chunk
// with a lost segment is held for one retransmission timeout. u.Toxics
// holds the edges' toxic references on entry.
func (in *Injector) prepareLoss(t engine.Target, f engine.Fault, u *Undo, a *engine.Applied) {
	what := "packets lost"
	if f.Kind == engine.Corrupt {
		what = "packets corrupted (played as loss: a TCP receiver drops a corrupted segment on its checksum, and the sender resends it)"
	}
	why := "Config.LossInProxies"
	if !in.cfg.LossInProxies {
		err := pktloss.Available()
		if err == nil {
			if k := in.kernelLoss(t, f, u.Toxics); k != nil {
				u.KernelLoss, u.Toxics = k, nil
				a.Detail = fmt.Sprintf("%.3g%% of the %s each way on %s, dropped in the kernel (nftables table %s, ports %v)", 100*f.LossRatio, what, describeEdges(f.Edges), k.Table, k.Ports)
				return
			}
			err = errors.New("no proxy of the chosen edges is listening")
		}
		why = err.Error()
	}
	for i := range u.Toxics {
		u.Toxics[i].Kind = "loss"
	}
	a.Detail = fmt.Sprintf("%.3g%% of the %s each way on %s, played on the proxies: a chunk with a lost segment waits one retransmission timeout (no kernel packet loss: %s)", 100*f.LossRatio, what, describeEdges(f.Edges), why)
}

// kernelLoss resolves the listening ports of the edges' proxies and names
// the table after the arm, the fault and the ports, so that two runs on
// one host never share a table.
func (in *Injector) kernelLoss(t engine.Target, f engine.Fault, refs []ToxicRef) *KernelLossUndo {
	seen := map[int]bool{}
	var ports []int
	for _, r := range refs {
		_, p, err := net.SplitHostPort(in.addr(r.Proxy))
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(p); err == nil && !seen[n] {
			seen[n] = true
			ports = append(ports, n)
		}
	}
	if len(ports) == 0 {
		return nil
	}
	sort.Ints(ports)
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%v", t.Arm, f.ID, ports)
	return &KernelLossUndo{Table: fmt.Sprintf("%s%016x", pktloss.TablePrefix, h.Sum64()), Ports: ports, Edges: refs}
}

// injectLoss drops the packets in the kernel, or adds the segment-loss
// toxics on every chosen edge.
func (in *Injector) injectLoss(f engine.Fault, u Undo) error {
	if k := u.KernelLoss; k != nil {
		if err := pktloss.Apply(k.Table, k.Ports, f.LossRatio); err != nil {
			return engine.E(engine.KindUnavailable, "packet loss", err)
		}
		return nil
	}
	for _, r := range u.Toxics {
		err := in.proxies().AddLoss(r.Proxy, r.Toxic, f.LossRatio)
		if err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
			return err
		}
	}
	return nil
}

// confirmLoss counts the round trips through a lossy edge that a
// retransmission timeout stalled, against the share its loss should
// stall. Kernel loss also reads back the packets the table dropped of
// those it saw while the round trips ran: the loss ratio observed on
// the probe connection and the load beside it.
func (in *Injector) confirmLoss(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	refs := u.Toxics
	k := u.KernelLoss
	var before pktloss.Counts
	if k != nil {
		refs = k.Edges
		var err error
		if before, err = pktloss.Read(k.Table); errors.Is(err, pktloss.ErrNoTable) {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: "nftables table " + k.Table + " is gone: nothing drops packets"}
		} else if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
		}
	}
	p := in.measurable(refs)
	if p == "" {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("loss on %d edges; none can be measured", len(refs))}
	}
	s := proxy.MeasureStalls(ctx, in.cfg.RoundTripFor(p), in.addr(p), proxy.LossRoundTrips(a.Fault.LossRatio), 10*time.Second)
	c := proxy.ConfirmLoss(s, a.Fault.LossRatio)
	c.Measurement = p + ": " + c.Measurement
	if k != nil {
		after, err := pktloss.Read(k.Table)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: c.Measurement + "; nftables table " + k.Table + ": " + err.Error()}
		}
		d := pktloss.Counts{Seen: after.Seen - before.Seen, Dropped: after.Dropped - before.Dropped}
		c.Measurement += fmt.Sprintf("; the kernel dropped %d of %d packets on ports %v meanwhile (%.1f%%; %.3g%% set)", d.Dropped, d.Seen, k.Ports, 100*d.Ratio(), 100*a.Fault.LossRatio)
		if d.Seen > 0 && d.Dropped == 0 && a.Fault.LossRatio*float64(d.Seen) >= 10 {
			c.Outcome = engine.Mismatch
		}
	}
	return c
}
