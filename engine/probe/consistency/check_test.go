package consistency

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine/history"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/")

// expect pins what each planted history must show, so that a golden file
// rewritten with -update cannot silently accept a checker that misses it.
var expect = map[string]func(r Report) string{
	"clean": func(r Report) string {
		return want(r.OK && r.Counts.SentOK == 8 && r.Counts.Received == 7 && r.Counts.Linearizability == LinOK, "clean history must pass")
	},
	"lost":      func(r Report) string { return want(r.Counts.Lost == 1 && has(r, "I1"), "one lost") },
	"duplicate": func(r Report) string { return want(r.Counts.Duplicated == 1 && has(r, "I2"), "one duplicate") },
	"duplicate_msgid": func(r Report) string {
		return want(r.Counts.Duplicated == 1 && has(r, "I2"), "one duplicate by msg_id")
	},
	"unexpected": func(r Report) string { return want(r.Counts.Unexpected == 2 && has(r, "I3"), "two unexpected") },
	"reorder":    func(r Report) string { return want(r.Counts.OrderViolations == 1 && has(r, "I4"), "one reorder") },
	"readers_disagree": func(r Report) string {
		return want(r.Counts.OrderViolations == 1 && has(r, "I4"), "readers disagree on one offset")
	},
	"hlc_regression": func(r Report) string { return want(r.Counts.HLCViolations == 1 && has(r, "I5"), "one HLC regression") },
	"hlc_cross_node": func(r Report) string {
		return want(r.Counts.HLCViolations == 1 && has(r, "I5"), "cross-node regression beyond max offset")
	},
	"hlc_leader_change": func(r Report) string {
		return want(r.Counts.HLCViolations == 1 && hasText(r, "I5", "leader change") &&
			hasText(r, "I5", "offset 1 hlc 1763805601100000000.0 (node n2, epoch 4) after offset 0 hlc 1763805601400000000.0 (node n1, epoch 3), 300ms behind"),
			"a new leader 300ms behind its predecessor (within the max offset) that did not merge its stamps; the next leader's stamps are above both")
	},
	"split_brain": func(r Report) string {
		return want(r.Counts.SplitBrain >= 2 && r.Counts.Lost == 1 && has(r, "I8"), "two epochs writing at once")
	},
	"split_brain_one_epoch": func(r Report) string {
		const cause = "likely cause: split brain in partition 0 epoch 3 (nodes n1, n2)"
		return want(r.Counts.SplitBrain == 1 && r.Counts.Lost == 2 && r.Counts.OrderViolations == 2 &&
			hasText(r, "I8", "partition 0 epoch 3: nodes n1, n2") && hasText(r, "I8", "different records at offsets 0, 1") &&
			hasText(r, "I1", cause) && hasText(r, "I4", cause),
			"two leaders of partition 0 in epoch 3, named as the cause of the lost messages and of the readers' disagreement; the failover of partition 1 is not split brain")
	},
	"ack_after_gap": func(r Report) string {
		return want(r.Counts.Lost == 1 && r.Counts.SplitBrain == 0 && has(r, "I1"), "retry acknowledged after its seq was declared a gap")
	},
	"gap_superseded": func(r Report) string {
		return want(r.Counts.Lost == 0 && r.Counts.SplitBrain == 1 && has(r, "I8"), "acked write of a deposed leader declared a gap")
	},
	"stale_epoch": func(r Report) string { return want(r.Counts.SplitBrain == 1 && has(r, "I8"), "stale epoch committed") },
	"nonlinearizable": func(r Report) string {
		return want(r.Counts.Linearizability == LinIllegal && has(r, "I9"), "stale read")
	},
	"caps": func(r Report) string {
		return want(!r.OK && has(r, "I6") && len(r.Violations) == 1, "rss above cap only")
	},
	"upstream_commit_early": func(r Report) string {
		return want(r.Counts.Lost == 2 && r.Counts.DeadLettered == 1 && has(r, "I7") &&
			hasText(r, "I1", "a gap declared by the aggregator does not excuse it") &&
			hasText(r, "I1", "likely cause: the consumer group committed its offset past the message before the aggregator stored it") &&
			hasText(r, "I1", "msg_id 304 source s1 seq 4 key k1 partition 0 acked by kafka:in partition 2 offset 13 at line 4; committed 14 at line 14"),
			"a broker-acknowledged message behind its group's committed offset is lost, named as committed before the store; one under a gap is lost too; the dead-lettered one is accounted for")
	},
	"upstream_dlq": func(r Report) string {
		return want(r.Counts.Lost == 0 && r.Counts.DeadLettered == 1 && r.Counts.Duplicated == 0 && r.Counts.SentOK == 4 && r.OK,
			"a dead-lettered message missing from the output is accounted for; a replayed one in the output once is fine")
	},
	"kill_lost": func(r Report) string {
		return want(r.Counts.Lost == 1 && r.Counts.Duplicated == 1 && has(r, "I7") && has(r, "I1") && has(r, "I2"), "lost and re-stored across a kill")
	},
}

func want(ok bool, what string) string {
	if ok {
		return ""
	}
	return what
}

func has(r Report, inv string) bool {
	for _, v := range r.Violations {
		if v.Invariant == inv {
			return true
		}
	}
	return false
}

// hasText reports whether a violation of inv mentions text in its detail
// or in one of its examples.
func hasText(r Report, inv, text string) bool {
	for _, v := range r.Violations {
		if v.Invariant != inv {
			continue
		}
		if strings.Contains(v.Detail, text) {
			return true
		}
		for _, ex := range v.Examples {
			if strings.Contains(ex, text) {
				return true
			}
		}
	}
	return false
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		t.Run(name, func(t *testing.T) {
			evs, err := history.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rep := Check(evs, Config{})
			got, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			exp, ok := expect[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			if msg := exp(rep); msg != "" {
				t.Fatalf("%s: %s\n%s", name, msg, got)
			}
			if name != "clean" && name != "upstream_dlq" && rep.OK {
				t.Fatalf("planted anomaly passed:\n%s", got)
			}
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantB, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, wantB) {
				t.Fatalf("report differs from %s (run go test -update after review):\n%s", golden, got)
			}
			// Deterministic: a second run gives the same bytes.
			again, _ := json.MarshalIndent(Check(evs, Config{}), "", "  ")
			if !bytes.Equal(append(again, '\n'), got) {
				t.Fatal("two runs over one history differ")
			}
		})
	}
}

func TestCheckFileNamesFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	if err := os.WriteFile(path, []byte("{\"op\":\"node\",\"node\":\"n1\",\"event\":\"kill\"}\n{\"op\":\"recv\",\"hlc\":\"x\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := CheckFile(path, Config{})
	if err == nil || !strings.Contains(err.Error(), "h.jsonl:line 2") {
		t.Fatalf("got %v", err)
	}
	rep, err := CheckFile(filepath.Join("testdata", "lost.jsonl"), Config{})
	if err != nil || rep.Counts.Lost != 1 {
		t.Fatalf("streamed check: %+v %v", rep.Counts, err)
	}
}

func TestReportShapeMatchesContract(t *testing.T) {
	b, err := json.Marshal(Check(nil, Config{}))
	if err != nil {
		t.Fatal(err)
	}
	const w = `{"ok":true,"counts":{"sent_ok":0,"received":0,"lost":0,"duplicated":0,"unexpected":0,"order_violations":0,"hlc_violations":0,"split_brain":0,"linearizability":"ok"},"violations":[]}`
	if string(b) != w {
		t.Fatalf("got %s\nwant %s", b, w)
	}
}

// naiveCauses is what the reference finds beyond the counts: how many lost
// messages and how many readers' disagreements a split brain explains, and
// how many split brains the stream alone shows.
type naiveCauses struct {
	lost, disagree, streamSplit int
}

// naive is the reference implementation for the property test: quadratic
// loops straight from the invariant definitions, no indexes.
func naive(evs []history.Line) (Counts, naiveCauses) {
	var c Counts
	var nc naiveCauses
	var recs []history.Line
	// first[i] is the index in evs of the first record read at the offset
	// of evs[i] (for recv events).
	first := make([]int, len(evs))
	for i, e := range evs {
		if e.Op != history.OpRecv {
			continue
		}
		first[i] = i
		for j := 0; j < i; j++ {
			if evs[j].Op == history.OpRecv && evs[j].Partition == e.Partition && evs[j].Offset == e.Offset {
				first[i] = j
				break
			}
		}
		if first[i] == i {
			recs = append(recs, e)
		}
	}
	// Readers disagree: a record that is not the first at its offset and
	// holds another message.
	differs := func(i int) bool { return first[i] != i && evs[first[i]].MsgID != evs[i].MsgID }
	for i, e := range evs {
		if e.Op == history.OpRecv && differs(i) {
			c.OrderViolations++
		}
	}
	// Split brain in the stream: the nodes of one (partition, epoch) among
	// the first records at their offsets and the records that differ from
	// those; more than one is two leaders.
	type pe struct {
		p int
		e uint64
	}
	split := map[pe]bool{}
	streamNodes := map[pe][]string{}
	for i, e := range evs {
		if e.Op != history.OpRecv || e.Epoch == 0 || e.Node == "" || !(first[i] == i || differs(i)) {
			continue
		}
		k := pe{e.Partition, e.Epoch}
		if !slices.Contains(streamNodes[k], e.Node) {
			streamNodes[k] = append(streamNodes[k], e.Node)
		}
	}
	for k, ns := range streamNodes {
		if len(ns) > 1 {
			c.SplitBrain++
			nc.streamSplit++
			split[k] = true
		}
	}
	// Split brain in acknowledgements: two nodes acking for one (partition, epoch).
	ackNodes := map[pe][]string{}
	for _, e := range evs {
		if e.Op == history.OpSend && e.Result == history.ResultOK && e.HasPartition && e.Epoch != 0 && e.Node != "" {
			k := pe{e.Partition, e.Epoch}
			if !slices.Contains(ackNodes[k], e.Node) {
				ackNodes[k] = append(ackNodes[k], e.Node)
			}
		}
	}
	for k, ns := range ackNodes {
		if len(ns) > 1 {
			c.SplitBrain++
			split[k] = true
		}
	}
	splitIn := func(p int, epochs ...uint64) bool {
		for k := range split {
			if k.p != p {
				continue
			}
			if len(epochs) == 0 || slices.Contains(epochs, k.e) {
				return true
			}
		}
		return false
	}
	for i, e := range evs {
		if e.Op != history.OpRecv || !differs(i) {
			continue
		}
		var epochs []uint64
		for _, x := range []uint64{evs[first[i]].Epoch, e.Epoch} {
			if x != 0 {
				epochs = append(epochs, x)
			}
		}
		if splitIn(e.Partition, epochs...) {
			nc.disagree++
		}
	}
	// order by (partition, offset)
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && (recs[j].Partition < recs[j-1].Partition || recs[j].Partition == recs[j-1].Partition && recs[j].Offset < recs[j-1].Offset); j-- {
			recs[j], recs[j-1] = recs[j-1], recs[j]
		}
	}
	// A stale epoch: a record whose epoch is lower than an earlier offset's.
	for i, r := range recs {
		for j := 0; j < i; j++ {
			if r.Epoch != 0 && recs[j].Partition == r.Partition && recs[j].Epoch > r.Epoch {
				c.SplitBrain++
				break
			}
		}
	}
	c.Received = len(recs)
	isDup := make([]bool, len(recs))
	for i, r := range recs {
		for j := 0; j < i; j++ {
			if !isDup[j] && (recs[j].MsgID == r.MsgID || recs[j].Partition == r.Partition && recs[j].Source == r.Source && recs[j].Seq == r.Seq) {
				isDup[i] = true
			}
		}
		if isDup[i] {
			c.Duplicated++
			continue
		}
		sent := false
		for _, e := range evs {
			if e.Op == history.OpSend && e.MsgID == r.MsgID && e.Source == r.Source && e.Seq == r.Seq && (e.Result == history.ResultOK || e.Result == history.ResultTimeout) {
				sent = true
			}
		}
		if !sent {
			c.Unexpected++
		}
		for j := i - 1; j >= 0; j-- {
			if !isDup[j] && recs[j].Partition == r.Partition && recs[j].Key == r.Key && recs[j].Source == r.Source {
				maxSeq := uint64(0)
				for k := 0; k < i; k++ {
					if !isDup[k] && recs[k].Partition == r.Partition && recs[k].Key == r.Key && recs[k].Source == r.Source && recs[k].Seq > maxSeq {
						maxSeq = recs[k].Seq
					}
				}
				if r.Seq <= maxSeq {
					c.OrderViolations++
				}
				break
			}
		}
	}
	inOutput := func(msgID string) bool {
		for i, r := range recs {
			if !isDup[i] && r.MsgID == msgID {
				return true
			}
		}
		return false
	}
	counted := map[string]bool{}
	for _, e := range evs {
		if e.Op != history.OpSend || e.Result != history.ResultOK || counted[e.MsgID] {
			continue
		}
		counted[e.MsgID] = true
		c.SentOK++
		found := false
		for _, r := range recs {
			if r.MsgID == e.MsgID || (r.Partition == e.Partition && r.Source == e.Source && r.Seq == e.Seq) {
				found = true
			}
		}
		if !found {
			c.Lost++
			var epochs []uint64
			if e.Epoch != 0 {
				epochs = append(epochs, e.Epoch)
			}
			if splitIn(e.Partition, epochs...) {
				nc.lost++
			}
		}
	}
	// A write acknowledged in an epoch lower than the partition's last one
	// in the output, and missing from the output: once per (partition, epoch).
	superseded := map[pe]bool{}
	for _, e := range evs {
		if e.Op != history.OpSend || e.Result != history.ResultOK || !e.HasPartition || e.Epoch == 0 || e.Node == "" || inOutput(e.MsgID) {
			continue
		}
		top := uint64(0)
		for _, r := range recs {
			if r.Partition == e.Partition && r.Epoch > top {
				top = r.Epoch
			}
		}
		if top > e.Epoch {
			superseded[pe{e.Partition, e.Epoch}] = true
		}
	}
	c.SplitBrain += len(superseded)
	return c, nc
}

// randomHistory simulates sources sending to partitions whose streams
// lose, duplicate and reorder records at random. Each partition has a
// leader per epoch and may fail over to a new epoch (healthy); a reader may
// read a record again and name another node for it (a follower serving a
// committed record); and a quarter of the partitions get a second leader
// that accepts writes in an epoch it shares with the real leader (or in a
// stale one), whose stream a second reader reads: split brain.
func randomHistory(rng *rand.Rand) (evs []history.Line, rogues int) {
	nodes := []string{"n1", "n2", "n3"}
	other := func(n string) string {
		for {
			if o := nodes[rng.Intn(len(nodes))]; o != n {
				return o
			}
		}
	}
	const parts = 3
	type leadership struct {
		e1, e2 uint64
		l1, l2 string
		failAt int64 // first offset of epoch e2; -1: no failover
		split  bool
	}
	lead := make([]leadership, parts)
	for p := range lead {
		ld := &lead[p]
		ld.e1, ld.l1, ld.failAt = uint64(1+rng.Intn(3)), nodes[rng.Intn(len(nodes))], -1
		ld.e2, ld.l2 = ld.e1, ld.l1
		if rng.Intn(2) == 0 {
			ld.failAt, ld.e2, ld.l2 = int64(rng.Intn(12)), ld.e1+1+uint64(rng.Intn(2)), nodes[rng.Intn(len(nodes))]
		}
		ld.split = rng.Intn(4) == 0
	}
	leaderAt := func(p int, off int64) (uint64, string) {
		if ld := lead[p]; ld.failAt >= 0 && off >= ld.failAt {
			return ld.e2, ld.l2
		}
		return lead[p].e1, lead[p].l1
	}
	ackMode := rng.Intn(3)       // acks carry 0: neither epoch nor node, 1: the node, 2: epoch and node
	noEpochs := rng.Intn(6) == 0 // records carry neither epoch nor node

	var out []history.Line
	rogue := make([][]history.Line, parts)
	sendAt := map[string]int{} // msg_id -> index of its send in evs
	t := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	id := 0
	for s := 0; s < 1+rng.Intn(4); s++ {
		src := fmt.Sprintf("s%d", s)
		seqs := map[int]uint64{}
		for i := 0; i < rng.Intn(30); i++ {
			part := rng.Intn(parts)
			seqs[part]++
			id++
			key := fmt.Sprintf("k%d", part*10+rng.Intn(3))
			mid := fmt.Sprint(id)
			res := []history.OpResult{history.ResultOK, history.ResultOK, history.ResultOK, history.ResultTimeout, history.ResultRejected}[rng.Intn(5)]
			sendAt[mid] = len(evs)
			evs = append(evs, history.Line{Op: history.OpSend, T: t, Source: src, Seq: seqs[part], MsgID: mid, Key: key, Result: res, Partition: part, HasPartition: true})
			rec := history.Line{Op: history.OpRecv, Partition: part, Source: src, Seq: seqs[part], MsgID: mid, Key: key}
			if lead[part].split && rng.Intn(3) == 0 {
				rogue[part] = append(rogue[part], rec) // accepted by the second leader
				continue
			}
			if rng.Intn(10) > 0 || res == history.ResultTimeout {
				out = append(out, rec)
			}
			if rng.Intn(10) == 0 {
				out = append(out, rec) // duplicate
			}
			if rng.Intn(20) == 0 {
				rec.MsgID = "x" + mid // unexpected identity
				rec.Seq += 1000
				out = append(out, rec)
			}
		}
	}
	rng.Shuffle(len(out), func(i, j int) {
		if rng.Intn(8) == 0 {
			out[i], out[j] = out[j], out[i]
		}
	})
	ack := func(mid string, epoch uint64, node string) {
		i, ok := sendAt[mid]
		if !ok {
			return
		}
		switch ackMode {
		case 1:
			evs[i].Node = node
		case 2:
			evs[i].Node, evs[i].Epoch = node, epoch
		}
	}
	offsets := map[int]int64{}
	var main []history.Line
	for _, r := range out {
		r.Offset = offsets[r.Partition]
		offsets[r.Partition]++
		r.Epoch, r.Node = leaderAt(r.Partition, r.Offset)
		ack(r.MsgID, r.Epoch, r.Node)
		main = append(main, r)
		if rng.Intn(15) == 0 { // a second reader re-reads the same record
			r.Client = "cons2"
			if rng.Intn(2) == 0 {
				r.Node = other(r.Node) // served by a follower that names itself
			}
			main = append(main, r)
		}
	}
	var second []history.Line
	for p, rs := range rogue {
		if len(rs) == 0 {
			continue
		}
		rogues++
		at := rng.Int63n(offsets[p] + 1)
		epoch, leader := leaderAt(p, at)
		if rng.Intn(5) == 0 && epoch > 1 {
			epoch-- // a deposed leader writing on in its old epoch
		}
		node := other(leader)
		for i, r := range rs {
			r.Offset, r.Epoch, r.Node, r.Client = at+int64(i), epoch, node, "cons-b"
			ack(r.MsgID, epoch, node)
			second = append(second, r)
		}
	}
	// A message the stream lost was acknowledged by the partition's last leader.
	for i := range evs {
		if evs[i].Op == history.OpSend && evs[i].Node == "" {
			e, n := leaderAt(evs[i].Partition, offsets[evs[i].Partition])
			ack(evs[i].MsgID, e, n)
		}
	}
	// The two readers' lines interleave.
	for len(main)+len(second) > 0 {
		if rng.Intn(len(main)+len(second)) < len(second) {
			evs, second = append(evs, second[0]), second[1:]
		} else {
			evs, main = append(evs, main[0]), main[1:]
		}
	}
	if noEpochs {
		for i := range evs {
			if evs[i].Op == history.OpRecv {
				evs[i].Epoch, evs[i].Node = 0, ""
			}
		}
	}
	return evs, rogues
}

// causes counts, over a report whose examples are not truncated, the lost
// messages and the readers' disagreements it attributes to a split brain.
func causes(r Report) (lost, disagree int) {
	for _, v := range r.Violations {
		if !strings.Contains(v.Detail, "likely cause: split brain in partition") {
			continue
		}
		switch {
		case v.Invariant == "I1" && strings.HasPrefix(v.Detail, "acknowledged message missing from the output"):
			lost += len(v.Examples)
		case v.Invariant == "I4" && strings.HasPrefix(v.Detail, "readers disagree"):
			disagree += len(v.Examples)
		}
	}
	return lost, disagree
}

func TestPropertyAgainstNaiveReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	anomalies, splits, healthy, attributed := 0, 0, 0, 0
	for i := 0; i < 2000; i++ {
		evs, rogues := randomHistory(rng)
		rep := Check(evs, Config{MaxExamples: 1 << 20})
		got := rep.Counts
		ref, refCauses := naive(evs)
		got.Linearizability, got.HLCViolations = "", 0
		lost, disagree := causes(rep)
		if got != ref || lost != refCauses.lost || disagree != refCauses.disagree {
			var b strings.Builder
			for _, e := range evs {
				line, _ := history.Marshal(e)
				b.Write(line)
				b.WriteByte('\n')
			}
			t.Fatalf("case %d: checker %+v (split brain causes %d lost, %d disagreements), reference %+v %+v\n%s", i, got, lost, disagree, ref, refCauses, b.String())
		}
		streamSplit := hasText(rep, "I8", "split brain: two nodes committed")
		if streamSplit != (refCauses.streamSplit > 0) {
			t.Fatalf("case %d: stream split brain reported %v, reference found %d", i, streamSplit, refCauses.streamSplit)
		}
		if rogues == 0 && streamSplit {
			t.Fatalf("case %d: failovers and follower reads reported as split brain: %+v", i, rep.Violations)
		}
		if ref.Lost+ref.Duplicated+ref.Unexpected+ref.OrderViolations > 0 {
			anomalies++
		}
		if refCauses.streamSplit > 0 {
			splits++
		}
		if rogues == 0 {
			healthy++
		}
		attributed += refCauses.lost + refCauses.disagree
	}
	t.Logf("of 2000 histories: %d with anomalies, %d with split brain in the stream, %d without a second leader; %d symptoms attributed to split brain", anomalies, splits, healthy, attributed)
	if anomalies < 500 || splits < 300 || healthy < 300 || attributed < 300 {
		t.Fatalf("generator planted anomalies in %d, split brain in %d, none in %d of 2000 histories; %d symptoms attributed", anomalies, splits, healthy, attributed)
	}
}

func TestTimeoutIsNotLossAndRejectedMustNotBeStored(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	evs := []history.Line{
		{Op: history.OpSend, T: t0, Source: "s", Seq: 1, MsgID: "1", Key: "k", Result: history.ResultTimeout},
		{Op: history.OpSend, T: t0, Source: "s", Seq: 2, MsgID: "2", Key: "k", Result: history.ResultRejected},
	}
	if r := Check(evs, Config{}); !r.OK || r.Counts.Lost != 0 {
		t.Fatalf("timeout counted as loss: %+v", r)
	}
	evs = append(evs, history.Line{Op: history.OpRecv, Partition: 0, Offset: 0, Source: "s", Seq: 2, MsgID: "2", Key: "k"})
	if r := Check(evs, Config{}); r.OK || r.Counts.Unexpected != 1 {
		t.Fatalf("stored rejected message not flagged: %+v", r)
	}
}

func TestLinearizabilityTimedOutWriteMayApplyLater(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	evs := []history.Line{
		{Op: history.OpWrite, Client: "a", Key: "k", Value: "v1", Result: history.ResultTimeout, Start: at(1), End: at(2)},
		{Op: history.OpRead, Client: "b", Key: "k", Value: "", Result: history.ResultOK, Start: at(3), End: at(4)},
		{Op: history.OpRead, Client: "b", Key: "k", Value: "v1", Result: history.ResultOK, Start: at(5), End: at(6)},
	}
	if r := Check(evs, Config{}); r.Counts.Linearizability != LinOK {
		t.Fatalf("timed-out write taking effect late flagged: %+v", r)
	}
	evs = append(evs, history.Line{Op: history.OpRead, Client: "b", Key: "k", Value: "", Result: history.ResultOK, Start: at(7), End: at(8)})
	if r := Check(evs, Config{}); r.Counts.Linearizability != LinIllegal {
		t.Fatalf("value going back to initial not flagged: %+v", r)
	}
}

// BenchmarkCheck1M measures checking a clean one-million-line history.
func BenchmarkCheck1M(b *testing.B) {
	evs := bigHistory(1_000_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := Check(evs, Config{}); !r.OK {
			b.Fatalf("clean history failed: %+v", r.Violations)
		}
	}
	b.ReportMetric(float64(len(evs)), "lines/op")
}

// BenchmarkReadAndCheck1M includes parsing the JSON lines.
func BenchmarkReadAndCheck1M(b *testing.B) {
	var buf bytes.Buffer
	w := history.NewWriter(&buf)
	for _, ev := range bigHistory(1_000_000) {
		if err := w.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := CheckReader(bytes.NewReader(buf.Bytes()), Config{})
		if err != nil {
			b.Fatal(err)
		}
		if !r.OK {
			b.Fatal("clean history failed")
		}
	}
}

func bigHistory(lines int) []history.Line {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const sources, parts = 8, 16
	evs := make([]history.Line, 0, lines)
	seq := map[[2]int]uint64{}
	offs := map[int]int64{}
	var recv []history.Line
	for i := 0; len(evs)+len(recv)+2 <= lines; i++ {
		s, p := i%sources, (i/sources)%parts
		seq[[2]int{s, p}]++
		q := seq[[2]int{s, p}]
		src, key, id := fmt.Sprintf("s%d", s), fmt.Sprintf("k%d", p*4+i%4), fmt.Sprint(1_000_000+i)
		h := history.HLC{Wall: t0.UnixNano() + int64(i), Logical: 0}
		evs = append(evs, history.Line{Op: history.OpSend, T: t0, Source: src, Seq: q, MsgID: id, Key: key, Node: "n1", Result: history.ResultOK, HLC: h, Partition: p, HasPartition: true, Epoch: 2})
		recv = append(recv, history.Line{Op: history.OpRecv, Partition: p, Offset: offs[p], Key: key, Source: src, Seq: q, MsgID: id, Epoch: 2, HLC: h, Node: "n1"})
		offs[p]++
	}
	return append(evs, recv...)
}

// FuzzCheck feeds arbitrary histories (whatever the strict reader accepts)
// to the checker: it must never panic and must stay deterministic.
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := history.ReadAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		cfg := Config{LinearizabilityTimeout: time.Second}
		a, _ := json.Marshal(Check(evs, cfg))
		b, _ := json.Marshal(Check(evs, cfg))
		if !bytes.Equal(a, b) && !bytes.Contains(a, []byte(`"unknown"`)) {
			t.Fatalf("two checks differ:\n%s\n%s", a, b)
		}
	})
}

type linOp struct {
	write     bool
	value     string
	call, ret int64
	okTimeout bool
}

// bruteLinearizable tries every order of ops that respects real time (a
// before b when a returns before b is called) on a register starting at "".
func bruteLinearizable(ops []linOp) bool {
	n := len(ops)
	used := make([]bool, n)
	var rec func(done int, state string) bool
	rec = func(done int, state string) bool {
		if done == n {
			return true
		}
		for i := 0; i < n; i++ {
			if used[i] {
				continue
			}
			// i may go next only if no unused op returned before i was called
			ok := true
			for j := 0; j < n; j++ {
				if j != i && !used[j] && ops[j].ret < ops[i].call {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			next := state
			if ops[i].write {
				next = ops[i].value
			} else if ops[i].value != state {
				continue
			}
			used[i] = true
			if rec(done+1, next) {
				used[i] = false
				return true
			}
			used[i] = false
		}
		return false
	}
	return rec(0, "")
}

func TestLinearizabilityAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	illegal := 0
	for c := 0; c < 3000; c++ {
		n := 2 + rng.Intn(5)
		var ops []linOp
		var evs []history.Line
		for i := 0; i < n; i++ {
			call := int64(rng.Intn(20))
			ret := call + int64(rng.Intn(6))
			op := linOp{write: rng.Intn(2) == 0, call: call, ret: ret}
			op.value = []string{"", "a", "b"}[rng.Intn(3)]
			ev := history.Line{Op: history.OpRead, Client: fmt.Sprint("c", i), Key: "k", Value: op.value, Result: history.ResultOK,
				Start: t0.Add(time.Duration(call)), End: t0.Add(time.Duration(ret))}
			if op.write {
				if op.value == "" {
					op.value = "a"
				}
				ev.Op, ev.Value = history.OpWrite, op.value
				if rng.Intn(4) == 0 { // timed out: may apply any time after its call
					ev.Result = history.ResultTimeout
					op.ret = math.MaxInt64
				}
			}
			ops = append(ops, op)
			evs = append(evs, ev)
		}
		want := bruteLinearizable(ops)
		got := Check(evs, Config{}).Counts.Linearizability
		if (got == LinOK) != want || got == LinUnknown {
			t.Fatalf("case %d: porcupine %s, brute force linearizable=%v: %+v", c, got, want, ops)
		}
		if !want {
			illegal++
		}
	}
	if illegal < 300 {
		t.Fatalf("only %d of 3000 random histories were non-linearizable", illegal)
	}
}

func recvAt(client string, p int, off int64, msgID string, epoch uint64, node string) history.Line {
	return history.Line{Op: history.OpRecv, Client: client, Partition: p, Offset: off, Key: "k" + msgID, Source: "s" + msgID, Seq: 1, MsgID: msgID, Epoch: epoch, Node: node}
}

func sendOK(msgID string, epoch uint64, node string) history.Line {
	return history.Line{Op: history.OpSend, Source: "s" + msgID, Seq: 1, MsgID: msgID, Key: "k" + msgID, Result: history.ResultOK, Epoch: epoch, Node: node}
}

func TestFailoverAndFollowerReadsAreNotSplitBrain(t *testing.T) {
	var evs []history.Line
	for _, id := range []string{"1", "2", "3", "4"} {
		evs = append(evs, sendOK(id, 0, ""))
	}
	// n1 leads epoch 1, n2 takes over in epoch 2; three readers read the
	// whole stream, the last one naming the node that served it (n3).
	for _, reader := range []string{"a", "b", "c"} {
		for off, id := range []string{"1", "2", "3", "4"} {
			epoch, node := uint64(1), "n1"
			if off >= 2 {
				epoch, node = 2, "n2"
			}
			if reader == "c" {
				node = "n3"
			}
			evs = append(evs, recvAt(reader, 0, int64(off), id, epoch, node))
		}
	}
	if r := Check(evs, Config{}); !r.OK || r.Counts.SplitBrain != 0 {
		t.Fatalf("healthy failover and follower reads: %+v", r)
	}

	// One node delivering two records at one offset: readers disagree,
	// but there is no second leader to blame.
	same := append(slices.Clone(evs), sendOK("5", 0, ""), recvAt("d", 0, 1, "5", 1, "n1"))
	r := Check(same, Config{})
	if r.Counts.SplitBrain != 0 || r.Counts.OrderViolations != 1 || hasText(r, "I4", "likely cause") {
		t.Fatalf("one node, two records at one offset: %+v", r)
	}

	// Two nodes at one offset in different epochs: the same.
	epochs := append(slices.Clone(evs), sendOK("5", 0, ""), recvAt("d", 0, 1, "5", 2, "n2"))
	r = Check(epochs, Config{})
	if r.Counts.SplitBrain != 0 || r.Counts.OrderViolations != 1 || hasText(r, "I4", "likely cause") {
		t.Fatalf("two nodes at one offset in different epochs: %+v", r)
	}

	// Two nodes at one offset in one epoch: split brain, and the cause.
	split := append(slices.Clone(evs), sendOK("5", 0, ""), recvAt("d", 0, 1, "5", 1, "n3"))
	r = Check(split, Config{})
	if r.Counts.SplitBrain != 1 || !hasText(r, "I8", "partition 0 epoch 1: nodes n1, n3 (n1 at offsets 0, 1; n3 at offset 1; different records at offset 1)") ||
		!hasText(r, "I4", "likely cause: split brain in partition 0 epoch 1 (nodes n1, n3)") || !hasText(r, "I1", "likely cause: split brain in partition 0 epoch 1 (nodes n1, n3)") {
		t.Fatalf("two nodes at one offset in one epoch: %+v", r)
	}
}

func TestSplitBrainCauseFollowsTheAcknowledgement(t *testing.T) {
	evs := []history.Line{
		// Two split brains in partition 0: epoch 3 (n1, n2) and epoch 5 (n2, n3).
		sendOK("1", 3, "n1"), sendOK("2", 3, "n2"), sendOK("3", 5, "n2"), sendOK("4", 5, "n3"),
		recvAt("a", 0, 0, "1", 3, "n1"), recvAt("b", 0, 0, "2", 3, "n2"),
		recvAt("a", 0, 1, "3", 5, "n2"), recvAt("b", 0, 1, "4", 5, "n3"),
		// Lost: acked in epoch 5; acked by n1 without an epoch; acked
		// without epoch or node; acked in epoch 4 (no split brain there).
		sendOK("10", 5, "n3"), sendOK("11", 0, "n1"), sendOK("12", 0, ""), sendOK("13", 4, "n1"),
	}
	for i := range evs {
		if evs[i].Op == history.OpSend {
			evs[i].Partition, evs[i].HasPartition = 0, true
		}
	}
	r := Check(evs, Config{MaxExamples: 100})
	lostBy := map[string]string{}
	for _, v := range r.Violations {
		if v.Invariant != "I1" {
			continue
		}
		for _, ex := range v.Examples {
			lostBy[strings.Fields(ex)[1]] = v.Detail
		}
	}
	const base = "acknowledged message missing from the output and not covered by a gap"
	wantBy := map[string]string{
		"2":  base + "; likely cause: split brain in partition 0 epoch 3 (nodes n1, n2)",
		"4":  base + "; likely cause: split brain in partition 0 epoch 5 (nodes n2, n3)",
		"10": base + "; likely cause: split brain in partition 0 epoch 5 (nodes n2, n3)",
		"11": base + "; likely cause: split brain in partition 0 epoch 3 (nodes n1, n2)",
		"12": base + "; likely cause: split brain in partition 0 epoch 3 (nodes n1, n2); partition 0 epoch 5 (nodes n2, n3)",
		"13": base,
	}
	for id, w := range wantBy {
		if lostBy[id] != w {
			t.Errorf("msg %s: detail %q, want %q", id, lostBy[id], w)
		}
	}
	// The stream and the acknowledgements each show epochs 3 and 5; the
	// writes acknowledged in epochs 3 and 4 and missing were overwritten by
	// epoch 5.
	if r.Counts.SplitBrain != 6 || r.Counts.Lost != 6 {
		t.Fatalf("counts %+v\n%+v", r.Counts, r.Violations)
	}
}
