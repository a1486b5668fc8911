// Package arms runs the arms of a local canary comparison: a control
// (stable) cluster and a canary cluster of the reference aggregator — and,
// when asked, a calibration cluster of the control's build — each
// started by the local supervisor, with every client→node and node→node edge
// of both behind a user-space fault proxy created before the nodes dial.
//
// Arms implements engine.Topology (the replicas of each arm and who leads,
// from GET /v1/cluster) and the Nodes interface of the local injectors
// (current pids, wait until a node serves again), and hands out the proxy set
// the network faults act on.
package arms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	injlocal "github.com/chaosgate/chaosgate/engine/inject/local"
	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/internal/brokers"
)

// Config describes both arms.
type Config struct {
	// Binary is the chaosgate executable the nodes run (empty: this one).
	Binary string
	// Dir holds one directory per arm (DIR/canary, DIR/control), each with
	// cluster.json and nX/node.log.
	Dir string
	// Nodes is the number of replicas per arm; Partitions the aggregator's P.
	Nodes, Partitions int
	// CanaryDefects are the --defect flags of the canary's nodes (the
	// control never runs a defect).
	CanaryDefects []string
	// CanaryArgs and ControlArgs are extra node arguments per arm.
	CanaryArgs, ControlArgs []string
	// Calibration starts a third cluster of the control's build (its
	// arguments, no defect) as engine.ArmCalibration.
	Calibration bool
	// Upstreams are message brokers each arm runs for itself (a
	// nats-server or a mosquitto per arm); every node consumes each one
	// through a fault proxy on its node→broker edge.
	Upstreams []Upstream
	// ReadyTimeout bounds the start of each arm (default 60s).
	ReadyTimeout time.Duration
	// OnEvent receives node lifecycle events of both arms.
	OnEvent func(engine.Arm, local.NodeEvent)
	Logger  *slog.Logger
}

// Upstream is a broker an arm runs and its nodes consume.
type Upstream struct {
	// Name is the upstream's name (the node's --upstream name=).
	Name string
	// Kind is nats (JetStream stream IN, subjects in.>) or mqtt (topics
	// chaosgate/in/0..5, QoS 1).
	Kind string
}

// UpstreamShards is the number of MQTT topics of an arm's mqtt upstream.
const UpstreamShards = 6

// URL is the node's --upstream for u, reaching the broker at addr.
func (u Upstream) URL(addr string) (string, error) {
	switch u.Kind {
	case "nats":
		return "nats://" + addr + "/IN?name=" + u.Name + "&ack_wait=3s&batch=64", nil
	case "mqtt":
		return fmt.Sprintf("mqtt://%s/chaosgate/in?name=%s&shards=%d", addr, u.Name, UpstreamShards), nil
	}
	return "", fmt.Errorf("upstream %s: kind %q: the local target runs nats or mqtt", u.Name, u.Kind)
}

// PublishURL is what a producer publishes to: the broker at addr itself,
// in the form load.ParsePublisher takes.
func (u Upstream) PublishURL(addr string) string {
	if u.Kind == "mqtt" {
		return fmt.Sprintf("mqtt://%s/chaosgate/in?shards=%d", addr, UpstreamShards)
	}
	return "nats://" + addr + "/IN"
}

// ArmCluster is one arm's running cluster.
type ArmCluster struct {
	Arm   engine.Arm
	Dir   string
	Specs []local.NodeSpec
	Mesh  proxy.Mesh
	sup   *local.Supervisor
	// brokers are the arm's upstream brokers by upstream name.
	brokers map[string]*brokers.Server
	// tokenFile holds the bearer token of the nodes' admin API.
	tokenFile string
}

// Arms is the running pair of clusters with their fault proxies.
type Arms struct {
	cfg    Config
	set    *proxy.Set
	arms   map[engine.Arm]*ArmCluster
	cancel context.CancelFunc
	hc     *http.Client

	closeOnce sync.Once
}

// Start creates the proxies of both arms, then starts the control and the
// canary clusters with every peer address pointing at a proxy, and waits
// until every node is ready. Cancelling ctx or calling Close stops them.
func Start(ctx context.Context, cfg Config) (*Arms, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.Dir == "" {
		return nil, engine.E(engine.KindInvalid, "start arms", errors.New("no directory"))
	}
	cctx, cancel := context.WithCancel(ctx)
	a := &Arms{cfg: cfg, set: proxy.NewSet(), arms: map[engine.Arm]*ArmCluster{}, cancel: cancel, hc: &http.Client{Timeout: 2 * time.Second}}
	list := []engine.Arm{engine.ArmControl, engine.ArmCanary}
	if cfg.Calibration {
		list = append(list, engine.ArmCalibration)
	}
	for _, arm := range list {
		if err := a.startArm(cctx, arm); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

func (a *Arms) startArm(ctx context.Context, arm engine.Arm) error {
	specs, err := local.Plan(a.cfg.Nodes, 0) // free ports below the ephemeral range
	if err != nil {
		return engine.E(engine.KindUnavailable, "plan "+arm.String(), err)
	}
	var mn []proxy.MeshNode
	for _, s := range specs {
		mn = append(mn, proxy.MeshNode{ID: s.ID, HTTP: s.HTTP, Raft: s.Raft})
	}
	mesh, err := a.set.Mesh(arm.String(), mn)
	if err != nil {
		return engine.E(engine.KindUnavailable, "proxies of "+arm.String(), err)
	}
	dir := filepath.Join(a.cfg.Dir, arm.String())
	x := &ArmCluster{Arm: arm, Dir: dir, Mesh: mesh, brokers: map[string]*brokers.Server{}}
	// registered before the nodes start, so Close stops the brokers of an
	// arm whose nodes failed to start
	a.arms[arm] = x
	for _, u := range a.cfg.Upstreams {
		if _, err := u.URL(""); err != nil {
			return engine.E(engine.KindInvalid, "upstreams of "+arm.String(), err)
		}
		bdir := filepath.Join(dir, "brokers", u.Name)
		var b *brokers.Server
		if u.Kind == "nats" {
			b, err = brokers.StartNATS(bdir)
		} else {
			b, err = brokers.StartMosquitto(bdir)
		}
		if err != nil {
			return engine.E(engine.KindUnavailable, fmt.Sprintf("start the %s broker of upstream %s for %s", u.Kind, u.Name, arm), err)
		}
		x.brokers[u.Name] = b
	}
	// The nodes' admin API (clock skew, leadership transfer) answers only
	// to the arm's token, kept in a file only this user can read.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return engine.E(engine.KindUnavailable, "arm directory", err)
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return engine.E(engine.KindInternal, "admin token", err)
	}
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(tok[:])+"\n"), 0o600); err != nil {
		return engine.E(engine.KindUnavailable, "admin token", err)
	}
	x.tokenFile = tokenFile
	for i := range specs {
		specs[i].Peers = mesh.Raft[specs[i].ID]
		specs[i].PeerHTTP = mesh.HTTP[specs[i].ID]
		if arm == engine.ArmCanary {
			specs[i].Defects = append([]string(nil), a.cfg.CanaryDefects...)
			specs[i].Args = append([]string(nil), a.cfg.CanaryArgs...)
		} else {
			specs[i].Args = append([]string(nil), a.cfg.ControlArgs...)
		}
		specs[i].Args = append(specs[i].Args, "--admin-token-file", tokenFile)
		if len(a.cfg.Upstreams) > 0 {
			// a message the broker redelivers after its consumer died (or
			// after its ack wait) must still find its hole in the reorder
			// buffer open, or it is late and dead-lettered
			specs[i].Args = append(specs[i].Args, "--reorder-timeout", "15s")
		}
		for _, u := range a.cfg.Upstreams {
			addr, err := a.set.Add(injlocal.BrokerEdgeName(arm.String(), specs[i].ID, u.Name), x.brokers[u.Name].Address())
			if err != nil {
				return engine.E(engine.KindUnavailable, "broker proxy of "+arm.String(), err)
			}
			url, _ := u.URL(addr)
			specs[i].Args = append(specs[i].Args, "--upstream", url)
		}
	}
	var onEvent func(local.NodeEvent)
	if a.cfg.OnEvent != nil {
		onEvent = func(ev local.NodeEvent) { a.cfg.OnEvent(arm, ev) }
	}
	logger := a.cfg.Logger
	if logger != nil {
		logger = logger.With("arm", arm.String())
	}
	sup, err := local.Start(ctx, local.Config{Binary: a.cfg.Binary, Dir: dir, Nodes: specs, Partitions: a.cfg.Partitions,
		ReadyTimeout: a.cfg.ReadyTimeout, OnEvent: onEvent, Logger: logger,
		BackoffInitial: 100 * time.Millisecond, BackoffMax: 2 * time.Second})
	if err != nil {
		return engine.E(engine.KindUnavailable, "start the "+arm.String()+" cluster", err)
	}
	x.Specs, x.sup = specs, sup
	return nil
}

// Broker is the broker of upstream name in arm (the local injector's
// upstream faults act on it).
func (a *Arms) Broker(arm engine.Arm, name string) (injlocal.Broker, error) {
	x := a.arms[arm]
	if x == nil {
		return nil, engine.E(engine.KindNotFound, "broker", fmt.Errorf("no arm %s", arm))
	}
	b, ok := x.brokers[name]
	if !ok {
		return nil, engine.E(engine.KindNotFound, "broker", fmt.Errorf("%s runs no upstream %q", arm, name))
	}
	return b, nil
}

// NodeHTTP is a node's own HTTP listen address (the local injector's
// upstream faults call the node's /v1/upstreams there, past the proxies).
func (a *Arms) NodeHTTP(arm engine.Arm, node string) (string, error) {
	addr, ok := a.DirectAddrs(arm)[node]
	if !ok {
		return "", engine.E(engine.KindNotFound, "node address", fmt.Errorf("no node %s in %s", node, arm))
	}
	return addr, nil
}

// Admin is a node's admin API: its own HTTP address, the arm's token file
// and its data directory (the local injector's clock skews).
func (a *Arms) Admin(arm engine.Arm, node string) (injlocal.Admin, error) {
	x := a.arms[arm]
	if x == nil {
		return injlocal.Admin{}, engine.E(engine.KindNotFound, "admin API", fmt.Errorf("no arm %s", arm))
	}
	for _, s := range x.Specs {
		if s.ID == node {
			return injlocal.Admin{Addr: s.HTTP, TokenFile: x.tokenFile, DataDir: filepath.Join(x.Dir, node, "data")}, nil
		}
	}
	return injlocal.Admin{}, engine.E(engine.KindNotFound, "admin API", fmt.Errorf("no node %s in %s", node, arm))
}

// Upstreams are the upstreams every arm runs.
func (a *Arms) Upstreams() []Upstream { return append([]Upstream(nil), a.cfg.Upstreams...) }

// Close stops both clusters (SIGTERM, then SIGKILL after the grace period),
// waits for every node to exit and closes the proxies.
func (a *Arms) Close() {
	a.closeOnce.Do(func() {
		a.cancel()
		for _, x := range a.arms {
			if x.sup != nil {
				x.sup.Stop()
			}
		}
		for _, x := range a.arms {
			if x.sup != nil {
				x.sup.Wait()
			}
			for _, b := range x.brokers {
				_ = b.Stop()
			}
		}
		a.set.Close()
	})
}

// Proxies is the proxy set of both arms (proxy names "arm/from->to").
func (a *Arms) Proxies() *proxy.Set { return a.set }

// Get returns one arm.
func (a *Arms) Get(arm engine.Arm) *ArmCluster { return a.arms[arm] }

// Nodes lists the replicas of an arm (engine.Topology).
func (a *Arms) Nodes(arm engine.Arm) []string {
	x := a.arms[arm]
	if x == nil {
		return nil
	}
	out := make([]string, 0, len(x.Specs))
	for _, s := range x.Specs {
		out = append(out, s.ID)
	}
	return out
}

// ClientAddrs are the addresses clients dial to reach an arm's nodes: the
// client→node proxies, in node order.
func (a *Arms) ClientAddrs(arm engine.Arm) []string {
	x := a.arms[arm]
	if x == nil {
		return nil
	}
	var out []string
	for _, s := range x.Specs {
		out = append(out, x.Mesh.Client[s.ID])
	}
	return out
}

// DirectAddrs maps an arm's node ids to their own HTTP listen addresses
// (for the observers: metrics scraping and leader queries bypass the
// fault proxies, as a monitoring system would).
func (a *Arms) DirectAddrs(arm engine.Arm) map[string]string {
	x := a.arms[arm]
	out := map[string]string{}
	if x == nil {
		return out
	}
	for _, s := range x.Specs {
		out[s.ID] = s.HTTP
	}
	return out
}

// LogPath is the log file of a node.
func (a *Arms) LogPath(arm engine.Arm, node string) string {
	x := a.arms[arm]
	if x == nil {
		return ""
	}
	return filepath.Join(x.Dir, node, "node.log")
}

// Pid returns the current pid of a node (local injectors).
func (a *Arms) Pid(arm engine.Arm, node string) (int, error) {
	x := a.arms[arm]
	if x == nil {
		return 0, engine.E(engine.KindNotFound, "pid", fmt.Errorf("no arm %s", arm))
	}
	pid, ok := x.sup.PIDs()[node]
	if !ok || pid <= 0 {
		return 0, engine.E(engine.KindUnavailable, "pid", fmt.Errorf("node %s of %s is not running", node, arm))
	}
	return pid, nil
}

// PIDs returns the current pid of every node of an arm.
func (a *Arms) PIDs(arm engine.Arm) map[string]int {
	x := a.arms[arm]
	if x == nil {
		return nil
	}
	return x.sup.PIDs()
}

// WaitReady blocks until the node answers /readyz with 200 on its own
// address (local injectors, after a restart).
func (a *Arms) WaitReady(ctx context.Context, arm engine.Arm, node string) error {
	addr, ok := a.DirectAddrs(arm)[node]
	if !ok {
		return engine.E(engine.KindNotFound, "wait ready", fmt.Errorf("no node %s in %s", node, arm))
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := a.hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return engine.E(engine.KindUnavailable, "wait ready", fmt.Errorf("%s/%s not ready: %w (last answer: %s)", arm, node, ctx.Err(), last))
		case <-t.C:
		}
	}
}

// clusterView is the part of GET /v1/cluster the topology reads.
type clusterView struct {
	Node       string `json:"node"`
	Partitions []struct {
		ID     int    `json:"id"`
		Leader string `json:"leader"`
		Epoch  uint64 `json:"epoch"`
	} `json:"partitions"`
}

// Leaders returns partition → leader of an arm. Each node reports the
// partitions it knows; the answer with the highest epoch wins per partition,
// so a deposed leader's stale view does not mask the majority's.
func (a *Arms) Leaders(ctx context.Context, arm engine.Arm) (map[int]string, error) {
	best, _, err := a.views(ctx, arm)
	return best, err
}

// views asks every node of arm for its view of the partition leaders. It
// returns the highest-epoch leader per partition and whether every node
// that answered agrees with it on every partition.
func (a *Arms) views(ctx context.Context, arm engine.Arm) (map[int]string, bool, error) {
	type lead struct {
		node  string
		epoch uint64
	}
	best := map[int]lead{}
	var seen []map[int]string
	var errs []error
	for id, addr := range a.DirectAddrs(arm) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/cluster", nil)
		resp, err := a.hc.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		var v clusterView
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: decode /v1/cluster: %w", id, err))
			continue
		}
		view := map[int]string{}
		for _, p := range v.Partitions {
			view[p.ID] = p.Leader
			if p.Leader == "" {
				continue
			}
			if b, ok := best[p.ID]; !ok || p.Epoch > b.epoch {
				best[p.ID] = lead{p.Leader, p.Epoch}
			}
		}
		seen = append(seen, view)
	}
	if len(best) == 0 {
		return nil, false, engine.E(engine.KindUnavailable, "leaders of "+arm.String(), fmt.Errorf("no node reported a leader: %w", errors.Join(errs...)))
	}
	out := make(map[int]string, len(best))
	for p, l := range best {
		out[p] = l.node
	}
	agree := len(errs) == 0
	for _, view := range seen {
		for p, l := range view {
			if l != out[p] {
				agree = false
			}
		}
	}
	return out, agree, nil
}

// Leader returns the leader of one aggregator partition, or (partition
// nil) the node that leads the most partitions, ties to the lowest id
// (engine.Topology).
func (a *Arms) Leader(ctx context.Context, arm engine.Arm, partition *int) (string, error) {
	ls, err := a.Leaders(ctx, arm)
	if err != nil {
		return "", err
	}
	if partition != nil {
		l, ok := ls[*partition]
		if !ok {
			return "", engine.E(engine.KindNotFound, "leader", fmt.Errorf("partition %d of %s has no known leader", *partition, arm))
		}
		return l, nil
	}
	count := map[string]int{}
	for _, n := range ls {
		count[n]++
	}
	ids := make([]string, 0, len(count))
	for n := range count {
		ids = append(ids, n)
	}
	sort.Strings(ids)
	best := ""
	for _, n := range ids {
		if best == "" || count[n] > count[best] {
			best = n
		}
	}
	return best, nil
}

// Healthy reports whether every node of every arm answers /readyz with 200,
// every arm has a known leader for each of its partitions (partitions 0
// skips that count) and every node agrees on who leads each partition (a
// deposed leader has learned of the new term).
func (a *Arms) Healthy(ctx context.Context, partitions int) error {
	for arm := range a.arms {
		for _, n := range a.Nodes(arm) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			err := a.WaitReady(rctx, arm, n)
			cancel()
			if err != nil {
				return err
			}
		}
		ls, agree, err := a.views(ctx, arm)
		if err != nil {
			return err
		}
		if partitions > 0 && len(ls) < partitions {
			return engine.E(engine.KindUnavailable, "healthy", fmt.Errorf("%s: %d of %d partitions have a known leader", arm, len(ls), partitions))
		}
		if !agree {
			return engine.E(engine.KindUnavailable, "healthy", fmt.Errorf("%s: the nodes do not agree yet on who leads every partition", arm))
		}
	}
	return nil
}
