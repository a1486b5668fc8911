package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// TestMemoryStressTakesMemoryUnderALimit: 32 MiB of a 48 MiB limit taken
// from a real process, charged to the fault's cgroup and confirmed; when
// the process then grows, the kernel's OOM killer ends it at the limit
// while its unstressed siblings grow freely; recovery from the journaled
// Applied alone frees the memory and removes the cgroup.
func TestMemoryStressTakesMemoryUnderALimit(t *testing.T) {
	h := hierarchyOrSkip(t, "memory")
	trigger := filepath.Join(t.TempDir(), "grow")
	// Each node waits for the trigger, then doubles a string to 32 MiB
	// (about 100 MiB with the shell's copies) and sleeps.
	p := newProcsRunning(t, []string{"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done; s=x; i=0; while [ $i -lt 25 ]; do s="$s$s"; i=$((i+1)); done; sleep 600`, trigger}, nodes3...)
	in := New(Config{Nodes: p})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, _ := p.Pid(engine.ArmCanary, "n2")
	f := engine.Fault{ID: "mem-001-canary-n2", Kind: engine.MemoryStress, Duration: 10 * time.Second, MemoryBytes: 32 << 20, MemoryText: "32MiB", MemoryLimit: 48 << 20}
	a, err := in.Inject(ctx, target("n2"), f)
	if err != nil {
		t.Fatal(err)
	}
	var u Undo
	if err := json.Unmarshal(a.Undo, &u); err != nil || u.Memory == nil {
		t.Fatalf("undo %s: %v", a.Undo, err)
	}
	if cg, _ := h.cgroupOf(pid); cg != u.Memory.Cgroup {
		t.Fatalf("pid %d in cgroup %s, want %s", pid, cg, u.Memory.Cgroup)
	}
	if fi, err := os.Stat(u.Memory.File); err != nil || fi.Size() != 32<<20 {
		t.Fatalf("taken memory %s: %v %v", u.Memory.File, fi, err)
	}
	c := in.Confirm(ctx, a)
	t.Logf("confirmation: %s", c.Measurement)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "32MiB of tmpfs") || !strings.Contains(c.Measurement, "48MiB limit") {
		t.Fatalf("confirm %+v", c)
	}

	// Now every node grows: n2 has 16 MiB left and is killed at the
	// limit; n1 is not limited.
	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n1, _ := engine.ProcOf(func() int { p, _ := p.Pid(engine.ArmCanary, "n1"); return p }())
	deadline := time.Now().Add(30 * time.Second)
	for u.Proc.Alive() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if u.Proc.Alive() {
		t.Fatalf("n2 (pid %d) outgrew its 16 MiB and is still alive", pid)
	}
	if !n1.Alive() {
		t.Fatalf("n1 (pid %d), not stressed, died", n1.Pid)
	}
	c = in.Confirm(ctx, a)
	t.Logf("after n2 grew: %s", c.Measurement)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "killed at the limit") {
		t.Fatalf("confirm after the kill %+v", c)
	}

	// Recovery from the journal alone (a new injector, as after a crash).
	raw, _ := json.Marshal(a)
	var journaled engine.Applied
	if err := json.Unmarshal(raw, &journaled); err != nil {
		t.Fatal(err)
	}
	if err := New(Config{}).Recover(ctx, journaled); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(u.Memory.File); !os.IsNotExist(err) {
		t.Fatalf("the taken memory %s is still there: %v", u.Memory.File, err)
	}
	if _, err := os.Stat(u.Memory.Cgroup); !os.IsNotExist(err) {
		t.Fatalf("the fault's cgroup %s is still there: %v", u.Memory.Cgroup, err)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatalf("second recovery: %v", err)
	}

	// A limit this machine cannot afford is refused before anything moves.
	f.ID, f.MemoryLimit = "mem-002-canary-n3", 1<<50
	if _, err := in.Inject(ctx, target("n3"), f); err == nil || !strings.Contains(err.Error(), "available memory") {
		t.Fatalf("a 1 PiB limit: %v", err)
	}
}
