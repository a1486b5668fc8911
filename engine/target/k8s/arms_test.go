package k8s

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
)

// TestArmsAddressesLeadersAndSelectors checks the Kubernetes target's view
// of its pods against a real HTTP server answering GET /v1/cluster: pods
// are dialled at their port named http (else the default port), in name
// order; a pod without an IP is left out; the leader is the pod leading
// the most partitions; each arm's Prometheus selector matches its own
// pods' names and not the other arm's.
func TestArmsAddressesLeadersAndSelectors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"partition_count":3,"partitions":[{"id":0,"leader":"web-1"},{"id":1,"leader":"web-1"},{"id":2,"leader":"web-0"}]}`)
	}))
	defer srv.Close()
	host, ps, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(ps)
	canary := &Workload{Arm: engine.ArmCanary, Kind: StatefulSet, Namespace: "shop", Name: "web-canary", Replicas: 3,
		Pods: []Pod{{Name: "web-canary-1", IP: host, HTTPPort: port}, {Name: "web-canary-0", IP: host, HTTPPort: port}, {Name: "web-canary-2"}}}
	control := &Workload{Arm: engine.ArmControl, Kind: Deployment, Namespace: "shop", Name: "web", Replicas: 2,
		Pods: []Pod{{Name: "web-7c9d5f-abcde", IP: host, Revision: "7c9d5f"}, {Name: "web-7c9d5f-fghij", IP: host, Revision: "7c9d5f"}}}
	a, err := NewArms(context.Background(), ArmsConfig{Pair: Pair{Canary: canary, Control: control}, Resolver: &Resolver{}, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if a.Partitions() != 3 {
		t.Errorf("partitions %d, want 3 (read from GET /v1/cluster)", a.Partitions())
	}
	addr := srv.Listener.Addr().String()
	if got := a.ClientAddrs(engine.ArmCanary); len(got) != 2 || got[0] != addr || got[1] != addr {
		t.Errorf("canary client addresses %v: want the two pods with an IP", got)
	}
	if d := a.DirectAddrs(engine.ArmControl); len(d) != 2 || d["web-7c9d5f-abcde"] != addr {
		t.Errorf("control direct addresses %v", d)
	}
	if l, err := a.Leader(context.Background(), engine.ArmCanary, nil); err != nil || l != "web-1" {
		t.Errorf("leader %q, %v: want web-1 (leads 2 of 3)", l, err)
	}
	two := 2
	if l, err := a.Leader(context.Background(), engine.ArmCanary, &two); err != nil || l != "web-0" {
		t.Errorf("leader of partition 2 %q, %v", l, err)
	}
	if a.Service() != "k8s/shop/web" || len(a.LoadArms()) != 2 {
		t.Errorf("service %q, arms %v", a.Service(), a.LoadArms())
	}
	sel := map[engine.Arm]string{engine.ArmCanary: a.PromSelector(engine.ArmCanary), engine.ArmControl: a.PromSelector(engine.ArmControl)}
	if sel[engine.ArmCanary] != `namespace="shop",pod=~"web-canary-.+"` || sel[engine.ArmControl] != `namespace="shop",pod=~"web-7c9d5f-.+"` {
		t.Fatalf("selectors %v", sel)
	}
	podRe := func(s string) *regexp.Regexp {
		_, re, _ := strings.Cut(s, `pod=~"`)
		return regexp.MustCompile("^(?:" + strings.TrimSuffix(re, `"`) + ")$")
	}
	for _, c := range []struct {
		arm  engine.Arm
		pod  string
		want bool
	}{{engine.ArmCanary, "web-canary-2", true}, {engine.ArmCanary, "web-7c9d5f-abcde", false},
		{engine.ArmControl, "web-7c9d5f-zzzzz", true}, {engine.ArmControl, "web-canary-0", false}, {engine.ArmControl, "web-5b6c7d-abcde", false}} {
		if got := podRe(sel[c.arm]).MatchString(c.pod); got != c.want {
			t.Errorf("%s selector %s on pod %s: %v, want %v", c.arm, sel[c.arm], c.pod, got, c.want)
		}
	}
	// The log streams: the agent's namespace label and the same pod
	// prefix, anchored, under the labels the agent uses.
	ls := a.LogStreams(engine.ArmControl)
	if ls.Labels["namespace"] != "shop" || ls.LabelRegex["pod"] != "^web-7c9d5f-.+$" || ls.NodeLabel != "pod" {
		t.Errorf("control log streams %+v", ls)
	}
	custom, err := NewArms(context.Background(), ArmsConfig{Pair: Pair{Canary: canary, Control: control}, Resolver: &Resolver{}, Port: port,
		LogLabels: LogLabels{Namespace: "kubernetes.pod_namespace", Pod: "kubernetes.pod_name"}})
	if err != nil {
		t.Fatal(err)
	}
	if ls := custom.LogStreams(engine.ArmCanary); ls.Labels["kubernetes.pod_namespace"] != "shop" || ls.LabelRegex["kubernetes.pod_name"] != "^web-canary-.+$" ||
		ls.NodeLabel != "kubernetes.pod_name" || regexp.MustCompile(ls.LabelRegex["kubernetes.pod_name"]).MatchString("web-canary-2") != true {
		t.Errorf("canary log streams under vlagent's labels %+v", ls)
	}
	// No pod answers: a clear error naming the arm.
	srv.Close()
	if _, err := a.Leader(context.Background(), engine.ArmControl, nil); err == nil || !strings.Contains(err.Error(), "no pod of control answered") {
		t.Errorf("leader with no pod answering: %v", err)
	}
}
