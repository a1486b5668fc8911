// Package consistency is the consistency probe's checker: a deterministic,
// pure function from a parsed history/v1 to a report on the invariants
// I1–I9 of the aggregator contract.
//
// What each invariant checks over the history:
//
//   - I1 lost: a message with an "ok" send whose msg_id never appears in an
//     output stream and whose (source, partition, seq) no declared gap covers;
//     also one acknowledged after its seq had been declared a gap (a gap
//     declared in an earlier epoch, or earlier in HLC order in the same
//     epoch, cannot excuse an acknowledgement given later).
//     Timeouts are unknown outcomes: a message whose sends all timed out is
//     never counted lost.
//   - I2 duplicated: an output record whose (source, partition, seq) or whose
//     msg_id already appeared at a lower offset.
//   - I3 unexpected: an output record whose msg_id was never sent, that
//     disagrees with its send on source or seq, or whose every send was
//     "rejected" or "fail" (explicitly not stored).
//   - I4 order: for each partition, key and source, seq strictly increasing
//     along offsets; and every reader sees the same record at one
//     (partition, offset). Both count as order_violations.
//   - I5 HLC: along a partition's offsets, the HLC of records committed by
//     one node never decreases (also across its restarts), never falls
//     more than MaxOffset behind an earlier record of another node, and
//     never falls behind an earlier record at a leader change (a record of
//     a newer epoch and another node below the highest stamp before it): a
//     new leader has applied its predecessor's records, and its clock has
//     merged their stamps, before it stamps anything — however little its
//     own physical clock runs behind.
//   - I6 caps: in "stats" node events, every gauge NAME with a NAME_cap in
//     the same detail stays within its cap.
//   - I7 crash safety: a lost message acknowledged before a "kill" node
//     event, or a duplicate whose sends straddle a kill (dedup did not catch
//     the retry after restart).
//   - I8 split brain: two nodes committing for one (partition, epoch), in
//     the stream or in acknowledgements; a record whose epoch is lower than
//     an earlier offset's; an acknowledgement from a deposed leader
//     whose write a newer epoch overwrote (acknowledged, missing from the
//     output even if a gap covers it, while the partition's output goes on in
//     a higher epoch). A record's node is the leader that committed it, so
//     in the stream the nodes of one (partition, epoch) are those of the
//     first record read at each offset and of every record that differs
//     from it (two leaders writing different records at one offset); a copy
//     of that first record read again with another node's name is not
//     counted. The per-key digests after the heal agree exactly when every
//     reader sees one record per offset (I4), so that disagreement is
//     reported under I4.
//   - I9: per-key register linearizability of ok reads and writes, checked
//     with porcupine, partitioned by key. A timed-out write may have taken
//     effect at any later time (its return time is infinite); timed-out or
//     failed reads and failed writes carry no information and are dropped.
//
// Messages that go through a message broker (sends with an upstream): an
// "ok" is the broker's acknowledgement, and the aggregator's consumers owe
// every such message to the output — a gap over it does not excuse it (the
// consumers skipped it). One the aggregator dead-lettered (a "dlq" line,
// read from its dead-letter queue) is accounted for: counted in
// dead_lettered, never lost; replayed, it is in the output once like any
// other. A lost message whose upstream position the consumer group had
// already committed past ("commit" lines) names that as its likely cause:
// the consumer committed its offset before the aggregator stored it.
//
// A lost message (I1) or a disagreement between readers (I4) in a
// partition with a split brain names it as the likely cause in its detail:
// the split brain of the acknowledgement's (or the records') epoch, or —
// when the acknowledgement carries no epoch — every split brain of the
// partition, narrowed to those of the acknowledging node. A send without a
// partition is placed in the partition whose output carries its key.
package consistency

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/engine/history"
)

// Config tunes the checker. The zero value uses the defaults.
type Config struct {
	// MaxOffset is the clock uncertainty tolerated between nodes (I5).
	// A "config" node event with detail "max_offset=DURATION" overrides it.
	MaxOffset time.Duration
	// LinearizabilityTimeout bounds the porcupine search per key (I9); when
	// it runs out the result is "unknown".
	LinearizabilityTimeout time.Duration
	// MaxExamples bounds the examples listed per violation.
	MaxExamples int
}

func (c Config) withDefaults() Config {
	if c.MaxOffset <= 0 {
		c.MaxOffset = 500 * time.Millisecond
	}
	if c.LinearizabilityTimeout <= 0 {
		c.LinearizabilityTimeout = 10 * time.Second
	}
	if c.MaxExamples <= 0 {
		c.MaxExamples = 5
	}
	return c
}

// Linearizability outcomes as printed in the report.
const (
	LinOK      = "ok"
	LinIllegal = "illegal"
	LinUnknown = "unknown"
)

// Counts are the report's counters (docs/check-output.md).
type Counts struct {
	SentOK          int    `json:"sent_ok"`
	Received        int    `json:"received"`
	Lost            int    `json:"lost"`
	Duplicated      int    `json:"duplicated"`
	Unexpected      int    `json:"unexpected"`
	OrderViolations int    `json:"order_violations"`
	HLCViolations   int    `json:"hlc_violations"`
	SplitBrain      int    `json:"split_brain"`
	Linearizability string `json:"linearizability"`
	// DeadLettered counts acknowledged messages missing from the output
	// that the aggregator dead-lettered (accounted for, not lost).
	DeadLettered int `json:"dead_lettered,omitempty"`
}

// Violation is one violated invariant with a few examples.
type Violation struct {
	Invariant string   `json:"invariant"`
	Detail    string   `json:"detail"`
	Examples  []string `json:"examples"`
}

// Report is the checker's output, printed by `chaosgate check -o json`.
type Report struct {
	OK         bool        `json:"ok"`
	Counts     Counts      `json:"counts"`
	Violations []Violation `json:"violations"`
}

type psk struct { // (partition, source, seq) or (partition, source) with seq 0
	partition int
	source    string
	seq       uint64
}

type msgInfo struct {
	source      string
	seq         uint64
	key         string
	partition   int
	hasPart     bool
	ok          bool
	okLine      int
	okEpoch     uint64
	okHLC       history.HLC
	okNode      string
	unknown     bool // a send timed out
	definiteNo  bool // a send was rejected or failed
	sendLines   []int
	firstSendAt int
	upstream    string
	upPart      int
	upOff       int64
	hasUpOff    bool
}

// upKey is one upstream partition.
type upKey struct {
	upstream  string
	partition int
}

// commitRef is a consumer group's committed position.
type commitRef struct {
	offset int64
	line   int
	node   string
}

type record struct {
	line      int
	partition int
	offset    int64
	gap       bool
	key       string
	source    string
	seq       uint64
	fromSeq   uint64
	toSeq     uint64
	msgID     string
	epoch     uint64
	hlc       history.HLC
	node      string
}

func (r *record) payload() string {
	if r.gap {
		return fmt.Sprintf("gap %s %d..%d", r.source, r.fromSeq, r.toSeq)
	}
	return "msg " + r.msgID
}

type collector struct {
	cfg  Config
	viol map[string]*Violation
	ord  []string
}

func (c *collector) add(inv, detail, example string) {
	k := inv + "\x00" + detail
	v, ok := c.viol[k]
	if !ok {
		v = &Violation{Invariant: inv, Detail: detail, Examples: []string{}}
		c.viol[k] = v
		c.ord = append(c.ord, k)
	}
	if len(v.Examples) < c.cfg.MaxExamples {
		v.Examples = append(v.Examples, example)
	}
}

// Checker accumulates a history event by event (so a large file need not
// be held in memory) and reports on it. Use NewChecker, Add each event in
// the order observed, then Report once.
type Checker struct {
	cfg       Config
	col       *collector
	n         int
	msgs      map[string]*msgInfo
	msgOrder  []string
	byPart    map[int][]*record
	kills     []int // lines of kill events
	ackEpochs []ackRef
	states    []history.Line
	dlq       map[string]int      // msg_id → line of its dlq event
	commits   map[upKey]commitRef // the highest committed position seen
}

// NewChecker returns an empty checker.
func NewChecker(cfg Config) *Checker {
	cfg = cfg.withDefaults()
	return &Checker{cfg: cfg, col: &collector{cfg: cfg, viol: map[string]*Violation{}}, msgs: map[string]*msgInfo{}, byPart: map[int][]*record{},
		dlq: map[string]int{}, commits: map[upKey]commitRef{}}
}

// Check runs every invariant over evs (in the order observed) and returns
// the report. It reads no clock and its result depends only on its input,
// except that I9 may report "unknown" when its search budget runs out.
func Check(evs []history.Line, cfg Config) Report {
	c := NewChecker(cfg)
	for i := range evs {
		c.Add(&evs[i])
	}
	return c.Report()
}

func (c *Checker) configure(detail string) {
	for _, tok := range strings.Fields(detail) {
		if v, ok := strings.CutPrefix(tok, "max_offset="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				c.cfg.MaxOffset = d
			}
		}
	}
}

// Add takes the next event of the history. Its Line (or, when zero, its
// position) names it in examples.
func (c *Checker) Add(ev *history.Line) {
	c.n++
	line := ev.Line
	if line == 0 {
		line = c.n
	}
	switch ev.Op {
	case history.OpSend:
		m := c.msgs[ev.MsgID]
		if m == nil {
			m = &msgInfo{source: ev.Source, seq: ev.Seq, key: ev.Key, firstSendAt: line}
			c.msgs[ev.MsgID] = m
			c.msgOrder = append(c.msgOrder, ev.MsgID)
		} else if m.source != ev.Source || m.seq != ev.Seq {
			c.col.add("I2", "msg_id reused for a different (source, seq)", fmt.Sprintf("line %d: msg_id %s sent as %s/%d and %s/%d", line, ev.MsgID, m.source, m.seq, ev.Source, ev.Seq))
		}
		if ev.HasPartition && !m.hasPart {
			m.partition, m.hasPart = ev.Partition, true
		}
		m.sendLines = append(m.sendLines, line)
		if ev.Upstream != "" && ev.Result == history.ResultOK && !m.hasUpOff {
			m.upstream, m.upPart, m.upOff, m.hasUpOff = ev.Upstream, ev.UpstreamPartition, ev.UpstreamOffset, ev.HasUpstreamOffset
		}
		switch ev.Result {
		case history.ResultOK:
			if !m.ok {
				m.ok, m.okLine, m.okEpoch, m.okNode, m.okHLC = true, line, ev.Epoch, ev.Node, ev.HLC
			}
			if ev.HasPartition && ev.Epoch != 0 && ev.Node != "" {
				c.ackEpochs = append(c.ackEpochs, ackRef{partition: ev.Partition, epoch: ev.Epoch, node: ev.Node, line: line, msgID: ev.MsgID})
			}
		case history.ResultTimeout:
			m.unknown = true
		case history.ResultRejected, history.ResultFail:
			m.definiteNo = true
		}
	case history.OpRecv, history.OpGap:
		r := &record{line: line, partition: ev.Partition, offset: ev.Offset, gap: ev.Op == history.OpGap, key: ev.Key,
			source: ev.Source, seq: ev.Seq, fromSeq: ev.FromSeq, toSeq: ev.ToSeq, msgID: ev.MsgID, epoch: ev.Epoch, hlc: ev.HLC, node: ev.Node}
		c.byPart[ev.Partition] = append(c.byPart[ev.Partition], r)
	case history.OpRead, history.OpWrite:
		c.states = append(c.states, *ev)
	case history.OpDLQ:
		if _, ok := c.dlq[ev.MsgID]; !ok {
			c.dlq[ev.MsgID] = line
		}
	case history.OpCommit:
		k := upKey{ev.Upstream, ev.UpstreamPartition}
		if cur, ok := c.commits[k]; !ok || ev.UpstreamOffset > cur.offset {
			c.commits[k] = commitRef{offset: ev.UpstreamOffset, line: line, node: ev.Node}
		}
	case history.OpNode:
		switch ev.NodeEvent {
		case history.NodeKill:
			c.kills = append(c.kills, line)
		case history.NodeConfig:
			c.configure(ev.Detail)
		case history.NodeStats:
			checkCaps(c.col, line, ev)
		}
	}
}

// Report runs every invariant over the events added so far. It runs in
// passes over one reportPass: the readers' records merged per (partition,
// offset), each partition's stream, the acknowledged messages, the
// acknowledgement epochs and linearizability, then the report.
func (c *Checker) Report() Report {
	pass := &reportPass{c: c, all: map[int][]*record{}, seenID: make(map[string]*record, len(c.msgs)),
		seenSeq: make(map[psk]*record, len(c.msgs)), gaps: map[psk][]gapRange{}, sbs: newSplitBrains(), falseAck: map[string]bool{}}
	for _, m := range c.msgs {
		if m.ok {
			pass.counts.SentOK++
		}
	}
	pass.mergeReaders()
	pass.checkStreams()
	pass.checkAcknowledged()
	pass.checkEpochsAndLinearizability()
	return pass.report()
}

// reportPass is one Report computation: what each pass found and what the
// later passes read (the records seen by id and by seq, the gaps, the split
// brains, the false acknowledgements).
type reportPass struct {
	c        *Checker
	counts   Counts
	parts    []int
	all      map[int][]*record // every record read, for the keys of partitions
	seenID   map[string]*record
	seenSeq  map[psk]*record
	gaps     map[psk][]gapRange
	sbs      *splitBrains
	falseAck map[string]bool
}

// mergeReaders keeps one record per (partition, offset) across readers,
// sorted by offset; readers that disagree on one are I4 violations, and the
// nodes that committed each (partition, epoch) are collected (I8).
func (pass *reportPass) mergeReaders() {
	cfg, col, counts := pass.c.cfg, pass.c.col, &pass.counts
	byPart, ackEpochs := pass.c.byPart, pass.c.ackEpochs
	// One record per (partition, offset) across readers; then sort. The
	// nodes that committed each (partition, epoch) are collected on the way
	// (I8): a second node in one epoch is a second leader.
	for p := range byPart {
		pass.parts = append(pass.parts, p)
	}
	sort.Ints(pass.parts)
	parts, gaps, sbs := pass.parts, pass.gaps, pass.sbs
	type disagreement struct{ first, other *record }
	var disagree []disagreement
	all := pass.all // every record read, for the keys of partitions
	for _, p := range parts {
		recs := byPart[p]
		all[p] = recs
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].offset < recs[j].offset })
		writers := newStreamWriters(cfg.MaxExamples)
		uniq := recs[:0:0]
		for _, r := range recs {
			if n := len(uniq); n > 0 && uniq[n-1].offset == r.offset {
				if prev := uniq[n-1]; prev.payload() != r.payload() {
					counts.OrderViolations++
					disagree = append(disagree, disagreement{prev, r})
					writers.add(r, prev)
				}
				continue
			}
			uniq = append(uniq, r)
			writers.add(r, nil)
		}
		byPart[p] = uniq
		counts.SplitBrain += writers.report(col, sbs, p)
		for _, r := range uniq {
			if r.gap {
				k := psk{p, r.source, 0}
				gaps[k] = append(gaps[k], gapRange{from: r.fromSeq, to: r.toSeq, epoch: r.epoch, hlc: r.hlc, offset: r.offset})
			}
		}
	}
	counts.SplitBrain += checkAckNodes(col, sbs, ackEpochs)
	for _, d := range disagree {
		var epochs []uint64
		for _, e := range []uint64{d.first.epoch, d.other.epoch} {
			if e != 0 && (len(epochs) == 0 || epochs[0] != e) {
				epochs = append(epochs, e)
			}
		}
		col.add("I4", withCause("readers disagree on the record at one (partition, offset)", sbs.cause(d.first.partition, epochs, "")),
			fmt.Sprintf("partition %d offset %d: %s (line %d) vs %s (line %d)", d.first.partition, d.other.offset, d.first.payload(), d.first.line, d.other.payload(), d.other.line))
	}
}

// checkStreams walks each partition's stream: stale epochs (I8), HLC order
// (I5), duplicates (I2), records never sent (I3) and per-key order (I4).
func (pass *reportPass) checkStreams() {
	cfg, col, counts := pass.c.cfg, pass.c.col, &pass.counts
	msgs, byPart, kills := pass.c.msgs, pass.c.byPart, pass.c.kills
	parts, seenID, seenSeq := pass.parts, pass.seenID, pass.seenSeq
	for _, p := range parts {
		uniq := byPart[p]
		lastSeq := map[[2]string]uint64{}
		lastHLCNode := map[string]*record{}
		var lastHLC *record
		var maxEpoch uint64
		var maxEpochRec *record
		for _, r := range uniq {
			// I8 in the stream: a stale epoch after a newer one.
			if r.epoch != 0 {
				if r.epoch < maxEpoch {
					counts.SplitBrain++
					col.add("I8", "a record carries an epoch older than an earlier offset's (stale leader accepted a write)", fmt.Sprintf("partition %d offset %d epoch %d (node %s) after offset %d epoch %d (node %s)", p, r.offset, r.epoch, r.node, maxEpochRec.offset, maxEpoch, maxEpochRec.node))
				} else if r.epoch > maxEpoch {
					maxEpoch, maxEpochRec = r.epoch, r
				}
			}
			// I5.
			if !r.hlc.IsZero() {
				var prevSame *record
				if r.node != "" {
					prevSame = lastHLCNode[r.node]
				}
				switch {
				case prevSame != nil && r.hlc.Less(prevSame.hlc):
					counts.HLCViolations++
					col.add("I5", "HLC went backwards on one node along a partition's offsets", fmt.Sprintf("partition %d node %s: offset %d hlc %s after offset %d hlc %s", p, r.node, r.offset, r.hlc, prevSame.offset, prevSame.hlc))
				case lastHLC != nil && lastHLC.node != r.node && tooFarBehind(r.hlc, lastHLC.hlc, cfg.MaxOffset):
					counts.HLCViolations++
					col.add("I5", fmt.Sprintf("HLC fell more than max offset %s behind an earlier record of another node", cfg.MaxOffset), fmt.Sprintf("partition %d: offset %d hlc %s (node %s) after offset %d hlc %s (node %s)", p, r.offset, r.hlc, r.node, lastHLC.offset, lastHLC.hlc, lastHLC.node))
				case lastHLC != nil && lastHLC.node != r.node && r.epoch > lastHLC.epoch && r.hlc.Less(lastHLC.hlc):
					counts.HLCViolations++
					col.add("I5", "HLC went backwards at a leader change: the new leader stamped below its predecessor's records (it did not merge the stamps it applied)",
						fmt.Sprintf("partition %d: offset %d hlc %s (node %s, epoch %d) after offset %d hlc %s (node %s, epoch %d), %s behind", p, r.offset, r.hlc, r.node, r.epoch, lastHLC.offset, lastHLC.hlc, lastHLC.node, lastHLC.epoch, hlcBehind(r.hlc, lastHLC.hlc)))
				}
				if r.node != "" && (prevSame == nil || !r.hlc.Less(prevSame.hlc)) {
					lastHLCNode[r.node] = r
				}
				if lastHLC == nil || lastHLC.hlc.Less(r.hlc) {
					lastHLC = r
				}
			}
			if r.gap {
				continue
			}
			counts.Received++
			// I2.
			k := psk{p, r.source, r.seq}
			if first, dup := seenSeq[k]; dup {
				counts.Duplicated++
				col.add("I2", "duplicate (source, partition, seq) in the output", fmt.Sprintf("partition %d source %s seq %d at offsets %d and %d", p, r.source, r.seq, first.offset, r.offset))
				checkI7Dup(col, msgs[r.msgID], kills, r)
				continue
			}
			if first, dup := seenID[r.msgID]; dup {
				counts.Duplicated++
				col.add("I2", "duplicate msg_id in the output", fmt.Sprintf("msg_id %s at partition %d offset %d and partition %d offset %d", r.msgID, first.partition, first.offset, p, r.offset))
				checkI7Dup(col, msgs[r.msgID], kills, r)
				continue
			}
			seenSeq[k] = r
			seenID[r.msgID] = r
			// I3.
			m := msgs[r.msgID]
			switch {
			case m == nil:
				counts.Unexpected++
				col.add("I3", "record never sent", fmt.Sprintf("partition %d offset %d: msg_id %s (source %s seq %d)", p, r.offset, r.msgID, r.source, r.seq))
			case m.source != r.source || m.seq != r.seq:
				counts.Unexpected++
				col.add("I3", "record disagrees with its send on source or seq", fmt.Sprintf("partition %d offset %d: msg_id %s is %s/%d, sent as %s/%d", p, r.offset, r.msgID, r.source, r.seq, m.source, m.seq))
			case !m.ok && !m.unknown && m.definiteNo:
				counts.Unexpected++
				col.add("I3", "record whose every send was rejected or failed (must not be stored)", fmt.Sprintf("partition %d offset %d: msg_id %s first sent at line %d", p, r.offset, r.msgID, m.firstSendAt))
			}
			// I4 order per (key, source).
			ks := [2]string{r.key, r.source}
			if last, ok := lastSeq[ks]; ok && r.seq <= last {
				counts.OrderViolations++
				col.add("I4", "seq not strictly increasing along offsets for one key and source", fmt.Sprintf("partition %d key %s source %s: seq %d at offset %d after seq %d", p, r.key, r.source, r.seq, r.offset, last))
			}
			if last := lastSeq[ks]; r.seq > last {
				lastSeq[ks] = r.seq
			}
		}
	}
}

// checkAcknowledged checks every acknowledged message in send order: in the
// output, dead-lettered or excused by a gap declared before the
// acknowledgement (I1), and surviving a kill -9 (I7).
func (pass *reportPass) checkAcknowledged() {
	c, col, counts := pass.c, pass.c.col, &pass.counts
	msgs, msgOrder, kills := pass.c.msgs, pass.c.msgOrder, pass.c.kills
	parts, all, seenID, seenSeq, gaps, sbs := pass.parts, pass.all, pass.seenID, pass.seenSeq, pass.gaps, pass.sbs
	// I1 and I7 over acknowledged messages, in send order. A lost message
	// in a partition with a split brain names it as the likely cause.
	var keyParts map[string][]int
	lostCause := func(m *msgInfo) []string {
		if sbs.empty() {
			return nil
		}
		ps := []int{m.partition}
		if !m.hasPart {
			// A send without a partition: the partition whose output
			// carries its key (any reader's record counts).
			if keyParts == nil {
				keyParts = map[string][]int{}
				for _, p := range parts {
					for _, r := range all[p] {
						if ks := keyParts[r.key]; !r.gap && r.key != "" && (len(ks) == 0 || ks[len(ks)-1] != p) {
							keyParts[r.key] = append(ks, p)
						}
					}
				}
			}
			ps = keyParts[m.key]
		}
		var epochs []uint64
		if m.okEpoch != 0 {
			epochs = []uint64{m.okEpoch}
		}
		var out []string
		for _, p := range ps {
			out = append(out, sbs.cause(p, epochs, m.okNode)...)
		}
		return out
	}
	// committedPast: the group's committed position in a lost message's
	// upstream partition, when it is past the message.
	committedPast := func(m *msgInfo) (commitRef, bool) {
		if !m.hasUpOff {
			return commitRef{}, false
		}
		cr, ok := c.commits[upKey{m.upstream, m.upPart}]
		return cr, ok && cr.offset > m.upOff
	}
	falseAck := pass.falseAck
	for _, id := range msgOrder {
		m := msgs[id]
		if !m.ok || seenID[id] != nil {
			continue
		}
		if _, ok := c.dlq[id]; ok {
			counts.DeadLettered++ // accounted for in the dead-letter queue
			continue
		}
		where := ""
		if m.hasPart {
			where = fmt.Sprintf(" partition %d", m.partition)
		}
		by := " by " + m.okNode
		if m.okNode == "" {
			by = " by an unnamed node"
		}
		if m.okEpoch != 0 {
			by += fmt.Sprintf(" epoch %d", m.okEpoch)
		} else {
			by += " (no epoch)"
		}
		ex := fmt.Sprintf("msg_id %s source %s seq %d key %s%s acked at line %d%s", id, m.source, m.seq, m.key, where, m.okLine, by)
		if m.hasUpOff {
			ex = fmt.Sprintf("msg_id %s source %s seq %d key %s%s acked by %s partition %d offset %d at line %d", id, m.source, m.seq, m.key, where, m.upstream, m.upPart, m.upOff, m.okLine)
		}
		if m.upstream != "" {
			// A broker's acknowledgement: the consumers owe the message to
			// the output or the dead-letter queue; a gap over it means they
			// skipped it.
			if m.hasPart && seenSeq[psk{m.partition, m.source, m.seq}] != nil {
				continue
			}
			counts.Lost++
			detail := "acknowledged by the broker, missing from the output and not dead-lettered"
			if cr, past := committedPast(m); past {
				col.add("I1", detail+"; likely cause: the consumer group committed its offset past the message before the aggregator stored it",
					fmt.Sprintf("%s; committed %d at line %d", ex, cr.offset, cr.line))
			} else {
				if g := covering(gaps[psk{m.partition, m.source, 0}], m.seq); m.hasPart && g != nil {
					detail += " (a gap declared by the aggregator does not excuse it: the consumers skipped it)"
				}
				col.add("I1", detail, ex)
			}
			if len(kills) > 0 && kills[len(kills)-1] > m.okLine {
				col.add("I7", "message acknowledged before a kill -9 did not survive", ex)
			}
			continue
		}
		if m.hasPart {
			if seenSeq[psk{m.partition, m.source, m.seq}] != nil {
				continue
			}
			if g := covering(gaps[psk{m.partition, m.source, 0}], m.seq); g != nil {
				if !ackedAfter(m, g) {
					continue // the gap declares what the acknowledgement could not keep
				}
				// The seq was declared a gap before the acknowledgement was
				// given: the acknowledgement is false, the message is lost.
				counts.Lost++
				falseAck[id] = true
				col.add("I1", withCause("acknowledged after its seq had been declared a gap (a false acknowledgement: the message is not in the output)", lostCause(m)),
					fmt.Sprintf("%s; gap %d..%d at offset %d epoch %d hlc %s", ex, g.from, g.to, g.offset, g.epoch, g.hlc))
				continue
			}
		} else if coveredAny(gaps, m.source, m.seq) {
			continue
		}
		counts.Lost++
		col.add("I1", withCause("acknowledged message missing from the output and not covered by a gap", lostCause(m)), ex)
		if len(kills) > 0 && kills[len(kills)-1] > m.okLine {
			col.add("I7", "message acknowledged before a kill -9 did not survive", ex)
		}
	}
}

// checkEpochsAndLinearizability checks the acknowledgement epochs against
// the streams (I8) and the state operations' history (I9).
func (pass *reportPass) checkEpochsAndLinearizability() {
	cfg, col, counts := pass.c.cfg, pass.c.col, &pass.counts
	byPart, ackEpochs, states := pass.c.byPart, pass.c.ackEpochs, pass.c.states
	parts, seenID, falseAck := pass.parts, pass.seenID, pass.falseAck
	maxStreamEpoch := map[int]uint64{}
	for _, p := range parts {
		for _, r := range byPart[p] {
			maxStreamEpoch[p] = max(maxStreamEpoch[p], r.epoch)
		}
	}
	counts.SplitBrain += checkAckEpochs(col, ackEpochs, func(id string) bool { return seenID[id] == nil && !falseAck[id] }, maxStreamEpoch)
	counts.Linearizability = checkLinearizability(col, states, cfg)
}

// report orders the violations by invariant and detail.
func (pass *reportPass) report() Report {
	col := pass.c.col
	rep := Report{Counts: pass.counts, Violations: make([]Violation, 0, len(col.ord))}
	sort.SliceStable(col.ord, func(i, j int) bool {
		a, b := col.viol[col.ord[i]], col.viol[col.ord[j]]
		if a.Invariant != b.Invariant {
			return invRank(a.Invariant) < invRank(b.Invariant)
		}
		return a.Detail < b.Detail
	})
	for _, k := range col.ord {
		rep.Violations = append(rep.Violations, *col.viol[k])
	}
	rep.OK = len(rep.Violations) == 0
	return rep
}

func invRank(s string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(s, "I"))
	return n
}

// hlcBehind says how far h is behind prev (wall time, or logical ticks
// within one wall value).
func hlcBehind(h, prev history.HLC) string {
	if d := time.Duration(prev.Wall - h.Wall); d > 0 {
		return d.String()
	}
	return fmt.Sprintf("%d logical ticks", int64(prev.Logical)-int64(h.Logical))
}

func tooFarBehind(h, prev history.HLC, maxOffset time.Duration) bool {
	return prev.Wall-h.Wall > int64(maxOffset)
}

type gapRange struct {
	from, to uint64
	epoch    uint64
	hlc      history.HLC
	offset   int64
}

func covering(rs []gapRange, seq uint64) *gapRange {
	for i := range rs {
		if seq >= rs[i].from && seq <= rs[i].to {
			return &rs[i]
		}
	}
	return nil
}

// ackedAfter reports whether m's first acknowledgement was given after gap
// g was declared: in a later epoch, or in the same epoch with a later HLC.
func ackedAfter(m *msgInfo, g *gapRange) bool {
	if m.okEpoch == 0 || g.epoch == 0 {
		return false
	}
	if m.okEpoch != g.epoch {
		return m.okEpoch > g.epoch
	}
	return !m.okHLC.IsZero() && !g.hlc.IsZero() && g.hlc.Less(m.okHLC)
}

func coveredAny(gaps map[psk][]gapRange, source string, seq uint64) bool {
	for k, rs := range gaps {
		if k.source == source && covering(rs, seq) != nil {
			return true
		}
	}
	return false
}

func checkI7Dup(col *collector, m *msgInfo, kills []int, r *record) {
	if m == nil || len(m.sendLines) < 2 {
		return
	}
	first, last := m.sendLines[0], m.sendLines[len(m.sendLines)-1]
	for _, k := range kills {
		if k > first && k < last {
			col.add("I7", "dedup did not catch a retry sent after a kill -9", fmt.Sprintf("msg_id %s (source %s seq %d) sent at lines %d and %d around the kill at line %d, stored again at partition %d offset %d", r.msgID, m.source, m.seq, first, last, k, r.partition, r.offset))
			return
		}
	}
}

type ackRef struct {
	partition int
	epoch     uint64
	node      string
	line      int
	msgID     string
}

// checkAckNodes finds split brain in acknowledgements: two nodes acking
// writes for one (partition, epoch). Acknowledgements without an epoch or
// a node say nothing here. It records each as a split brain and returns
// how many it found.
func checkAckNodes(col *collector, sbs *splitBrains, acks []ackRef) int {
	n := 0
	nodes := map[pe][]string{}
	var order []pe
	for _, a := range acks {
		k := pe{a.partition, a.epoch}
		ns, ok := nodes[k]
		if !ok {
			order = append(order, k)
		}
		if !contains(ns, a.node) {
			if len(ns) == 1 {
				n++
				col.add("I8", "split brain: two nodes acknowledged writes for one partition in the same epoch", fmt.Sprintf("partition %d epoch %d: %s and %s (line %d)", a.partition, a.epoch, ns[0], a.node, a.line))
			}
			nodes[k] = append(ns, a.node)
		}
	}
	for _, k := range order {
		if ns := nodes[k]; len(ns) > 1 {
			sbs.add(k.p, k.e, ns)
		}
	}
	return n
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// checkAckEpochs finds writes acknowledged in an epoch that a newer epoch
// then overwrote — acknowledged, missing from the output (lost, or
// declared a gap afterwards), while the partition's output goes on under a
// higher epoch. A committed write survives every later leader, so only a
// deposed leader that accepted writes it could not commit produces that.
func checkAckEpochs(col *collector, acks []ackRef, missing func(msgID string) bool, maxStreamEpoch map[int]uint64) int {
	n := 0
	superseded := map[pe]bool{}
	for _, a := range acks {
		k := pe{a.partition, a.epoch}
		if top := maxStreamEpoch[a.partition]; top > a.epoch && missing(a.msgID) {
			if !superseded[k] {
				superseded[k] = true
				n++
			}
			col.add("I8", "a write acknowledged in a stale epoch was overwritten by a newer epoch (missing from the output)", fmt.Sprintf("partition %d: msg_id %s acked by %s in epoch %d at line %d; the output continues in epoch %d", a.partition, a.msgID, a.node, a.epoch, a.line, top))
		}
	}
	return n
}

func checkCaps(col *collector, line int, ev *history.Line) {
	stats, err := history.SortedNodeStats(ev.Detail)
	if err != nil {
		col.add("I6", "stats event is not a list of name=number gauges", fmt.Sprintf("line %d node %s: %v", line, ev.Node, err))
		return
	}
	val := map[string]float64{}
	for _, s := range stats {
		val[s.Name] = s.Value
	}
	for _, s := range stats {
		name, ok := strings.CutSuffix(s.Name, "_cap")
		if !ok {
			continue
		}
		if v, ok := val[name]; ok && v > s.Value {
			col.add("I6", fmt.Sprintf("%s above its cap under load", name), fmt.Sprintf("line %d node %s: %s=%g > %s=%g", line, ev.Node, name, v, s.Name, s.Value))
		}
	}
}

// CheckReader streams a history/v1 document through a Checker. A malformed
// line stops it with the reader's *history.ParseError.
func CheckReader(r io.Reader, cfg Config) (Report, error) {
	c := NewChecker(cfg)
	hr := history.NewReader(r)
	for {
		ev, err := hr.Next()
		if err == io.EOF {
			return c.Report(), nil
		}
		if err != nil {
			return Report{}, err
		}
		c.Add(&ev)
	}
}

// CheckFile checks the history file at path; errors name the file.
func CheckFile(path string, cfg Config) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	rep, err := CheckReader(f, cfg)
	if err != nil {
		return Report{}, fmt.Errorf("%s:%w", path, err)
	}
	return rep, nil
}
