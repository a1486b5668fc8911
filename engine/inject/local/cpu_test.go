package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// cpuHierarchyOrSkip returns the cpu controller's hierarchy when this
// process may create cgroups in it; outside CI it skips otherwise.
func cpuHierarchyOrSkip(t *testing.T) cpuHierarchy { return hierarchyOrSkip(t, "cpu") }

// hierarchyOrSkip returns a controller's hierarchy when this process may
// create cgroups in it; outside CI it skips otherwise.
func hierarchyOrSkip(t *testing.T, controller string) cpuHierarchy {
	t.Helper()
	h, err := findHierarchy(controller)
	if err == nil {
		dir := filepath.Join(h.mount, "chaosgate-probe-"+strconv.Itoa(os.Getpid()))
		if err = os.Mkdir(dir, 0o755); err == nil {
			os.Remove(dir)
			return h
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("a local %sStress needs a writable cgroup %s controller: %v", controller, controller, err)
	}
	t.Skipf("no writable cgroup %s controller here (%v): a local %sStress needs one", controller, err, controller)
	return h
}

// cpuUse measures the share of one CPU pid uses over d.
func cpuUse(t *testing.T, pid int, d time.Duration) float64 {
	t.Helper()
	c0, err := procCPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	time.Sleep(d)
	c1, err := procCPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return float64(c1-c0) / float64(time.Since(t0))
}

// TestCPUStressHoldsTheNodeToItsQuota: a real process spinning on one CPU
// is held to the rest of the CPU the fault leaves it, the confirmation
// measures it, and recovery (from the journaled Applied alone, as after a
// crash) puts it back where it was and removes the fault's cgroup.
func TestCPUStressHoldsTheNodeToItsQuota(t *testing.T) {
	h := cpuHierarchyOrSkip(t)
	p := newProcsRunning(t, []string{"sh", "-c", "while :; do :; done"}, nodes3...)
	in := New(Config{Nodes: p})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, _ := p.Pid(engine.ArmCanary, "n2")
	from, err := h.cgroupOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	before := cpuUse(t, pid, 500*time.Millisecond)
	f := engine.Fault{ID: "cpu-001-canary-n2", Kind: engine.CPUStress, Duration: 5 * time.Second, Load: 0.8}
	a, err := in.Inject(ctx, target("n2"), f)
	if err != nil {
		t.Fatal(err)
	}
	var u Undo
	if err := json.Unmarshal(a.Undo, &u); err != nil || u.CPU == nil {
		t.Fatalf("undo %s: %v", a.Undo, err)
	}
	if in2, _ := h.cgroupOf(pid); in2 != u.CPU.Cgroup || !strings.Contains(in2, "/chaosgate/cpu-001-canary-n2") {
		t.Fatalf("pid %d in cgroup %s, want %s", pid, in2, u.CPU.Cgroup)
	}
	c := in.Confirm(ctx, a)
	t.Logf("before: %.0f%% of a CPU; confirmation: %s", before*100, c.Measurement)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "held to 20% of one CPU") || !strings.Contains(c.Measurement, "throttled in") {
		t.Fatalf("confirm %+v", c)
	}
	if used := cpuUse(t, pid, time.Second); used > 0.2*1.15+0.05 {
		t.Fatalf("the stressed node used %.0f%% of a CPU, its quota is 20%%", used*100)
	}
	// Another node is not held.
	other, _ := p.Pid(engine.ArmCanary, "n1")
	if cg, _ := h.cgroupOf(other); cg == u.CPU.Cgroup {
		t.Fatalf("n1 is in the fault's cgroup")
	}

	// The confirmation fails when the process left the cgroup.
	if err := writeCgroupFile(from, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch || !strings.Contains(c.Measurement, "is not in cgroup") {
		t.Fatalf("confirm with the process moved out: %+v", c)
	}
	if err := writeCgroupFile(u.CPU.Cgroup, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
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
	if cg, _ := h.cgroupOf(pid); cg != from {
		t.Fatalf("after recovery pid %d is in %s, want %s", pid, cg, from)
	}
	if _, err := os.Stat(u.CPU.Cgroup); !os.IsNotExist(err) {
		t.Fatalf("the fault's cgroup %s is still there: %v", u.CPU.Cgroup, err)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatalf("second recovery: %v", err)
	}

	// A node killed while stressed: recovery removes the emptied cgroup.
	f.ID, f.Load = "cpu-002-canary-n3", 0.5
	a, err = in.Inject(ctx, target("n3"), f)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(a.Undo, &u)
	if u.CPU.QuotaUS != 50000 || u.CPU.PeriodUS != 100000 {
		t.Fatalf("quota %d per %d, want 50000 per 100000", u.CPU.QuotaUS, u.CPU.PeriodUS)
	}
	if err := u.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && u.Proc.Alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(u.CPU.Cgroup); !os.IsNotExist(err) {
		t.Fatalf("the killed node's cgroup %s is still there: %v", u.CPU.Cgroup, err)
	}
	if pids, _ := cgroupPids(from); len(pids) > 0 && slices.Contains(pids, u.Proc.Pid) {
		t.Fatalf("a killed pid came back")
	}
}

// TestCPUStressRefusesBadLoads: a load outside (0, 1) is refused before
// anything is touched.
func TestCPUStressRefusesBadLoads(t *testing.T) {
	p := newProcs(t, "n1")
	in := New(Config{Nodes: p})
	for _, load := range []float64{0, 1, -0.5} {
		_, err := in.Prepare(context.Background(), target("n1"), engine.Fault{ID: "x", Kind: engine.CPUStress, Load: load})
		if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "outside (0, 1)") {
			t.Fatalf("load %g: %v", load, err)
		}
	}
}
