package arms

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/internal/brokers"
)

// TestArmsRunTheirOwnBrokers: with upstreams declared, every arm starts
// its own nats-server and mosquitto, every node consumes both through a
// proxy on its node→broker edge (attached), the injector finds each arm's
// broker, and Close stops the brokers.
func TestArmsRunTheirOwnBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two aggregator clusters and four brokers")
	}
	for _, find := range []func() (string, error){brokers.FindNATSServer, brokers.FindMosquitto} {
		if _, err := find(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%v (CI: make test installs it with scripts/install-test-deps.sh)", err)
			}
			t.Skipf("%v", err)
		}
	}
	ctx := context.Background()
	ups := []Upstream{{Name: "events", Kind: "nats"}, {Name: "devices", Kind: "mqtt"}}
	a, err := Start(ctx, Config{Binary: binary(t), Dir: t.TempDir(), Nodes: 3, Partitions: 2, Upstreams: ups})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var pids []int
	var pubs []load.Publisher
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		addrs := map[string]bool{}
		for _, u := range ups {
			b, err := a.Broker(arm, u.Name)
			if err != nil {
				t.Fatal(err)
			}
			if b.Kind() != u.Kind || b.Pid() <= 0 || addrs[b.Address()] {
				t.Fatalf("%s %s: kind %s pid %d address %s", arm, u.Name, b.Kind(), b.Pid(), b.Address())
			}
			addrs[b.Address()] = true
			pids = append(pids, b.Pid())
			// the producer creates the JetStream stream the consumers wait for
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			pub, err := load.ParsePublisher(pctx, u.PublishURL(b.Address()))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			pubs = append(pubs, pub)
		}
		if _, err := a.Broker(arm, "nope"); err == nil {
			t.Fatalf("%s: a broker for an upstream it does not run", arm)
		}
		for node, addr := range a.DirectAddrs(arm) {
			deadline := time.Now().Add(60 * time.Second)
			for {
				got := attachedUpstreams(t, addr)
				if got["events"] && got["devices"] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s/%s: upstreams attached %v", arm, node, got)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	// every node dials each broker through its own edge proxy:
	// 30 cluster proxies + 2 upstreams × 3 nodes × 2 arms
	n := 0
	for _, name := range a.Proxies().Names() {
		if strings.Contains(name, "broker:") {
			n++
		}
	}
	if n != 12 {
		t.Fatalf("%d broker edge proxies, want 12", n)
	}
	for _, p := range pubs {
		p.Close()
	}
	a.Close()
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("broker pid %d still runs after Close", pid)
		}
	}
}

func attachedUpstreams(t *testing.T, addr string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	resp, err := http.Get("http://" + addr + "/v1/upstreams")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var st struct {
		Upstreams []struct {
			Name     string `json:"name"`
			Attached bool   `json:"attached"`
		} `json:"upstreams"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, u := range st.Upstreams {
		out[u.Name] = u.Attached
	}
	return out
}
