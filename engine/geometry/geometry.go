// Package geometry lays out the network faults that cut a cluster: which
// node→node edges a partition shape black-holes, and which leader a split
// brain isolates. Both fault backends (local proxies, Kubernetes
// NetworkChaos) take their cuts from here, so one shape means the same cut
// everywhere and the blast-radius budget (scenarios.ShapeImpact) bounds what
// the cut really does.
//
// A shape is laid out on a ring: the caller's node order, whose first node is
// the one isolate-one isolates and where halves and bridge begin.
//
//	isolate-one      ring[0] alone | the rest
//	halves           the first ⌊n/2⌋ | the rest
//	bridge           the first ⌊(n−1)/2⌋ | the bridge node ring[⌊(n−1)/2⌋] | the rest;
//	                 the bridge reaches both sides, the sides not each other
//	majorities-ring  each node keeps its ⌊quorum/2⌋ nearest ring neighbours on each
//	                 side and loses the rest: every node still sees a majority
//	                 (itself included), no two nodes the same one
//
// Every cut is symmetric: a cannot reach b exactly when b cannot reach a.
package geometry

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/chaosgate/chaosgate/scenarios"
)

// Edge is one directed node→node link: From cannot send to To while cut.
type Edge struct {
	From, To string
}

// Cut is what a partition shape does to one arm's nodes.
type Cut struct {
	Shape string
	// Ring is the node order the shape was laid out on.
	Ring []string
	// Edges are the directed edges black-holed, in ring order.
	Edges []Edge
	// Minority are the nodes cut off from a majority (sorted); empty for
	// majorities-ring, where every node keeps one.
	Minority []string
	// Describe says in words what the cut looks like.
	Describe string
}

// Partition lays shape out on ring (the nodes, first node first) and
// returns its cut. An unknown shape or too few nodes is an error that names
// the shapes or the minimum.
func Partition(shape string, ring []string) (Cut, error) {
	n := len(ring)
	min, ok := scenarios.ShapeMinNodes[shape]
	if !ok {
		return Cut{}, fmt.Errorf("unknown partition shape %q; hint: one of %s", shape, strings.Join(scenarios.Shapes, ", "))
	}
	if n < min {
		return Cut{}, fmt.Errorf("partition shape %s needs at least %d nodes, the arm has %d", shape, min, n)
	}
	seen := map[string]bool{}
	for _, x := range ring {
		if x == "" || seen[x] {
			return Cut{}, fmt.Errorf("partition over nodes %v: node names must be unique and non-empty", ring)
		}
		seen[x] = true
	}
	c := Cut{Shape: shape, Ring: append([]string(nil), ring...)}
	group := map[string]int{} // 0 and 1: the two sides; -1: the bridge
	switch shape {
	case scenarios.ShapeIsolateOne:
		group[ring[0]] = 1
		c.Minority = []string{ring[0]}
		c.Describe = fmt.Sprintf("%s alone | %v", ring[0], sorted(ring[1:]))
	case scenarios.ShapeHalves:
		for _, x := range ring[:n/2] {
			group[x] = 1
		}
		c.Minority = sorted(ring[:n/2])
		c.Describe = fmt.Sprintf("%v | %v", c.Minority, sorted(ring[n/2:]))
	case scenarios.ShapeBridge:
		a := (n - 1) / 2
		for _, x := range ring[:a] {
			group[x] = 1
		}
		group[ring[a]] = -1
		c.Minority = sorted(ring[:a])
		c.Describe = fmt.Sprintf("%v | bridge %s | %v", c.Minority, ring[a], sorted(ring[a+1:]))
	case scenarios.ShapeMajoritiesRing:
		k := RingReach(n)
		for i := range n {
			for j := range n {
				if i != j && ringDistance(i, j, n) > k {
					c.Edges = append(c.Edges, Edge{ring[i], ring[j]})
				}
			}
		}
		c.Describe = fmt.Sprintf("ring %v: each node keeps its %d nearest neighbours on each side", ring, k)
		return c, nil
	}
	for _, x := range ring {
		for _, y := range ring {
			gx, gy := group[x], group[y]
			if x == y || gx == -1 || gy == -1 || gx == gy {
				continue
			}
			c.Edges = append(c.Edges, Edge{x, y})
		}
	}
	return c, nil
}

// RingReach is how many ring neighbours on each side a node keeps in a
// majorities-ring of n nodes: the fewest that still leave it a majority
// (itself and 2·RingReach peers ≥ quorum).
func RingReach(n int) int {
	return scenarios.Quorum(n) / 2
}

func ringDistance(i, j, n int) int {
	d := (j - i + n) % n
	return min(d, n-d)
}

// Reachable returns, per node, the peers it can still send to under the cut.
func (c Cut) Reachable() map[string][]string {
	cut := c.set()
	out := map[string][]string{}
	for _, x := range c.Ring {
		out[x] = []string{}
		for _, y := range c.Ring {
			if x != y && !cut[Edge{x, y}] {
				out[x] = append(out[x], y)
			}
		}
	}
	return out
}

func (c Cut) set() map[Edge]bool {
	m := make(map[Edge]bool, len(c.Edges))
	for _, e := range c.Edges {
		m[e] = true
	}
	return m
}

// Group is a set of senders that lose the same receivers: one Kubernetes
// NetworkChaos with direction "to" (From's pods cannot send to To's).
type Group struct {
	From []string
	To   []string
}

// Groups folds the cut's edges into as few sender groups as there are
// distinct sets of lost receivers, in ring order of each group's first
// sender; names inside a group are sorted. A two-sided shape gives two
// groups, a majorities-ring one per node.
func (c Cut) Groups() []Group {
	lost := map[string][]string{}
	for _, e := range c.Edges {
		lost[e.From] = append(lost[e.From], e.To)
	}
	var out []Group
	index := map[string]int{}
	for _, x := range c.Ring {
		to := lost[x]
		if len(to) == 0 {
			continue
		}
		to = sorted(to)
		key := strings.Join(to, "\x00")
		if i, ok := index[key]; ok {
			out[i].From = append(out[i].From, x)
			continue
		}
		index[key] = len(out)
		out = append(out, Group{From: []string{x}, To: to})
	}
	for i := range out {
		out[i].From = sorted(out[i].From)
	}
	return out
}

// ErrNoLeader says no partition of the cluster has a leader to isolate.
var ErrNoLeader = errors.New("no partition has a leader")

// SplitBrainLeader picks the node a split brain isolates: the leader of
// partition when given, else the node that leads the most partitions
// (ties: the lowest name). It also returns the partitions that node leads.
func SplitBrainLeader(leaders map[int]string, partition *int) (string, []int, error) {
	var node string
	if partition != nil {
		node = leaders[*partition]
		if node == "" {
			return "", nil, fmt.Errorf("partition %d has no leader", *partition)
		}
	} else {
		count := map[string]int{}
		for _, l := range leaders {
			if l != "" {
				count[l]++
			}
		}
		for l, c := range count {
			if node == "" || c > count[node] || (c == count[node] && l < node) {
				node = l
			}
		}
		if node == "" {
			return "", nil, ErrNoLeader
		}
	}
	var led []int
	for p, l := range leaders {
		if l == node {
			led = append(led, p)
		}
	}
	sort.Ints(led)
	return node, led, nil
}

// Isolate is the cut of a split brain: node cut from every other node, both
// ways.
func Isolate(node string, nodes []string) []Edge {
	var out []Edge
	for _, x := range nodes {
		if x != node {
			out = append(out, Edge{node, x}, Edge{x, node})
		}
	}
	return out
}

func sorted(xs []string) []string {
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return out
}
