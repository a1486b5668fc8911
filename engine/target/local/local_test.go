package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The supervisor's own tests run this test binary as the node: with
// LOCAL_TEST_NODE=1 it behaves as a minimal node process (it parses the
// node flags, records them, serves /readyz and exits on SIGTERM), so the
// restart, backoff, cluster.json and stop logic are exercised with real
// processes. The real aggregator is exercised by the cmd integration test.
func TestMain(m *testing.M) {
	if os.Getenv("LOCAL_TEST_NODE") == "1" {
		os.Exit(testNode(os.Args[1:]))
	}
	if dir := os.Getenv("LOCAL_TEST_SUPERVISOR"); dir != "" {
		os.Exit(testSupervisor(dir))
	}
	goleak.VerifyTestMain(m)
}

func testNode(args []string) int {
	flags := map[string]string{}
	for i := 1; i+1 < len(args); i += 2 {
		flags[args[i]] = args[i+1]
	}
	if args[0] != "aggregator" {
		return 2
	}
	if err := os.WriteFile(filepath.Join(flags["--data-dir"], "args.txt"), []byte(strings.Join(args, " ")), 0o644); err != nil {
		return 2
	}
	l, err := net.Listen("tcp", flags["--http"])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	go func() { _ = http.Serve(l, mux) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}

// testSupervisor runs a supervisor of two test nodes, prints their pids and
// waits to be killed.
func testSupervisor(dir string) int {
	exe, err := os.Executable()
	if err != nil {
		return 2
	}
	os.Setenv("LOCAL_TEST_NODE", "1")
	specs, err := Plan(2, 0)
	if err != nil {
		return 2
	}
	sup, err := Start(context.Background(), Config{Binary: exe, Dir: dir, Nodes: specs})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, pid := range sup.PIDs() {
		fmt.Println(pid)
	}
	select {}
}

func TestNodesDieWithKilledSupervisor(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig exists only on Linux")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCAL_TEST_SUPERVISOR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for len(pids) < 2 && sc.Scan() {
		pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("supervisor did not report its nodes")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) && !zombie(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("node pid %d outlived its SIGKILLed supervisor", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// zombie reports whether pid has exited but not been reaped (its parent,
// the killed supervisor, is gone and init has not collected it yet).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

func testConfig(t *testing.T, n int) Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOCAL_TEST_NODE", "1")
	specs, err := Plan(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Binary: exe, Dir: t.TempDir(), Nodes: specs, Partitions: 4, ReadyTimeout: 20 * time.Second,
		Grace: 2 * time.Second, BackoffInitial: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestSuperviseRestartAndStop(t *testing.T) {
	cfg := testConfig(t, 3)
	// n1 dials n2 through a different (proxy) address than n3 does.
	cfg.Nodes[0].Peers = map[string]string{"n2": "127.0.0.1:1"}
	cfg.Nodes[0].Defects = []string{"no-dedup"}
	var mu sync.Mutex
	var events []NodeEvent
	restarted := make(chan NodeEvent, 4)
	cfg.OnEvent = func(ev NodeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		if ev.Kind == NodeRestarted {
			restarted <- ev
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sup, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ReadClusterFile(sup.ClusterFilePath())
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Nodes) != 3 || cf.Nodes[0].ID != "n1" || cf.Nodes[1].PID == 0 || cf.Nodes[2].HTTP != cfg.Nodes[2].HTTP {
		t.Fatalf("cluster.json: %+v", cf)
	}
	args1, _ := os.ReadFile(filepath.Join(cfg.Dir, "n1", "data", "args.txt"))
	args3, _ := os.ReadFile(filepath.Join(cfg.Dir, "n3", "data", "args.txt"))
	if !strings.Contains(string(args1), "n2=127.0.0.1:1,") || !strings.Contains(string(args1), "--defect no-dedup") || !strings.Contains(string(args1), "--partitions 4") {
		t.Fatalf("n1 args: %s", args1)
	}
	if !strings.Contains(string(args3), "n2="+cfg.Nodes[1].Raft) || strings.Contains(string(args3), "--defect") {
		t.Fatalf("n3 args: %s", args3)
	}

	old := sup.PIDs()["n2"]
	if _, err := sup.Signal("n2", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-restarted:
		if ev.Node != "n2" || ev.PID == old || ev.Restarts != 1 {
			t.Fatalf("restart event %+v (old pid %d)", ev, old)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("n2 not restarted")
	}
	cf2, err := ReadClusterFile(sup.ClusterFilePath())
	if err != nil {
		t.Fatal(err)
	}
	if cf2.Nodes[1].PID == old || cf2.Nodes[1].PID != sup.PIDs()["n2"] {
		t.Fatalf("cluster.json not rewritten with the new pid: %+v (old %d)", cf2.Nodes[1], old)
	}
	log, _ := os.ReadFile(filepath.Join(cfg.Dir, "n2", "node.log"))
	if strings.Count(string(log), "supervisor: exec") != 2 {
		t.Fatalf("node log does not keep both runs:\n%s", log)
	}

	pids := sup.PIDs()
	cancel()
	sup.Wait()
	for id, pid := range pids {
		if alive(pid) {
			t.Fatalf("node %s (pid %d) still alive after stop", id, pid)
		}
	}
	if _, err := sup.Signal("n1", syscall.SIGKILL); err == nil {
		t.Fatal("signal after stop succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	kinds := map[NodeEventKind]int{}
	for _, ev := range events {
		kinds[ev.Kind]++
	}
	if kinds[NodeStarted] != 4 || kinds[NodeReady] != 3 || kinds[NodeRestarted] != 1 || kinds[NodeExited] != 4 {
		t.Fatalf("events: %v", kinds)
	}
}

func TestStartFailsWhenNodesNeverReady(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Binary = "/bin/false"
	cfg.ReadyTimeout = 1 * time.Second
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("want a not-ready error naming n1, got %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := Start(context.Background(), Config{Binary: "/bin/true"}); err == nil {
		t.Fatal("started without a dir")
	}
	if _, err := Start(context.Background(), Config{Binary: "/bin/true", Dir: t.TempDir(), Nodes: []NodeSpec{{ID: "n1"}}}); err == nil {
		t.Fatal("started a node without addresses")
	}
	if _, err := Plan(0, 0); err == nil {
		t.Fatal("planned zero nodes")
	}
	specs, _ := Plan(2, 7000)
	if specs[1].HTTP != "127.0.0.1:7003" || specs[1].Raft != "127.0.0.1:7005" {
		t.Fatalf("plan: %+v", specs)
	}
	bad := filepath.Join(t.TempDir(), "cluster.json")
	_ = os.WriteFile(bad, []byte(`{"nodes":[{"id":"n1"}]}`), 0o644)
	if _, err := ReadClusterFile(bad); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("accepted a node without http: %v", err)
	}
}
