package gameday

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
)

// upstreamGen publishes one arm's share of the load to one of its brokers;
// the arm's nodes consume it from there. It writes to the arm's history, so
// the checker holds the broker's acknowledgements against the output.
type upstreamGen struct {
	arm  engine.Arm
	up   arms.Upstream
	gen  *load.Generator
	pub  load.Publisher
	rate float64
}

// upstreamLoad runs the upstream generators while a window is observed.
type upstreamLoad struct {
	gens []*upstreamGen

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// upstreamRate is the share of the availability rate each upstream of an
// arm publishes (msgs/s), at least 5.
func upstreamRate(rate float64) float64 { return max(5, rate/10) }

// setupUpstreams opens a publisher and a load generator per arm and
// upstream, and waits until every node's consumer is attached.
func (r *Run) setupUpstreams(ctx context.Context, parts int) error {
	ups := r.arms.Upstreams()
	if len(ups) == 0 {
		return nil
	}
	r.upLoad = &upstreamLoad{}
	for i, arm := range r.loadArms {
		for j, u := range ups {
			b, err := r.arms.Broker(arm, u.Name)
			if err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			pub, err := load.ParsePublisher(pctx, u.PublishURL(b.Address()))
			cancel()
			if err != nil {
				return engine.E(engine.KindUnavailable, fmt.Sprintf("publisher of upstream %s for %s", u.Name, arm), err)
			}
			g, err := load.New(ctx, load.Config{Targets: load.StaticTargets(r.arms.ClientAddrs(arm)...), Partitions: parts, Sources: 4, Keys: 16,
				Batch: 4, History: r.hists[arm], Publisher: pub, Timeout: 2 * time.Second, MaxRetries: 60, RetryGrace: 30 * time.Second, RetryBudget: r.retryBudget(),
				Name: fmt.Sprintf("%s-%s-%s", arm, u.Name, shortHash(r.runID)), IDNode: int64(10 + 10*i + j), Logger: r.cfg.Log})
			if err != nil {
				pub.Close()
				return engine.E(engine.KindUnavailable, "load generator of upstream "+u.Name, err)
			}
			r.upLoad.gens = append(r.upLoad.gens, &upstreamGen{arm: arm, up: u, gen: g, pub: pub, rate: upstreamRate(r.rate)})
		}
	}
	// every consumer attached before the load starts
	for _, ug := range r.upLoad.gens {
		for _, addr := range r.arms.DirectAddrs(ug.arm) {
			deadline := time.Now().Add(90 * time.Second)
			for {
				st, err := ug.gen.Upstreams(ctx, addr)
				if err == nil && attached(st, ug.up.Name) {
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return engine.E(engine.KindUnavailable, "upstreams", fmt.Errorf("the %s consumer of %s at %s is not attached: %v", ug.up.Name, ug.arm, addr, err))
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("upstreams: every arm runs its own %s; each arm's nodes consume them and %.0f msg/s per upstream are published to them", upstreamNames(ups), upstreamRate(r.rate)))
	return nil
}

func attached(st []load.UpstreamOffsets, name string) bool {
	for _, s := range st {
		if s.Name == name {
			return s.Attached
		}
	}
	return false
}

func upstreamNames(ups []arms.Upstream) string {
	s := ""
	for i, u := range ups {
		if i > 0 {
			s += ", "
		}
		s += u.Kind + " (" + u.Name + ")"
	}
	return s
}

// start publishes to every upstream in phases of 2s until stop.
func (l *upstreamLoad) start(ctx context.Context) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return
	}
	ctx, l.cancel = context.WithCancel(ctx)
	for _, ug := range l.gens {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				_, _ = ug.gen.Run(ctx, load.Phase{Name: "upstream", Arm: ug.arm.String(), Duration: 2 * time.Second, Rate: ug.rate})
			}
		}()
	}
}

// stop ends the publishing and waits for the generators.
func (l *upstreamLoad) stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	cancel := l.cancel
	l.cancel = nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		l.wg.Wait()
	}
}

// close stops the load and closes the publishers and generators.
func (l *upstreamLoad) close() {
	if l == nil {
		return
	}
	l.stop()
	for _, ug := range l.gens {
		ug.gen.Close()
		ug.pub.Close()
	}
}

// settleUpstreams waits (at most max) until the consumers of arm's
// upstreams have taken everything published (the group's lag is 0; MQTT
// measures none), so the drain that follows finds it in the output.
func (l *upstreamLoad) settle(ctx context.Context, a *arms.Arms, arm engine.Arm, max time.Duration) {
	if l == nil {
		return
	}
	deadline := time.Now().Add(max)
	for _, ug := range l.gens {
		if ug.arm != arm {
			continue
		}
		for time.Now().Before(deadline) && ctx.Err() == nil {
			lag := int64(0)
			var err error
			for _, addr := range a.DirectAddrs(arm) {
				var st []load.UpstreamOffsets
				if st, err = ug.gen.Upstreams(ctx, addr); err == nil {
					for _, s := range st {
						if s.Name == ug.up.Name {
							for _, o := range s.Offsets {
								lag += o.Lag
							}
						}
					}
					break
				}
			}
			if err == nil && lag == 0 {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// record writes the dead letters and the committed offsets of arm's
// upstreams to its history (after the drain).
func (l *upstreamLoad) record(ctx context.Context, arm engine.Arm) error {
	if l == nil {
		return nil
	}
	for _, ug := range l.gens {
		if ug.arm != arm {
			continue
		}
		if _, err := ug.gen.RecordUpstream(ctx, ug.up.Name); err != nil {
			return fmt.Errorf("upstream %s: %w", ug.up.Name, err)
		}
	}
	return nil
}

// retryBudget is the scenario's probes.availability.retryBudget (0: none).
func (r *Run) retryBudget() float64 {
	if a := r.cfg.Doc.Spec.Probes.Availability; a != nil {
		return a.RetryBudget.Value
	}
	return 0
}
