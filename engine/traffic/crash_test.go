package traffic

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaosgate/chaosgate/engine"
)

// crashChildEnv makes the test binary act as a chaosgate game day that
// has moved half of the requests to the canary and then dies.
const crashChildEnv = "CHAOSGATE_TRAFFIC_CRASH_CHILD"

// crashConfig is the route the crashing game day splits.
func crashConfig(ns string) Config {
	return Config{Provider: GatewayAPI, Namespace: ns, Route: "aggregator", Gateway: "public", StableService: "aggregator-stable",
		CanaryService: "aggregator-canary", Port: 7001, Header: &HeaderMatch{Name: "x-deployment-id", Value: "canary"}}
}

// crashChild journals the split before it first moves requests, exactly as
// the game day does, sets 50 % canary and hangs until it is SIGKILLed.
// KUBECONFIG_FILE, NAMESPACE and DATA_DIR come from the environment.
func crashChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "crash child:", err); return 2 }
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG_FILE"))
	if err != nil {
		return fail(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	r, err := New(dyn, crashConfig(os.Getenv("NAMESPACE")))
	if err != nil {
		return fail(err)
	}
	j, err := engine.OpenJournal(os.Getenv("DATA_DIR"), "rollout-crash", "traffic-crash", nil)
	if err != nil {
		return fail(err)
	}
	rec := r.Journaled()
	if err := j.Append(engine.Record{Type: engine.RecIntent, ID: rec.ID, Applied: &rec}); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	for _, w := range []int{1, 10, 50} {
		if err := r.SetWeight(ctx, w); err != nil {
			return fail(err)
		}
	}
	fmt.Println("SPLIT")
	time.Sleep(time.Hour)
	return 0
}

// TestCrashedRolloutIsRestoredByTheReaper: a game day that dies (SIGKILL)
// at 50 % canary leaves the route split; the next chaosgate's reaper finds
// the journaled split and sends every request back to the stable Service,
// header match included, and a second reap finds nothing left.
func TestCrashedRolloutIsRestoredByTheReaper(t *testing.T) {
	const ns = "traffic-crash"
	e, ctx := routeEnv(t, ns)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := e.Kubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", "KUBECONFIG_FILE="+kubeconfig, "NAMESPACE="+ns, "DATA_DIR="+dataDir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	split := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.TrimSpace(s.Text()) == "SPLIT" {
				split <- true
				return
			}
		}
		split <- false
	}()
	select {
	case ok := <-split:
		if !ok {
			_ = cmd.Wait()
			t.Fatal("the crashing game day exited before it split the traffic")
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the crashing game day did not split the traffic within 60 s")
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	r, err := New(e.Dynamic, crashConfig(ns))
	if err != nil {
		t.Fatal(err)
	}
	left, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left.CanaryPercent != 50 || left.Header == nil {
		t.Fatalf("after the crash the route holds %+v, want the 50 %% split with its header match", left)
	}

	reapers := map[engine.FaultKind]engine.Injector{engine.TrafficSplit: Restorer{Dyn: e.Dynamic}}
	reaped, err := engine.Reap(ctx, dataDir, reapers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0].Kind != "trafficSplit" || reaped[0].Result != "recovered" {
		t.Fatalf("reaped %v, want the traffic split recovered", reaped)
	}
	after, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.CanaryPercent != 0 || after.Weights["aggregator-stable"] != 100 || after.Header != nil {
		t.Fatalf("after the reaper the route holds %+v, want every request on aggregator-stable", after)
	}
	t.Logf("crash at 50%% canary: %s", reaped[0])
	if again, err := engine.Reap(ctx, dataDir, reapers, nil); err != nil || len(again) != 0 {
		t.Fatalf("second reap: %v, %v", again, err)
	}
	if _, err := (Restorer{}).Inject(ctx, engine.Target{}, engine.Fault{}); err == nil {
		t.Fatal("a traffic split was injected as a fault")
	}
}
