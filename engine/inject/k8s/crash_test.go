package k8s

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// childEnv makes the test binary act as a chaosgate run that injects faults
// and then hangs until it is SIGKILLed.
const childEnv = "CHAOSGATE_K8S_CRASH_CHILD"

// crashChild is the child's main: KUBECONFIG_FILE, NAMESPACE, DATA_DIR and
// RUN_ID come from the environment. It journals each fault's intent
// before injecting it, exactly as the engine's runner does.
func crashChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "crash child:", err); return 2 }
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG_FILE"))
	if err != nil {
		return fail(err)
	}
	ns, run := os.Getenv("NAMESPACE"), os.Getenv("RUN_ID")
	opts := testOptions(ns, run)
	in, err := New(cfg, opts)
	if err != nil {
		return fail(err)
	}
	j, err := engine.OpenJournal(os.Getenv("DATA_DIR"), run, "crash", nil)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5}
	faults := []struct {
		t engine.Target
		f engine.Fault
	}{
		{tg, engine.Fault{ID: run + "-001-canary", Kind: engine.Partition, Duration: time.Minute, Shape: "halves"}},
		{engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Node: "agg-4"}, engine.Fault{ID: run + "-002-canary-agg-4", Kind: engine.PodPause, Duration: time.Minute}},
		{tg, engine.Fault{ID: run + "-003-canary", Kind: engine.NetworkDelay, Duration: time.Minute, Latency: 80 * time.Millisecond, Edges: engine.Edges{Into: "agg-0"}}},
	}
	for _, c := range faults {
		intent, err := in.Prepare(ctx, c.t, c.f)
		if err != nil {
			return fail(err)
		}
		if err := j.Append(engine.Record{Type: engine.RecIntent, ID: c.f.ID, Applied: &intent}); err != nil {
			return fail(err)
		}
		a, err := in.Inject(ctx, c.t, c.f)
		if err != nil {
			return fail(err)
		}
		if err := j.Append(engine.Record{Type: engine.RecApplied, ID: c.f.ID, Applied: &a}); err != nil {
			return fail(err)
		}
	}
	fmt.Println("INJECTED")
	time.Sleep(time.Hour)
	return 0
}

// runCrashChild starts the child, waits until it has injected, SIGKILLs it
// by pid and returns once it is dead.
func runCrashChild(t *testing.T, kubeconfig, ns, dataDir, run string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "KUBECONFIG_FILE="+kubeconfig, "NAMESPACE="+ns, "DATA_DIR="+dataDir, "RUN_ID="+run)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.TrimSpace(s.Text()) == "INJECTED" {
				line <- "INJECTED"
				return
			}
		}
		line <- ""
	}()
	select {
	case l := <-line:
		if l != "INJECTED" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal("child exited before injecting")
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child did not inject within 60s")
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func ownedBy(t *testing.T, ctx context.Context, in *Injector, run string) []string {
	t.Helper()
	objs, err := in.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		if o.GetLabels()[LabelRun] == run {
			out = append(out, o.GetKind()+"/"+o.GetName())
		}
	}
	return out
}

func TestCrashSafetySIGKILLThenReap(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "crash"
	mkPods(t, ctx, e, ns, pods5...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	kc := t.TempDir() + "/kubeconfig"
	if err := e.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "next-run"))

	// 1. The journal survives: the engine's reaper recovers every fault
	// through this injector.
	dataDir := t.TempDir()
	runCrashChild(t, kc, ns, dataDir, "crashed1")
	left := ownedBy(t, ctx, in, "crashed1")
	if len(left) != 4 { // 2 partition sides + 1 PodChaos + 1 delay
		t.Fatalf("after SIGKILL the crashed run owns %v, want 4 objects", left)
	}
	// Every object also carries a duration: the second guard.
	for _, o := range left {
		kind, name, _ := strings.Cut(o, "/")
		r := ObjectRef{Kind: kind, Namespace: ns, Name: name}
		u, err := e.Dynamic.Resource(r.gvr()).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := u.Object["spec"].(map[string]any)["duration"].(string); !ok || d == "" {
			t.Fatalf("%s has no spec.duration", o)
		}
	}
	inj := map[engine.FaultKind]engine.Injector{engine.Partition: in, engine.PodPause: in, engine.NetworkDelay: in}
	reaped, err := engine.Reap(ctx, dataDir, inj, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 3 {
		t.Fatalf("reaped %v", reaped)
	}
	for _, r := range reaped {
		if r.Result != "recovered" {
			t.Fatalf("reaped %v", r)
		}
	}
	if left := ownedBy(t, ctx, in, "crashed1"); len(left) != 0 {
		t.Fatalf("after the journal reaper: %v", left)
	}

	// 2. The journal is lost (another machine, a wiped disk): the cluster
	// reaper finds the owned objects by label and removes what no live run
	// owns — but leaves the live run's objects alone.
	live, err := in.Inject(ctx, engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Node: "agg-3"}, engine.Fault{ID: "next-run-001", Kind: engine.PodPause, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lost := t.TempDir()
	runCrashChild(t, kc, ns, lost, "crashed2")
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	if n := len(ownedBy(t, ctx, in, "crashed2")); n != 4 {
		t.Fatalf("crashed2 owns %d objects, want 4", n)
	}
	isLive, err := LiveRuns(t.TempDir(), "next-run")
	if err != nil {
		t.Fatal(err)
	}
	reaped, err = in.ReapOrphans(ctx, isLive)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 4 {
		t.Fatalf("reaped %v", reaped)
	}
	for _, r := range reaped {
		if r.Run != "crashed2" || r.Result != "recovered" || r.ID == "" {
			t.Fatalf("reaped %+v", r)
		}
	}
	if left := ownedBy(t, ctx, in, "crashed2"); len(left) != 0 {
		t.Fatalf("after the cluster reaper: %v", left)
	}
	if mine := ownedBy(t, ctx, in, "next-run"); len(mine) != 1 {
		t.Fatalf("the live run's object was touched: %v", mine)
	}
	if err := in.Recover(ctx, live); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, e, ns)
}
