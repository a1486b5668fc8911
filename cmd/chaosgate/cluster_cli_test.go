package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/target/local"
)

// TestAggregatorClusterLoadCheckCLI runs the commands as a user would:
// `aggregator cluster` (until SIGTERM) with a small stream retention, a
// first `load` that pushes every partition past it, a second `load` that
// must start at the high watermarks and drain its own records, `check` on
// its history.
func TestAggregatorClusterLoadCheckCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	bin := clusterNodeBinary(t)
	dir := t.TempDir()
	var out bytes.Buffer
	cl := exec.Command(bin, "aggregator", "cluster", "--nodes", "3", "--data-dir", dir, "--partitions", "4", "--node-arg=--stream-retention=100")
	cl.Stdout, cl.Stderr = &out, &out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cl.Wait() }()
	defer func() {
		_ = cl.Process.Kill()
	}()
	cfPath := filepath.Join(dir, "cluster.json")
	deadline := time.Now().Add(60 * time.Second)
	var cf local.ClusterFile
	for {
		var err error
		if cf, err = local.ReadClusterFile(cfPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cluster.json after 60s: %v\n%s", err, out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("cluster exited early: %v\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if len(cf.Nodes) != 3 {
		t.Fatalf("cluster.json: %+v", cf)
	}
	fill := exec.Command(bin, "load", "--cluster", cfPath, "--duration", "2s", "--rate", "800", "--batch", "4", "--no-drain")
	if b, err := fill.CombinedOutput(); err != nil || !strings.Contains(string(b), "throughput") {
		t.Fatalf("first load: %v\n%s", err, b)
	}
	hist := filepath.Join(dir, "h.jsonl")
	ld := exec.Command(bin, "load", "--cluster", cfPath, "--duration", "2s", "--rate", "40", "--sources", "4", "--keys", "16", "--history", hist)
	if b, err := ld.CombinedOutput(); err != nil || !strings.Contains(string(b), "throughput") {
		t.Fatalf("load: %v\n%s", err, b)
	}
	ck := exec.Command(bin, "check", "--history", hist, "-o", "json")
	b, err := ck.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(b), `{"ok":true`) {
		t.Fatalf("check: %v\n%s", err, b)
	}

	if err := cl.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("cluster exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("cluster did not stop on SIGTERM\n%s", out.String())
	}
	for _, n := range cf.Nodes {
		if syscall.Kill(n.PID, 0) == nil {
			t.Fatalf("node %s (pid %d) outlived the stopped cluster", n.ID, n.PID)
		}
		if _, err := os.Stat(filepath.Join(dir, n.ID, "node.log")); err != nil {
			t.Fatalf("node log: %v", err)
		}
	}
}
