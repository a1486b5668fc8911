package node

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writer keeps sending fresh messages (retrying unacknowledged ones with
// the same msg_id and seq) and records every acknowledgement.
type writer struct {
	c      *testCluster
	gen    *msgGen
	mu     sync.Mutex
	acked  map[string]Message
	sent   int
	stop   chan struct{}
	done   chan struct{}
	target func(i int) string
}

func startWriter(t *testing.T, c *testCluster, source string, target func(i int) string) *writer {
	w := &writer{c: c, gen: newGen(4), acked: map[string]Message{}, stop: make(chan struct{}), done: make(chan struct{}), target: target}
	go func() {
		defer close(w.done)
		var pending []Message
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			for len(pending) < 20 {
				pending = append(pending, w.gen.next(source, fmt.Sprintf("k%d", (i*20+len(pending))%13)))
			}
			code, res := w.c.trySend(w.target(i), pending...)
			var again []Message
			w.mu.Lock()
			for j, r := range res {
				if r.Status == StatusOK || r.Status == StatusDuplicate {
					w.acked[r.MsgID] = pending[j]
				} else {
					again = append(again, pending[j])
				}
			}
			w.sent++
			w.mu.Unlock()
			if res == nil {
				again = pending
			}
			pending = again
			if code != 200 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	return w
}

func (w *writer) halt() map[string]Message {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) waitAcked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.ackedCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledged, want %d", w.ackedCount(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lost returns the acknowledged messages missing from every stream.
func (c *testCluster) lost(t *testing.T, via string, acked map[string]Message) []string {
	t.Helper()
	seen := map[string]bool{}
	for p := range 4 {
		for _, r := range checkStreamNoDup(t, c.readAll(t, via, p)) {
			seen[r] = true
		}
	}
	var out []string
	for id := range acked {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}

func checkStreamNoDup(t *testing.T, recs []Record) []string {
	t.Helper()
	seen := checkStream(t, recs, nil)
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	return out
}

func TestLeaderFailoverNoAckedLoss(t *testing.T) {
	c := startCluster(t, 3, nil)
	w := startWriter(t, c, "fw", func(i int) string { return c.ids[i%3] })
	w.waitAcked(t, 200)
	victim := c.leaderOf(0)
	c.stop(victim) // the leader of partition 0 goes away mid-stream
	before := w.ackedCount()
	w.waitAcked(t, before+300)
	c.start(victim)
	w.waitAcked(t, w.ackedCount()+200)
	acked := w.halt()
	c.waitReady()
	via := c.ids[0]
	if lost := c.lost(t, via, acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
}

func TestLeaderCutOffNoAckedLoss(t *testing.T) {
	c := startCluster(t, 3, nil)
	target := make(chan string, 1)
	victim := c.leaderOf(1)
	target <- victim
	cur := victim
	w := startWriter(t, c, "cw", func(int) string {
		select {
		case cur = <-target:
		default:
		}
		return cur
	})
	w.waitAcked(t, 100)
	c.isolate(victim, true) // the leader keeps running, cut off from its peers
	time.Sleep(2 * time.Second)
	c.isolate(victim, false)
	w.waitAcked(t, w.ackedCount()+100)
	acked := w.halt()
	c.waitReady()
	if lost := c.lost(t, victim, acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost after a leader was cut off", len(lost))
	}
}

func TestSnapshotRestoreAndInstall(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 32
		cfg.TrailingLogs = 8
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	gen := newGen(4)
	send := func(n int, via ...string) map[string]Message {
		acked := map[string]Message{}
		for i := 0; i < n; i += 5 {
			var b []Message
			for j := range 5 {
				b = append(b, gen.next("snap", fmt.Sprintf("k%d", (i+j)%11)))
			}
			for k, r := range c.sendRetry(t, via[i%len(via)], b...) {
				acked[r.MsgID] = b[k]
			}
		}
		return acked
	}
	acked := send(400, c.ids...)
	// n3 misses a stretch of log that the others compact away
	c.stop("n3")
	for id, m := range send(400, "n1", "n2") {
		acked[id] = m
	}
	for _, id := range []string{"n1", "n2"} {
		for _, g := range c.node(id).groupsSnapshot() {
			if err := g.raft.Snapshot().Error(); err != nil && !strings.Contains(err.Error(), "nothing new") {
				t.Fatalf("snapshot %s/%d: %v", id, g.id, err)
			}
		}
	}
	c.start("n3") // restores its own snapshot, then installs the leaders' snapshots
	c.waitReady()
	// n3's local copy of every stream equals the leader's
	deadline := time.Now().Add(20 * time.Second)
	for p := range 4 {
		ref := c.readAll(t, "n1", p)
		g, _ := c.node("n3").group(p)
		for {
			recs, _, err := g.fsm.read(0, 100000)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == len(ref) {
				for i := range recs {
					if recs[i] != ref[i] {
						t.Fatalf("partition %d offset %d differs on n3: %+v vs %+v", p, i, recs[i], ref[i])
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: n3 has %d records, leader %d", p, len(recs), len(ref))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if lost := c.lost(t, "n3", acked); len(lost) > 0 {
		t.Fatalf("%d acked lost", len(lost))
	}
	// dedup state came back with the snapshot: a retry is caught everywhere
	for _, m := range []Message{acked[firstKey(acked)]} {
		if r := c.sendRetry(t, "n3", m); r[0].Status != StatusDuplicate {
			t.Fatalf("retry after snapshot restore: %+v", r[0])
		}
	}
}

func firstKey(m map[string]Message) string {
	for k := range m {
		return k
	}
	return ""
}
