package geometry

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/scenarios"
)

func ring(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// TestCutsStayWithinTheBlastRadiusBudget checks every shape on n = 2…9
// nodes against the budget the experiment validator charges for it
// (scenarios.ShapeImpact): the nodes a cut leaves without a majority they
// can reach directly (themselves included) never outnumber the budget;
// every cut is symmetric; a majorities-ring leaves every node a majority,
// no two nodes the same one, and loses no node more peers than the budget.
func TestCutsStayWithinTheBlastRadiusBudget(t *testing.T) {
	for n := 2; n <= 9; n++ {
		nodes := ring(n)
		q := scenarios.Quorum(n)
		for _, shape := range scenarios.Shapes {
			c, err := Partition(shape, nodes)
			if n < scenarios.ShapeMinNodes[shape] {
				if err == nil || !strings.Contains(err.Error(), "needs at least") {
					t.Errorf("%s on %d nodes: want a too-few-nodes error, got %v", shape, n, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s on %d nodes: %v", shape, n, err)
			}
			set := c.set()
			if len(set) != len(c.Edges) {
				t.Errorf("%s n=%d: an edge is listed twice", shape, n)
			}
			for e := range set {
				if e.From == e.To {
					t.Errorf("%s n=%d: self edge %v", shape, n, e)
				}
				if !set[Edge{e.To, e.From}] {
					t.Errorf("%s n=%d: %s→%s cut one way only", shape, n, e.From, e.To)
				}
			}
			if len(c.Edges) == 0 {
				t.Errorf("%s n=%d: cuts nothing", shape, n)
			}
			reach := c.Reachable()
			var noMajority []string
			mostLost := 0
			for _, x := range nodes {
				if 1+len(reach[x]) < q {
					noMajority = append(noMajority, x)
				}
				mostLost = max(mostLost, n-1-len(reach[x]))
			}
			budget := scenarios.ShapeImpact(shape, n)
			if len(noMajority) > budget {
				t.Errorf("%s n=%d: %v left without a majority, the budget charges %d", shape, n, noMajority, budget)
			}
			switch shape {
			case scenarios.ShapeMajoritiesRing:
				if len(noMajority) > 0 {
					t.Errorf("ring n=%d: %v see no majority", n, noMajority)
				}
				if mostLost > budget {
					t.Errorf("ring n=%d: a node loses %d peers, the budget charges %d", n, mostLost, budget)
				}
				views := map[string]string{}
				for _, x := range nodes {
					v := strings.Join(append([]string{x}, reach[x]...), ",")
					for y, w := range views {
						if sameSet(v, w) {
							t.Errorf("ring n=%d: %s and %s see the same majority", n, x, y)
						}
					}
					views[x] = v
				}
			case scenarios.ShapeIsolateOne:
				if len(reach[nodes[0]]) != 0 || !reflect.DeepEqual(c.Minority, []string{nodes[0]}) {
					t.Errorf("isolate-one n=%d: %s still reaches %v (minority %v)", n, nodes[0], reach[nodes[0]], c.Minority)
				}
			case scenarios.ShapeBridge:
				b := nodes[(n-1)/2]
				if len(reach[b]) != n-1 {
					t.Errorf("bridge n=%d: the bridge %s reaches only %v", n, b, reach[b])
				}
			}
			// Groups cover exactly the cut's edges.
			var regrouped []Edge
			for _, g := range c.Groups() {
				for _, f := range g.From {
					for _, to := range g.To {
						regrouped = append(regrouped, Edge{f, to})
					}
				}
			}
			if len(regrouped) != len(set) {
				t.Errorf("%s n=%d: groups hold %d edges, the cut %d", shape, n, len(regrouped), len(set))
			}
			for _, e := range regrouped {
				if !set[e] {
					t.Errorf("%s n=%d: group edge %v not in the cut", shape, n, e)
				}
			}
		}
	}
}

func sameSet(a, b string) bool {
	as, bs := strings.Split(a, ","), strings.Split(b, ",")
	if len(as) != len(bs) {
		return false
	}
	m := map[string]bool{}
	for _, x := range as {
		m[x] = true
	}
	for _, x := range bs {
		if !m[x] {
			return false
		}
	}
	return true
}

func TestSevenNodeRingKeepsAMajority(t *testing.T) {
	c, err := Partition(scenarios.ShapeMajoritiesRing, ring(7))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Reachable()["n1"]; !reflect.DeepEqual(got, []string{"n2", "n3", "n6", "n7"}) {
		t.Fatalf("n1 reaches %v, want its two neighbours on each side", got)
	}
	if len(c.Groups()) != 7 {
		t.Fatalf("groups %+v", c.Groups())
	}
}

func TestTwoSidedShapesFoldIntoTwoGroups(t *testing.T) {
	for shape, want := range map[string]string{
		scenarios.ShapeIsolateOne: "n1>n2,n3,n4,n5|n2,n3,n4,n5>n1",
		scenarios.ShapeHalves:     "n1,n2>n3,n4,n5|n3,n4,n5>n1,n2",
		scenarios.ShapeBridge:     "n1,n2>n4,n5|n4,n5>n1,n2",
	} {
		c, err := Partition(shape, ring(5))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, g := range c.Groups() {
			got = append(got, strings.Join(g.From, ",")+">"+strings.Join(g.To, ","))
		}
		if strings.Join(got, "|") != want {
			t.Errorf("%s: %s, want %s", shape, strings.Join(got, "|"), want)
		}
	}
}

func TestPartitionRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		shape string
		nodes []string
		want  string
	}{
		{"triangle", ring(5), `unknown partition shape "triangle"; hint: one of isolate-one`},
		{"majorities-ring", ring(4), "needs at least 5 nodes, the arm has 4"},
		{"halves", []string{"a", "a"}, "unique"},
		{"halves", []string{"a", ""}, "non-empty"},
	} {
		if _, err := Partition(c.shape, c.nodes); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.shape, c.nodes, err, c.want)
		}
	}
}

func TestSplitBrainLeader(t *testing.T) {
	leaders := map[int]string{0: "n3", 1: "n3", 2: "n1", 3: "n1", 4: ""}
	node, led, err := SplitBrainLeader(leaders, nil)
	if err != nil || node != "n1" || !reflect.DeepEqual(led, []int{2, 3}) {
		t.Fatalf("tie: %s %v %v, want the lowest name n1 with partitions 2, 3", node, led, err)
	}
	p := 1
	if node, led, err = SplitBrainLeader(leaders, &p); err != nil || node != "n3" || !reflect.DeepEqual(led, []int{0, 1}) {
		t.Fatalf("partition 1: %s %v %v", node, led, err)
	}
	p = 4
	if _, _, err = SplitBrainLeader(leaders, &p); err == nil || !strings.Contains(err.Error(), "partition 4 has no leader") {
		t.Fatalf("leaderless partition: %v", err)
	}
	if _, _, err = SplitBrainLeader(map[int]string{0: ""}, nil); err != ErrNoLeader {
		t.Fatalf("no leader: %v", err)
	}
	if e := Isolate("n2", ring(3)); !reflect.DeepEqual(e, []Edge{{"n2", "n1"}, {"n1", "n2"}, {"n2", "n3"}, {"n3", "n2"}}) {
		t.Fatalf("isolate: %v", e)
	}
}

// FuzzPartition: any shape name and node list gives a clear error or a
// symmetric cut with no self edges, never a panic.
func FuzzPartition(f *testing.F) {
	f.Add("halves", 5, 0)
	f.Add("majorities-ring", 7, 3)
	f.Add("bridge", 3, 1)
	f.Add("isolate-one", 2, 1)
	f.Add("x", 0, 0)
	f.Fuzz(func(t *testing.T, shape string, n, dup int) {
		if n < 0 || n > 40 {
			return
		}
		nodes := ring(n)
		if n > 1 && dup > 0 {
			nodes[dup%n] = nodes[0]
		}
		c, err := Partition(shape, nodes)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		set := c.set()
		for e := range set {
			if e.From == e.To || !set[Edge{e.To, e.From}] {
				t.Fatalf("%s n=%d: bad edge %v", shape, n, e)
			}
		}
	})
}
