package node

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func withDefects(names ...string) func(*Config) {
	return func(c *Config) {
		d, err := ParseDefects(names)
		if err != nil {
			panic(err)
		}
		c.Defects = d
	}
}

func TestParseDefects(t *testing.T) {
	d, err := ParseDefects([]string{"no-dedup", "leak,slow-path"})
	if err != nil || !d.Has(DefectNoDedup) || !d.Has(DefectLeak) || !d.Has(DefectSlowPath) || len(d.List()) != 3 {
		t.Fatalf("%v %v", d, err)
	}
	_, err = ParseDefects([]string{"ack-before-comit"})
	if err == nil || !strings.Contains(err.Error(), `unknown defect "ack-before-comit"`) || !strings.Contains(err.Error(), DefectAckBeforeCommit) {
		t.Fatalf("unknown defect error: %v", err)
	}
	if len(KnownDefects()) != 11 {
		t.Fatal(KnownDefects())
	}
}

func TestDefectsExposedInMetrics(t *testing.T) {
	c := startCluster(t, 1, withDefects(DefectSlowPath, DefectNoDedup))
	_, body, _ := doJSON(t, "GET", "http://"+c.http["n1"]+"/metrics", nil)
	for _, want := range []string{`chaosgate_aggregator_defect{name="slow-path"} 1`, `chaosgate_aggregator_defect{name="no-dedup"} 1`, "go_gc_duration_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(body), `name="leak"`) {
		t.Fatal("a defect that is off is exposed")
	}
}

// keyIn returns a key of partition p.
func keyIn(p, parts int, prefix string) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); partitionOf(k, parts) == p {
			return k
		}
	}
}

// ack-before-commit: a leader cut off from its peers acknowledges writes
// that never commit; after the heal they are gone.
func TestDefectAckBeforeCommitLosesAckedWrites(t *testing.T) {
	for _, defect := range []bool{true, false} {
		t.Run(fmt.Sprint("defect=", defect), func(t *testing.T) {
			var tweak func(*Config)
			if defect {
				tweak = withDefects(DefectAckBeforeCommit)
			}
			c := startCluster(t, 3, tweak)
			victim := c.leaderOf(2)
			key := keyIn(2, 4, "abc")
			var batch []Message
			for i := range 20 {
				batch = append(batch, Message{SourceID: "a", Seq: uint64(i + 1), MsgID: fmt.Sprint(5000 + i), GroupKey: key, Fingerprint: "f"})
			}
			c.isolate(victim, true)
			_, res := c.trySend(victim, batch...)
			acked := map[string]Message{}
			for i, r := range res {
				if r.Status == StatusOK {
					acked[r.MsgID] = batch[i]
				}
			}
			time.Sleep(3 * time.Second) // the majority elects a new leader
			c.isolate(victim, false)
			c.waitReady()
			lost := c.lost(t, c.ids[0], acked)
			if defect && (len(acked) == 0 || len(lost) == 0) {
				t.Fatalf("defect shows no symptom: %d acked, %d lost", len(acked), len(lost))
			}
			if !defect && len(lost) > 0 {
				t.Fatalf("correct build lost %d acked writes", len(lost))
			}
		})
	}
}

func TestDefectNoDedupStoresDuplicates(t *testing.T) {
	c := startCluster(t, 1, withDefects(DefectNoDedup))
	m := Message{SourceID: "d", Seq: 1, MsgID: "42", GroupKey: "k", Fingerprint: "f"}
	c.sendRetry(t, "n1", m)
	if r := c.sendRetry(t, "n1", m); r[0].Status != StatusOK {
		t.Fatalf("with no-dedup a retry is stored again, got %+v", r[0])
	}
	n := 0
	for _, r := range c.readAll(t, "n1", partitionOf("k", 4)) {
		if r.MsgID == "42" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("msg 42 appears %d times, want 2 (the symptom)", n)
	}
}

// stale-read: a leader cut off from the majority still answers reads with
// old state; the correct build refuses them.
func TestDefectStaleReadServesSplitBrainReads(t *testing.T) {
	for _, defect := range []bool{true, false} {
		t.Run(fmt.Sprint("defect=", defect), func(t *testing.T) {
			var tweak func(*Config)
			if defect {
				tweak = withDefects(DefectStaleRead)
			}
			c := startCluster(t, 3, tweak)
			key := keyIn(3, 4, "sr")
			victim := c.leaderOf(3)
			put := func(via, state string, exp uint64) int {
				code, _, _ := doJSON(t, "PUT", "http://"+c.http[via]+"/v1/state/"+key, map[string]any{"state": state, "expected_version": exp, "value": state})
				return code
			}
			if code := put(victim, "PROCESSING", 0); code != 200 {
				t.Fatalf("put: %d", code)
			}
			c.isolate(victim, true)
			defer c.isolate(victim, false)
			var other string
			for _, id := range c.ids {
				if id != victim {
					other = id
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for put(other, "DONE", 1) != 200 {
				if time.Now().After(deadline) {
					t.Fatal("majority side never accepted the write")
				}
				time.Sleep(100 * time.Millisecond)
			}
			code, body, _ := doJSON(t, "GET", "http://"+c.http[victim]+"/v1/state/"+key, nil)
			var ks KeyState
			_ = json.Unmarshal(body, &ks)
			if defect && (code != 200 || ks.State != "PROCESSING") {
				t.Fatalf("defect shows no stale read: %d %s", code, body)
			}
			if !defect && code == 200 && ks.State != "DONE" {
				t.Fatalf("correct build served a stale read: %s", body)
			}
		})
	}
}

// unbounded-queue: under a flood the correct build rejects with 429 while
// the defective one parks every request (no 429, the queue grows).
func TestDefectUnboundedQueueNeverRejects(t *testing.T) {
	for _, defect := range []bool{true, false} {
		t.Run(fmt.Sprint("defect=", defect), func(t *testing.T) {
			tweak := func(c *Config) {
				c.QueueDepth, c.MaxRequests, c.InflightInitial, c.InflightMax = 1, 4, 8, 8
				c.SlowPathDelay = 0
				if defect {
					withDefects(DefectUnboundedQueue)(c)
				}
			}
			c := startCluster(t, 1, tweak)
			gen := newGen(4)
			var mu sync.Mutex
			codes := map[int]int{}
			var wg sync.WaitGroup
			for w := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 {
						mu.Lock()
						var b []Message
						for range 20 {
							b = append(b, gen.next(fmt.Sprint("u", w), fmt.Sprint("k", w)))
						}
						mu.Unlock()
						code, _ := c.trySend("n1", b...)
						mu.Lock()
						codes[code]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if defect && codes[429] > 0 {
				t.Fatalf("unbounded queue still rejected: %v", codes)
			}
			if !defect && codes[429] == 0 {
				t.Fatalf("bounded build never rejected under a flood: %v", codes)
			}
		})
	}
}

func TestDefectSlowPathAddsLatency(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { withDefects(DefectSlowPath)(cfg); cfg.SlowPathDelay = 300 * time.Millisecond })
	start := time.Now()
	c.sendRetry(t, "n1", Message{SourceID: "s", Seq: 1, MsgID: "1", GroupKey: "k", Fingerprint: "f"})
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("slow-path request took %v, less than the injected 300ms", d)
	}
}

func TestDefectErrorRateFailsRequestsWithoutStoring(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { withDefects(DefectErrorRate)(cfg); cfg.ErrorRate = 0.5 })
	gen := newGen(4)
	failed, ok := map[string]bool{}, 0
	for range 60 {
		m := gen.next("e", "k")
		code, res := c.send(t, "n1", m)
		switch {
		case code == 500 && res[0].Status == StatusError:
			failed[m.MsgID] = true
		case code == 200:
			ok++
		}
	}
	if len(failed) == 0 || ok == 0 {
		t.Fatalf("error-rate 0.5: %d failed, %d ok", len(failed), ok)
	}
	for _, r := range c.readAll(t, "n1", partitionOf("k", 4)) {
		if failed[r.MsgID] {
			t.Fatalf("failed message %s was stored", r.MsgID)
		}
	}
}

func TestDefectSilentDropAcknowledgesWithoutStoring(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { withDefects(DefectSilentDrop)(cfg); cfg.DropRate = 0.5 })
	gen := newGen(4)
	acked := map[string]bool{}
	for range 60 {
		m := gen.next("s", "k")
		if code, res := c.send(t, "n1", m); code == 200 && res[0].Status == StatusOK {
			acked[m.MsgID] = true
		}
	}
	if len(acked) != 60 {
		t.Fatalf("silent-drop acknowledged %d of 60 messages, want every one", len(acked))
	}
	time.Sleep(3 * time.Second) // the reorder timeout declares the dropped seqs' holes gaps
	stored := 0
	for _, r := range c.readAll(t, "n1", partitionOf("k", 4)) {
		if r.Type == RecordMessage {
			stored++
		}
	}
	if stored == 0 || stored >= 60 {
		t.Fatalf("silent-drop 0.5: %d of 60 acknowledged messages stored, want some lost", stored)
	}
}

// hlc-no-update: a new leader whose clock runs behind (within the max
// offset) stamps records below its predecessor's — an HLC regression in
// the stream. The correct build merged the predecessor's stamps on apply.
func TestDefectHLCNoUpdateRegressesAfterFailover(t *testing.T) {
	for _, defect := range []bool{true, false} {
		t.Run(fmt.Sprint("defect=", defect), func(t *testing.T) {
			c := startCluster(t, 3, func(cfg *Config) {
				cfg.MaxClockOffset = 5 * time.Second
				cfg.BalanceInterval = time.Hour
				if cfg.ID == "n1" {
					cfg.Physical = func() int64 { return time.Now().Add(-3 * time.Second).UnixNano() }
				}
				if defect {
					withDefects(DefectHLCNoUpdate)(cfg)
				}
			})
			p := 1
			key := keyIn(p, 4, "h")
			gen := newGen(4)
			lead := c.leaderOf(p)
			if lead == "n1" { // start from a leader with a true clock
				g, _ := c.node("n1").group(p)
				_ = g.raft.LeadershipTransferToServer(raft.ServerID("n2"), "n2").Error()
				lead = c.leaderOf(p)
			}
			c.sendRetry(t, lead, gen.next("h", key), gen.next("h", key))
			g, _ := c.node(lead).group(p)
			if err := g.raft.LeadershipTransferToServer(raft.ServerID("n1"), "n1").Error(); err != nil {
				t.Fatal(err)
			}
			for c.leaderOf(p) != "n1" {
				time.Sleep(10 * time.Millisecond)
			}
			c.sendRetry(t, "n1", gen.next("h", key))
			recs := c.readAll(t, "n1", p)
			regressed := false
			for i := 1; i < len(recs); i++ {
				if hlcLess(recs[i].HLC, recs[i-1].HLC) {
					regressed = true
				}
			}
			if defect != regressed {
				t.Fatalf("defect=%v but regression=%v: %+v", defect, regressed, recs)
			}
		})
	}
}

func TestDefectGCChurnCausesCollections(t *testing.T) {
	gcs := func(tweak func(*Config)) uint32 {
		c := startCluster(t, 1, tweak)
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		gen := newGen(4)
		for range 50 {
			c.sendRetry(t, "n1", gen.next("g", "k"))
		}
		runtime.ReadMemStats(&b)
		c.stopAll()
		return b.NumGC - a.NumGC
	}
	base := gcs(nil)
	churn := gcs(withDefects(DefectGCChurn))
	if churn < base+10 {
		t.Fatalf("gc-churn ran %d collections, baseline %d", churn, base)
	}
}

func TestDefectLeakGrowsMemory(t *testing.T) {
	c := startCluster(t, 1, withDefects(DefectLeak))
	gen := newGen(4)
	for range 100 {
		c.sendRetry(t, "n1", gen.next("l", "k"))
	}
	if got := c.node("n1").leakedBytes.Load(); got < 100*1024 {
		t.Fatalf("leaked %d bytes", got)
	}
	_, body, _ := doJSON(t, "GET", "http://"+c.http["n1"]+"/metrics", nil)
	if !strings.Contains(string(body), "chaosgate_aggregator_leaked_bytes 1") {
		t.Fatalf("leak not visible: %s", grepLines(string(body), "leaked"))
	}
}
