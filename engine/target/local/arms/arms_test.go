package arms

import (
	"context"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"net/http"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

// Binary returns the chaosgate binary the nodes run: $CHAOSGATE_BIN
// (exported by make test) or a fresh build.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestArmsTopologyThroughProxies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two aggregator clusters")
	}
	ctx := context.Background()
	a, err := Start(ctx, Config{Binary: binary(t), Dir: t.TempDir(), Nodes: 3, Partitions: 2, CanaryDefects: []string{"slow-path"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		if got := a.Nodes(arm); len(got) != 3 || got[0] != "n1" {
			t.Fatalf("%s nodes %v", arm, got)
		}
		if err := a.Healthy(ctx, 2); err != nil {
			t.Fatal(err)
		}
		leader, err := a.Leader(ctx, arm, nil)
		if err != nil || leader == "" {
			t.Fatalf("%s leader %q %v", arm, leader, err)
		}
		p := 1
		if l, err := a.Leader(ctx, arm, &p); err != nil || l == "" {
			t.Fatalf("%s leader of partition 1: %q %v", arm, l, err)
		}
		// Clients reach every node through its client proxy, never directly.
		direct := a.DirectAddrs(arm)
		for i, addr := range a.ClientAddrs(arm) {
			node := a.Nodes(arm)[i]
			if addr == direct[node] {
				t.Fatalf("%s/%s: the client address is the node's own", arm, node)
			}
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s/%s through its proxy: %v", arm, node, err)
			}
			resp.Body.Close()
		}
	}
	// Every node→node edge has a proxy: 3 client + 6 raft + 6 http per arm.
	if n := len(a.Proxies().Names()); n != 30 {
		t.Fatalf("%d proxies, want 30", n)
	}
	// A SIGKILLed node is restarted by the supervisor and becomes ready again.
	pid, err := a.Pid(engine.ArmCanary, "n2")
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		p2, err := a.Pid(engine.ArmCanary, "n2")
		if err == nil && p2 != pid {
			break
		}
		if wctx.Err() != nil {
			t.Fatal("n2 was not restarted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := a.WaitReady(wctx, engine.ArmCanary, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pid(engine.ArmCanary, "n9"); err == nil {
		t.Fatal("an unknown node has a pid")
	}
}
