package consistency

import (
	"fmt"
	"sort"
	"strings"
)

// pe is one (partition, epoch).
type pe struct {
	p int
	e uint64
}

// offsetList keeps the first few offsets of a list and counts the rest.
type offsetList struct {
	shown []int64
	more  int
	last  int64
	any   bool
}

func (l *offsetList) add(off int64, limit int) {
	if l.any && l.last == off {
		return
	}
	l.any, l.last = true, off
	if len(l.shown) < limit {
		l.shown = append(l.shown, off)
	} else {
		l.more++
	}
}

func (l *offsetList) String() string {
	var b strings.Builder
	if len(l.shown) == 1 && l.more == 0 {
		b.WriteString("offset ")
	} else {
		b.WriteString("offsets ")
	}
	for i, o := range l.shown {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, o)
	}
	if l.more > 0 {
		fmt.Fprintf(&b, " and %d more", l.more)
	}
	return b.String()
}

// epochWriters are the nodes that committed records of one (partition,
// epoch) in the stream, with example offsets.
type epochWriters struct {
	nodes    map[string]*offsetList
	diverged offsetList // offsets where two nodes delivered different records in this epoch
}

// streamWriters collects, for one partition, which nodes committed records
// in which epoch. A record counts when it is the first record read at its
// offset, or when it differs from that first record; a copy of the first
// record (the same message, or the same gap, at the same offset) read
// again with another node does not count.
type streamWriters struct {
	limit  int
	epochs map[uint64]*epochWriters
}

func newStreamWriters(limit int) *streamWriters {
	return &streamWriters{limit: limit, epochs: map[uint64]*epochWriters{}}
}

// add takes record r; first is the first record at r's offset when r
// differs from it, nil when r is that first record.
func (s *streamWriters) add(r, first *record) {
	if r.node == "" || r.epoch == 0 {
		return
	}
	w := s.epochs[r.epoch]
	if w == nil {
		w = &epochWriters{nodes: map[string]*offsetList{}}
		s.epochs[r.epoch] = w
	}
	l := w.nodes[r.node]
	if l == nil {
		l = &offsetList{}
		w.nodes[r.node] = l
	}
	l.add(r.offset, s.limit)
	if first != nil && first.epoch == r.epoch && first.node != "" && first.node != r.node {
		w.diverged.add(r.offset, s.limit)
	}
}

// splitBrain is one (partition, epoch) in which more than one node
// committed or acknowledged writes.
type splitBrain struct {
	nodes []string // sorted
}

func (s *splitBrain) merge(nodes []string) {
	s.nodes = append(s.nodes, nodes...)
	sort.Strings(s.nodes)
	out := s.nodes[:0]
	for i, n := range s.nodes {
		if i == 0 || n != s.nodes[i-1] {
			out = append(out, n)
		}
	}
	s.nodes = out
}

// splitBrains indexes every split brain found, so that the symptoms it
// causes (lost messages, readers that disagree) can name it.
type splitBrains struct {
	by     map[pe]*splitBrain
	epochs map[int][]uint64 // per partition, sorted
}

func newSplitBrains() *splitBrains {
	return &splitBrains{by: map[pe]*splitBrain{}, epochs: map[int][]uint64{}}
}

func (s *splitBrains) add(p int, e uint64, nodes []string) {
	k := pe{p, e}
	sb := s.by[k]
	if sb == nil {
		sb = &splitBrain{}
		s.by[k] = sb
		es := append(s.epochs[p], e)
		sort.Slice(es, func(i, j int) bool { return es[i] < es[j] })
		s.epochs[p] = es
	}
	sb.merge(nodes)
}

func (s *splitBrains) empty() bool { return len(s.by) == 0 }

// report finds, for one partition, the epochs in which several nodes
// committed records; it records each as a split brain, reports it under I8
// and returns how many it found.
func (w *streamWriters) report(col *collector, sbs *splitBrains, p int) int {
	epochs := make([]uint64, 0, len(w.epochs))
	for e, ew := range w.epochs {
		if len(ew.nodes) > 1 {
			epochs = append(epochs, e)
		}
	}
	sort.Slice(epochs, func(i, j int) bool { return epochs[i] < epochs[j] })
	for _, e := range epochs {
		ew := w.epochs[e]
		nodes := make([]string, 0, len(ew.nodes))
		for n := range ew.nodes {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		parts := make([]string, 0, len(nodes)+1)
		for _, n := range nodes {
			parts = append(parts, n+" at "+ew.nodes[n].String())
		}
		if ew.diverged.any {
			parts = append(parts, "different records at "+ew.diverged.String())
		}
		col.add("I8", "split brain: two nodes committed records for one partition in the same epoch",
			fmt.Sprintf("partition %d epoch %d: nodes %s (%s)", p, e, strings.Join(nodes, ", "), strings.Join(parts, "; ")))
		sbs.add(p, e, nodes)
	}
	return len(epochs)
}

// cause names the split brains that likely explain a symptom in partition
// p: those of the given epochs when any is known, otherwise every split
// brain of the partition — narrowed to those that involve node when node
// is known and some do. Each is written "partition P epoch E (nodes a, b)";
// none when no split brain applies.
func (s *splitBrains) cause(p int, epochs []uint64, node string) []string {
	var cand []uint64
	if len(epochs) > 0 {
		for _, e := range s.epochs[p] {
			for _, x := range epochs {
				if x == e {
					cand = append(cand, e)
					break
				}
			}
		}
	} else {
		cand = s.epochs[p]
		if node != "" {
			var withNode []uint64
			for _, e := range cand {
				for _, n := range s.by[pe{p, e}].nodes {
					if n == node {
						withNode = append(withNode, e)
						break
					}
				}
			}
			if len(withNode) > 0 {
				cand = withNode
			}
		}
	}
	out := make([]string, 0, len(cand))
	for _, e := range cand {
		out = append(out, fmt.Sprintf("partition %d epoch %d (nodes %s)", p, e, strings.Join(s.by[pe{p, e}].nodes, ", ")))
	}
	return out
}

// withCause appends the likely cause to a symptom's detail.
func withCause(detail string, causes []string) string {
	if len(causes) == 0 {
		return detail
	}
	return detail + "; likely cause: split brain in " + strings.Join(causes, "; ")
}
