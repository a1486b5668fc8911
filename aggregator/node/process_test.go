package node

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// childConfig is how a test starts a node in a child process (the test
// binary re-executed), so it can be killed with SIGKILL.
type childConfig struct {
	ID, HTTP, Raft, DataDir string
	Peers, PeerHTTP         map[string]string
	Partitions              int
	Defects                 []string
	RSSCap                  int64
	SourceRate              float64
	SyncInterval            time.Duration
	RaftLog                 string
}

func runChild(raw string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	d, err := ParseDefects(cc.Defects)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n, err := Start(Config{ID: cc.ID, HTTPListen: cc.HTTP, RaftListen: cc.Raft, Peers: cc.Peers, PeerHTTP: cc.PeerHTTP, DataDir: cc.DataDir,
		Partitions: cc.Partitions, Defects: d, RSSCap: cc.RSSCap, GoMemoryLimit: true, SourceRate: cc.SourceRate, SyncInterval: cc.SyncInterval, RaftLog: cc.RaftLog, HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
		BalanceInterval: 500 * time.Millisecond, LogOutput: io.Discard, RaftLogLevel: "error", Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	n.Close()
	return 0
}

type procCluster struct {
	*testCluster
	cmds map[string]*exec.Cmd
	cc   map[string]childConfig
}

func startProcCluster(t *testing.T, size int, mod func(*childConfig)) *procCluster {
	pc := &procCluster{testCluster: &testCluster{t: t, http: map[string]string{}, raft: map[string]string{}, dirs: map[string]string{}},
		cmds: map[string]*exec.Cmd{}, cc: map[string]childConfig{}}
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		pc.ids = append(pc.ids, id)
		pc.http[id], pc.raft[id], pc.dirs[id] = freeAddr(t), freeAddr(t), filepath.Join(t.TempDir(), id)
	}
	for _, id := range pc.ids {
		cc := childConfig{ID: id, HTTP: pc.http[id], Raft: pc.raft[id], DataDir: pc.dirs[id], Peers: pc.raft, PeerHTTP: pc.http, Partitions: 4}
		if mod != nil {
			mod(&cc)
		}
		pc.cc[id] = cc
		pc.startProc(id)
	}
	t.Cleanup(func() {
		for id := range pc.cmds {
			pc.kill(id, syscall.SIGTERM)
		}
		testClient.CloseIdleConnections()
	})
	pc.waitHTTPReady()
	return pc
}

func (pc *procCluster) startProc(id string) {
	raw, _ := json.Marshal(pc.cc[id])
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AGGREGATOR_TEST_CHILD="+string(raw))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		pc.t.Fatal(err)
	}
	pc.cmds[id] = cmd
}

func (pc *procCluster) kill(id string, sig syscall.Signal) {
	cmd := pc.cmds[id]
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	delete(pc.cmds, id)
}

func (pc *procCluster) waitHTTPReady() {
	pc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range pc.ids {
		if pc.cmds[id] == nil {
			continue
		}
		for {
			resp, err := testClient.Get("http://" + pc.http[id] + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				pc.t.Fatalf("%s not ready", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (pc *procCluster) leaderOf(p int) string {
	pc.t.Helper()
	for range 200 {
		for _, id := range pc.ids {
			if pc.cmds[id] == nil {
				continue
			}
			var ci ClusterInfo
			code, body, _ := doJSON(pc.t, "GET", "http://"+pc.http[id]+"/v1/cluster", nil)
			if code == 200 && json.Unmarshal(body, &ci) == nil && ci.Partitions[p].Leader != "" {
				return ci.Partitions[p].Leader
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	pc.t.Fatalf("no leader for partition %d", p)
	return ""
}

// A node killed with SIGKILL restarts from its data dir: everything
// acknowledged survives and dedup still catches a retry — with the raft log
// fsynced on every append and with a background flush (--sync-interval:
// a killed process leaves its writes in the page cache), with every raft
// log (--raft-log).
func TestSIGKILLRestartKeepsAckedAndDedup(t *testing.T) {
	for _, raftLog := range []string{RaftLogPartition, RaftLogShared, RaftLogRaftWAL} {
		for _, sync := range []time.Duration{0, 5 * time.Second} {
			t.Run(fmt.Sprintf("raft-log=%s/sync-interval=%v", raftLog, sync), func(t *testing.T) {
				testSIGKILLRestart(t, raftLog, sync)
			})
		}
	}
}

func testSIGKILLRestart(t *testing.T, raftLog string, sync time.Duration) {
	pc := startProcCluster(t, 3, func(cc *childConfig) { cc.SyncInterval, cc.RaftLog = sync, raftLog })
	gen := newGen(4)
	var all []Message
	send := func(n int, via ...string) {
		for i := 0; i < n; i += 25 {
			var b []Message
			for j := range 25 {
				b = append(b, gen.next(fmt.Sprintf("k%d", j%2), fmt.Sprintf("key%d", (i+j)%19)))
			}
			pc.sendRetry(t, via[(i/25)%len(via)], b...)
			all = append(all, b...)
		}
	}
	send(500, pc.ids...)
	victim := pc.leaderOf(0)
	pc.kill(victim, syscall.SIGKILL)
	var alive []string
	for _, id := range pc.ids {
		if id != victim {
			alive = append(alive, id)
		}
	}
	send(500, alive...)
	pc.startProc(victim)
	pc.waitHTTPReady()
	// every message retried through the restarted node is a duplicate
	for i := 0; i < len(all); i += 100 {
		for _, r := range pc.sendRetry(t, victim, all[i:i+100]...) {
			if r.Status != StatusDuplicate {
				t.Fatalf("retry after SIGKILL+restart not caught: %+v", r)
			}
		}
	}
	acked := map[string]Message{}
	for _, m := range all {
		acked[m.MsgID] = m
	}
	if lost := pc.lost(t, victim, acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost after SIGKILL", len(lost))
	}
	// the HLC stays monotone across the restart: records of each partition
	// carry non-decreasing HLC stamps in offset order
	for p := range 4 {
		var prev string
		for _, r := range pc.readAll(t, victim, p) {
			if prev != "" && hlcLess(r.HLC, prev) {
				t.Fatalf("partition %d offset %d: hlc %s after %s", p, r.Offset, r.HLC, prev)
			}
			prev = r.HLC
		}
	}
}
