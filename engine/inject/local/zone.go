package local

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

// ZoneUndo is what a zone outage did: the zone, its nodes and the
// processes it killed.
type ZoneUndo struct {
	Zone  string        `json:"zone"`
	Nodes []string      `json:"nodes"`
	Procs []engine.Proc `json:"procs"`
}

// prepareZoneOutage records the zone's processes and the edges to cut:
// both directions of every node→node edge between the zone and the rest
// of the arm, and the client edges into the zone's nodes.
func (in *Injector) prepareZoneOutage(t engine.Target, f engine.Fault, u *Undo, a *engine.Applied) error {
	if in.cfg.Nodes == nil {
		return engine.E(engine.KindInvalid, "prepare", errors.New("no node supervisor configured"))
	}
	if len(t.Group) == 0 {
		return engine.E(engine.KindInvalid, "prepare", fmt.Errorf("zone %q has no nodes on %s", f.Zone, t.Arm))
	}
	cl := in.cfg.Cluster(t.Arm)
	z := &ZoneUndo{Zone: f.Zone, Nodes: append([]string(nil), t.Group...)}
	for _, n := range t.Group {
		if !slices.Contains(t.Nodes, n) {
			return engine.E(engine.KindNotFound, "zone "+f.Zone, fmt.Errorf("no node %q on %s", n, t.Arm))
		}
		pid, err := in.cfg.Nodes.Pid(t.Arm, n)
		if err != nil {
			return engine.E(engine.KindUnavailable, "pid of "+t.Arm.String()+"/"+n, err)
		}
		p, err := engine.ProcOf(pid)
		if err != nil {
			return err
		}
		z.Procs = append(z.Procs, p)
		u.Toxics = append(u.Toxics, ToxicRef{Proxy: proxy.EdgeName(cl, "client", n), Toxic: f.ID, Kind: "blackhole"})
		for _, o := range t.Nodes {
			if !slices.Contains(t.Group, o) {
				u.Toxics = append(u.Toxics, nodeEdgeRefs(cl, n, o, f.ID, "blackhole")...)
				u.Toxics = append(u.Toxics, nodeEdgeRefs(cl, o, n, f.ID, "blackhole")...)
			}
		}
	}
	u.Zone, u.Isolated = z, z.Nodes
	a.Affected = z.Nodes
	a.Detail = fmt.Sprintf("zone %s (%s) cut from the other %d nodes and its clients, every node of it killed", f.Zone, strings.Join(z.Nodes, ", "), len(t.Nodes)-len(z.Nodes))
	return nil
}

// injectZoneOutage cuts the zone first, then kills its nodes: the
// supervisor restarts them as Kubernetes would, inside a zone nobody
// reaches until recovery.
func (in *Injector) injectZoneOutage(ctx context.Context, t engine.Target, u Undo) error {
	for _, r := range u.Toxics {
		if err := in.proxies().BlackHole(r.Proxy, r.Toxic); err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
			return err
		}
	}
	for _, p := range u.Zone.Procs {
		if err := p.Signal(syscall.SIGKILL); err != nil && engine.KindOf(err) != engine.KindNotFound {
			return err
		}
	}
	for i, p := range u.Zone.Procs {
		if err := waitFor(ctx, in.cfg.KillTimeout, func() bool { return !p.Alive() }); err != nil {
			return engine.E(engine.KindUnavailable, "kill "+t.Arm.String()+"/"+u.Zone.Nodes[i], fmt.Errorf("pid %d still alive: %w", p.Pid, err))
		}
	}
	return nil
}

// confirmZoneOutage checks that every killed process is gone and that the
// zone's nodes do not answer their clients.
func (in *Injector) confirmZoneOutage(ctx context.Context, u Undo) engine.ConfirmResult {
	if u.Zone == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no zone recorded"}
	}
	var alive []string
	for i, p := range u.Zone.Procs {
		if p.Alive() {
			alive = append(alive, fmt.Sprintf("%s (pid %d)", u.Zone.Nodes[i], p.Pid))
		}
	}
	if len(alive) > 0 {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: "still running: " + strings.Join(alive, ", ")}
	}
	m := fmt.Sprintf("zone %s: the %d processes of %s are gone", u.Zone.Zone, len(u.Zone.Procs), strings.Join(u.Zone.Nodes, ", "))
	var cut, probed int
	for _, n := range u.Zone.Nodes {
		ce := proxy.EdgeName(in.cfg.Cluster(u.Arm), "client", n)
		rt := in.cfg.RoundTripFor(ce)
		if rt == nil || in.addr(ce) == "" {
			continue
		}
		probed++
		if c := proxy.ConfirmCut(ctx, rt, in.addr(ce), 2, 300*time.Millisecond); c.Outcome == engine.Confirmed {
			cut++
		}
	}
	if probed == 0 {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m + "; no client edge can be probed"}
	}
	m += fmt.Sprintf("; clients reach %d of %d of them", probed-cut, probed)
	if cut < probed {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
}

// recoverZoneOutage lifts the cut, then waits for every node of the zone
// to run again (a new process) and be ready, as after a pod kill.
func (in *Injector) recoverZoneOutage(ctx context.Context, a engine.Applied, u Undo) error {
	var errs []error
	for _, r := range u.Toxics {
		errs = append(errs, in.proxies().Heal(ctx, r.Proxy, r.Toxic))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if in.cfg.Nodes == nil || u.Zone == nil {
		return nil
	}
	for i, n := range u.Zone.Nodes {
		old := u.Zone.Procs[i].Pid
		restarted := func() bool {
			pid, err := in.cfg.Nodes.Pid(u.Arm, n)
			return err == nil && pid > 0 && pid != old && (engine.Proc{Pid: pid}).Alive()
		}
		if err := waitFor(ctx, time.Hour, restarted); err != nil {
			return engine.E(engine.KindUnavailable, "wait for "+u.Arm.String()+"/"+n+" to restart", err)
		}
		if err := in.cfg.Nodes.WaitReady(ctx, u.Arm, n); err != nil && ctx.Err() == nil {
			return engine.E(engine.KindUnavailable, "wait for "+u.Arm.String()+"/"+n+" to be ready", err)
		}
	}
	return nil
}
