package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkStream asserts the invariants a consumer relies on: dense offsets,
// every acked message exactly once, per-source sequences increasing.
func checkStream(t *testing.T, recs []Record, acked map[string]Message) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]uint64{}
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("offsets not dense: record %d has offset %d", i, r.Offset)
		}
		if r.Epoch == 0 || r.HLC == "" || r.Node == "" {
			t.Fatalf("record %d lacks epoch/hlc/node: %+v", i, r)
		}
		switch r.Type {
		case RecordMessage:
			if seen[r.MsgID] {
				t.Fatalf("duplicate msg_id %s in stream", r.MsgID)
			}
			seen[r.MsgID] = true
			if r.Seq <= last[r.SourceID] {
				t.Fatalf("source %s seq %d after %d", r.SourceID, r.Seq, last[r.SourceID])
			}
			last[r.SourceID] = r.Seq
		case RecordGap:
			if r.FromSeq <= last[r.SourceID] || r.ToSeq < r.FromSeq {
				t.Fatalf("bad gap %+v after %d", r, last[r.SourceID])
			}
			last[r.SourceID] = r.ToSeq
		}
	}
	return seen
}

func TestReplicatedIngestStreamDedupForwarding(t *testing.T) {
	c := startCluster(t, 3, nil)
	gen := newGen(4)
	acked := map[string]Message{}
	var all []Message
	for i := range 300 {
		m := gen.next(fmt.Sprintf("s%d", i%3), fmt.Sprintf("k%d", i%17))
		all = append(all, m)
	}
	// batches to every node: most messages are forwarded to their leader
	for i := 0; i < len(all); i += 50 {
		res := c.sendRetry(t, c.ids[(i/50)%3], all[i:i+50]...)
		for j, r := range res {
			if r.Status != StatusOK || r.Epoch == 0 || r.HLC == "" {
				t.Fatalf("result %+v", r)
			}
			acked[r.MsgID] = all[i+j]
		}
	}
	// a retry of everything is acknowledged as duplicate and stored once
	code, res := c.send(t, "n2", all[:100]...)
	if code != 200 {
		t.Fatalf("retry: HTTP %d", code)
	}
	for _, r := range res {
		if r.Status != StatusDuplicate {
			t.Fatalf("retry not caught: %+v", r)
		}
	}
	total := 0
	for p := range 4 {
		var ref []Record
		for _, id := range c.ids { // every node serves the same stream (forwarded to the leader)
			recs := c.readAll(t, id, p)
			if ref == nil {
				ref = recs
			} else if len(recs) != len(ref) {
				t.Fatalf("partition %d: node %s sees %d records, others %d", p, id, len(recs), len(ref))
			}
		}
		seen := checkStream(t, ref, acked)
		total += len(seen)
		for _, r := range ref {
			if partitionOf(r.GroupKey, 4) != p {
				t.Fatalf("record of key %s in partition %d", r.GroupKey, p)
			}
		}
	}
	if total != len(acked) {
		t.Fatalf("stream holds %d messages, %d acked", total, len(acked))
	}
	// followers have applied the same stream locally (replication)
	time.Sleep(200 * time.Millisecond)
	for _, id := range c.ids {
		var n int
		for p := range 4 {
			g, _ := c.node(id).group(p)
			n += int(g.fsm.hwm.Load())
		}
		if n != len(acked) {
			t.Fatalf("node %s applied %d records, want %d", id, n, len(acked))
		}
	}
	// GET /v1/cluster
	_, body, _ := doJSON(t, "GET", "http://"+c.http["n1"]+"/v1/cluster", nil)
	var ci ClusterInfo
	if err := json.Unmarshal(body, &ci); err != nil || ci.Partitioner != "jump-xxhash64" || ci.PartitionCount != 4 || len(ci.Nodes) != 3 || len(ci.Partitions) != 4 {
		t.Fatalf("cluster: %s", body)
	}
	for _, p := range ci.Partitions {
		if p.Leader == "" || p.Epoch == 0 || len(p.Members) != 3 {
			t.Fatalf("partition info %+v", p)
		}
	}
}

func TestReorderAndGap(t *testing.T) {
	c := startCluster(t, 3, nil)
	key := "k1"
	p := partitionOf(key, 4)
	mk := func(seq uint64) Message {
		return Message{SourceID: "s", Seq: seq, MsgID: fmt.Sprint(1000 + seq), GroupKey: key, Fingerprint: fmt.Sprint("f", seq)}
	}
	for _, s := range []uint64{1, 3, 2, 6} {
		if code, res := c.send(t, "n1", mk(s)); code != 200 || res[0].Status != StatusOK {
			t.Fatalf("seq %d: %d %+v", s, code, res)
		}
	}
	// seq 4,5 never arrive: after the reorder timeout they are a GAP
	deadline := time.Now().Add(10 * time.Second)
	var recs []Record
	for time.Now().Before(deadline) {
		recs = c.readAll(t, "n2", p)
		if len(recs) == 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := []string{"message 1", "message 2", "message 3", "gap 4-5", "message 6"}
	var got []string
	for _, r := range recs {
		if r.Type == RecordGap {
			got = append(got, fmt.Sprintf("gap %d-%d", r.FromSeq, r.ToSeq))
		} else {
			got = append(got, fmt.Sprintf("message %d", r.Seq))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stream %v want %v", got, want)
	}
	// a late arrival inside the declared gap is refused, not stored
	_, res := c.send(t, "n3", mk(4))
	if res[0].Status != StatusError || res[0].ErrorKind != "late" {
		t.Fatalf("late arrival: %+v", res[0])
	}
	// gaps are counted in /metrics
	_, body, _ := doJSON(t, "GET", "http://"+c.http[c.leaderOf(p)]+"/metrics", nil)
	if !strings.Contains(string(body), "chaosgate_aggregator_gaps_total 1") {
		t.Fatalf("gap not counted:\n%s", grepLines(string(body), "gaps"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestStateMachineCAS(t *testing.T) {
	c := startCluster(t, 3, nil)
	url := "http://" + c.http["n3"] + "/v1/state/order-1"
	code, body, _ := doJSON(t, "GET", url, nil)
	var ks KeyState
	_ = json.Unmarshal(body, &ks)
	if code != 200 || ks.State != "INIT" || ks.Version != 0 {
		t.Fatalf("new key: %d %s", code, body)
	}
	put := func(state string, exp uint64, val string) (int, KeyState) {
		code, body, _ := doJSON(t, "PUT", url, map[string]any{"state": state, "expected_version": exp, "value": val})
		var ks KeyState
		_ = json.Unmarshal(body, &ks)
		return code, ks
	}
	if code, ks := put("PROCESSING", 0, "a"); code != 200 || ks.Version != 1 || ks.Epoch == 0 {
		t.Fatalf("put: %d %+v", code, ks)
	}
	if code, ks := put("PROCESSING", 0, "a"); code != 200 || ks.Version != 1 {
		t.Fatalf("idempotent re-send: %d %+v", code, ks)
	}
	if code, ks := put("DONE", 0, "b"); code != 409 || ks.Version != 1 {
		t.Fatalf("stale version: %d %+v", code, ks)
	}
	if code, _ := put("INIT", 1, "b"); code != 422 {
		t.Fatalf("illegal transition: %d", code)
	}
	if code, ks := put("DONE", 1, "b"); code != 200 || ks.Version != 2 || ks.State != "DONE" {
		t.Fatalf("done: %d %+v", code, ks)
	}
	for _, id := range c.ids {
		code, body, _ := doJSON(t, "GET", "http://"+c.http[id]+"/v1/state/order-1", nil)
		_ = json.Unmarshal(body, &ks)
		if code != 200 || ks.State != "DONE" || ks.Version != 2 || ks.Value != "b" {
			t.Fatalf("read via %s: %d %s", id, code, body)
		}
	}
}

// A forward whose client goes away before the leader answers is counted
// as abandoned, not as a failure of the leader: a dependency failure rate
// must not grow with how often clients give up.
func TestForwardAbandonedByTheClientIsNotALeaderFailure(t *testing.T) {
	c := startCluster(t, 3, nil)
	leader := c.leaderOf(1)
	var follower string
	for _, id := range c.ids {
		if id != leader {
			follower = id
			break
		}
	}
	key := keyIn(1, 4, "gone")
	// The leader cannot commit while cut off, so it answers only after its
	// apply timeout; the client gives up long before.
	c.isolate(leader, true)
	defer c.isolate(leader, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	body, _ := json.Marshal(map[string][]Message{"messages": {{SourceID: "g", Seq: 1, MsgID: "9001", GroupKey: key, Fingerprint: "f"}}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.http[follower]+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the request was answered (HTTP %d) before the client gave up", resp.StatusCode)
	}
	counter := func(name string) float64 {
		_, b, _ := doJSON(t, "GET", "http://"+c.http[follower]+"/metrics", nil)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatalf("metrics lack %s", name)
		return 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for counter("chaosgate_aggregator_forwards_abandoned_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned forward was never counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := counter("chaosgate_aggregator_forward_errors_total"); n != 0 {
		t.Fatalf("forward_errors_total = %g, want 0: the client went away, the leader did not fail", n)
	}
}
