package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// clusterNodeBinary is the binary the cluster nodes run: $CHAOSGATE_BIN
// (exported by make test) or a fresh build.
func clusterNodeBinary(t *testing.T) string {
	t.Helper()
	bin, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func integrationScenario(t *testing.T) scenario {
	return scenario{binary: clusterNodeBinary(t), dir: t.TempDir(), nodes: 3, partitions: 8, sources: 8, keys: 64,
		concurrency: 32, batch: 4, dup: 0.05, reorder: 0.1, stateClients: 2, duration: 12 * time.Second, progress: testWriter{t}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Logf("%s", b); return len(b), nil }

// TestClusterSurvivesLeaderKill: 3 nodes, 8 sources, >= 20k messages with
// 5% duplicates and 10% reordering, the busiest leader SIGKILLed mid-stream
// and restarted: nothing lost, duplicated, reordered, no HLC regression, no
// split brain.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	sc := integrationScenario(t)
	sc.fault, sc.waitRestart, sc.minMessages = killBusiestLeader, true, 20000
	res, err := runScenario(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	c := res.report.Counts
	t.Logf("load %+v\ndrain %+v\ncounts %+v", res.load, res.drain, c)
	if res.load.OK < 20000 || res.load.Duplicates == 0 || res.load.Reordered == 0 {
		t.Fatalf("workload too small: %d acknowledged, %d duplicates, %d reordered", res.load.OK, res.load.Duplicates, res.load.Reordered)
	}
	if c.SentOK < 20000 || c.Received < c.SentOK {
		t.Fatalf("history: %d acknowledged, %d received", c.SentOK, c.Received)
	}
	if c.Lost != 0 || c.Duplicated != 0 || c.OrderViolations != 0 || c.HLCViolations != 0 || c.SplitBrain != 0 || !res.report.OK {
		t.Fatalf("violations after a leader kill: %+v\n%+v", c, res.report.Violations)
	}
}

// TestPartitionedLeader cuts the busiest leader off its peers for 4 s
// (every node→node edge of it black-holed) under load. The correct build
// must come through clean; with the ack-before-commit defect the checker
// must catch lost acknowledged writes or split brain.
func TestPartitionedLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3-node clusters")
	}
	for _, tc := range []struct {
		name   string
		defect string
	}{{"correct build", ""}, {"ack-before-commit", "ack-before-commit"}} {
		t.Run(tc.name, func(t *testing.T) {
			sc := integrationScenario(t)
			if tc.defect != "" {
				sc.defects = []string{tc.defect}
			}
			mesh := newEdgeMesh(t)
			defer mesh.close()
			sc.edges = mesh.wire
			sc.fault = func(ctx context.Context, sup *local.Supervisor, g *load.Generator, targets load.Targets) (string, error) {
				id, n, err := load.BusiestLeader(ctx, targets)
				if err != nil {
					return "", err
				}
				g.Record(history.Line{Op: history.OpNode, T: time.Now(), Node: id, NodeEvent: history.NodePartition, Detail: "all node-to-node edges black-holed"})
				mesh.isolate(id, true)
				t.Logf("partitioned %s (leader of %d partitions) from its peers", id, n)
				time.Sleep(4 * time.Second)
				mesh.isolate(id, false)
				g.Record(history.Line{Op: history.OpNode, T: time.Now(), Node: id, NodeEvent: history.NodeHeal})
				return fmt.Sprintf("isolated %s for 4s", id), nil
			}
			res, err := runScenario(context.Background(), sc)
			if err != nil {
				t.Fatal(err)
			}
			c := res.report.Counts
			t.Logf("load %+v\ncounts %+v\nviolations %+v", res.load, c, res.report.Violations)
			caught := c.Lost > 0 || c.SplitBrain > 0
			switch {
			case tc.defect == "" && (!res.report.OK || caught):
				t.Fatalf("correct build flagged under a partition: %+v\n%+v", c, res.report.Violations)
			case tc.defect != "" && !caught:
				t.Fatalf("%s under a partition was not caught: %+v", tc.defect, c)
			}
			// A clean result only means something under real load; a caught
			// defect stands whatever the load was.
			if !caught && c.SentOK < 1000 {
				t.Fatalf("too little load to judge: %d acknowledged", c.SentOK)
			}
		})
	}
}

// edgeMesh puts a TCP proxy on every node→node edge (raft and HTTP
// forwarding) so that a test can black-hole one node's traffic.
type edgeMesh struct {
	t       *testing.T
	mu      sync.Mutex
	proxies []*edgeProxy
}

func newEdgeMesh(t *testing.T) *edgeMesh { return &edgeMesh{t: t} }

func (m *edgeMesh) wire(specs []local.NodeSpec) []local.NodeSpec {
	for i := range specs {
		specs[i].Peers, specs[i].PeerHTTP = map[string]string{}, map[string]string{}
		for _, to := range specs {
			if to.ID == specs[i].ID {
				continue
			}
			specs[i].Peers[to.ID] = m.add(specs[i].ID, to.ID, to.Raft)
			specs[i].PeerHTTP[to.ID] = m.add(specs[i].ID, to.ID, to.HTTP)
		}
	}
	return specs
}

func (m *edgeMesh) add(from, to, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatal(err)
	}
	p := &edgeProxy{from: from, to: to, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	m.mu.Lock()
	m.proxies = append(m.proxies, p)
	m.mu.Unlock()
	return ln.Addr().String()
}

func (m *edgeMesh) isolate(id string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.proxies {
		if p.from == id || p.to == id {
			p.setBlocked(on)
		}
	}
}

func (m *edgeMesh) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.proxies {
		p.close()
	}
}

// edgeProxy forwards one edge; blocked, it drops every connection and
// holds new ones open without forwarding a byte (a black hole).
type edgeProxy struct {
	from, to, target string
	ln               net.Listener
	blocked          atomic.Bool
	mu               sync.Mutex
	conns            map[net.Conn]struct{}
	wg               sync.WaitGroup
}

func (p *edgeProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *edgeProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c, true)
		if p.blocked.Load() {
			continue // held open, never forwarded, closed on heal
		}
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			p.track(c, false)
			c.Close()
			continue
		}
		p.track(up, true)
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.track(dst, false)
			p.track(src, false)
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

func (p *edgeProxy) setBlocked(on bool) {
	p.blocked.Store(on)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

func (p *edgeProxy) close() {
	p.ln.Close()
	p.setBlocked(true)
	p.wg.Wait()
}
