package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// A cpuStress holds a node's process to the rest of one CPU: the process
// moves into a cgroup of its own under <cpu controller>/chaosgate/, whose
// CFS quota allows (1 − load) of one CPU per period. This is what a CPU
// stressor does to an application inside a pod with a one-CPU limit, and
// unlike a stressor process on the host it takes CPU from this node only,
// not from every process of the machine. Recovery moves the process back
// to the cgroup it came from and removes the fault's cgroup; both are
// recorded in the undo, so a crashed run's reaper does the same.

// cfsPeriod is the CFS period the fault's cgroup uses (100 ms, the kernel's
// default).
const cfsPeriod = 100 * time.Millisecond

// cgroupParent is the directory, under the cpu controller's mount, that
// holds the cgroups of cpuStress faults.
const cgroupParent = "chaosgate"

// CPUUndo is what a cpuStress changed: the process, the cgroup created for
// the fault and the one the process was in before.
type CPUUndo struct {
	Node string      `json:"node"`
	Proc engine.Proc `json:"proc"`
	// Cgroup is the fault's cgroup directory; From the process's cgroup
	// directory before the fault (same controller hierarchy).
	Cgroup string `json:"cgroup"`
	From   string `json:"from"`
	// V2 is true on the unified hierarchy (cpu.max), false on cgroup v1
	// (cpu.cfs_quota_us).
	V2 bool `json:"v2,omitempty"`
	// QuotaUS and PeriodUS are the CFS quota and period written.
	QuotaUS  int64 `json:"quota_us"`
	PeriodUS int64 `json:"period_us"`
}

// cpuHierarchy is where a cgroup controller (cpu, memory) is mounted.
type cpuHierarchy struct {
	mount string
	v2    bool
	// controller is the controller's name ("cpu" when empty).
	controller string
}

// findCPUHierarchy finds the cpu controller (findHierarchy).
func findCPUHierarchy() (cpuHierarchy, error) { return findHierarchy("cpu") }

// findHierarchy reads /proc/self/mountinfo for a controller: a cgroup v1
// hierarchy that has it, else the unified (v2) hierarchy when its
// cgroup.controllers lists it.
func findHierarchy(controller string) (cpuHierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return cpuHierarchy{}, err
	}
	defer f.Close()
	var v2 string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup":
			if slices.Contains(strings.Split(qf[2], ","), controller) {
				return cpuHierarchy{mount: pf[4], controller: controller}, nil
			}
		case "cgroup2":
			if v2 == "" {
				v2 = pf[4]
			}
		}
	}
	if v2 != "" {
		b, err := os.ReadFile(filepath.Join(v2, "cgroup.controllers"))
		if err == nil && slices.Contains(strings.Fields(string(b)), controller) {
			return cpuHierarchy{mount: v2, v2: true, controller: controller}, nil
		}
	}
	return cpuHierarchy{}, fmt.Errorf("no cgroup hierarchy with the %s controller is mounted", controller)
}

// cgroupOf returns the cgroup directory of pid in h, from /proc/PID/cgroup.
func (h cpuHierarchy) cgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if h.v2 && parts[0] == "0" && parts[1] == "" {
			return filepath.Join(h.mount, parts[2]), nil
		}
		if !h.v2 && slices.Contains(strings.Split(parts[1], ","), h.name()) {
			return filepath.Join(h.mount, parts[2]), nil
		}
	}
	return "", fmt.Errorf("pid %d has no cgroup of the %s controller in /proc/%d/cgroup", pid, h.name(), pid)
}

func (h cpuHierarchy) name() string {
	if h.controller == "" {
		return "cpu"
	}
	return h.controller
}

var unsafeCgroupName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// prepareCPUStress records the node's process and the cgroups involved.
func (in *Injector) prepareCPUStress(t engine.Target, f engine.Fault, a *engine.Applied, u *Undo) error {
	if in.cfg.Nodes == nil {
		return engine.E(engine.KindInvalid, "prepare", errors.New("no node supervisor configured"))
	}
	if t.Node == "" {
		return engine.E(engine.KindInvalid, "prepare", errors.New("cpuStress needs a node"))
	}
	if f.Load <= 0 || f.Load >= 1 {
		return engine.E(engine.KindInvalid, "prepare", fmt.Errorf("cpuStress load %g is outside (0, 1)", f.Load))
	}
	pid, err := in.cfg.Nodes.Pid(t.Arm, t.Node)
	if err != nil {
		return engine.E(engine.KindUnavailable, "pid of "+t.Name(), err)
	}
	p, err := engine.ProcOf(pid)
	if err != nil {
		return err
	}
	h, err := findCPUHierarchy()
	if err != nil {
		return engine.E(engine.KindUnavailable, "cpuStress on "+t.Name(), fmt.Errorf("%w; hint: a local cpuStress needs the cgroup cpu controller mounted and writable (root, or a delegated cgroup)", err))
	}
	from, err := h.cgroupOf(pid)
	if err != nil {
		return engine.E(engine.KindUnavailable, "cpuStress on "+t.Name(), err)
	}
	period := cfsPeriod.Microseconds()
	quota := max(int64(math.Round(float64(period)*(1-f.Load))), 1000) // the kernel refuses quotas under 1 ms
	cu := &CPUUndo{Node: t.Node, Proc: p, From: from, V2: h.v2, QuotaUS: quota, PeriodUS: period,
		Cgroup: filepath.Join(h.mount, cgroupParent, unsafeCgroupName.ReplaceAllString(f.ID, "_"))}
	u.CPU = cu
	u.Node, u.Proc = t.Node, &p
	a.Affected = []string{t.Node}
	a.Detail = fmt.Sprintf("%.0f%% of one CPU taken from %s (pid %d): CFS quota %dµs per %dµs in cgroup %s", f.Load*100, t.Node, pid, quota, period, cu.Cgroup)
	return nil
}

// injectCPUStress creates the fault's cgroup with its quota and moves the
// node's process into it.
func injectCPUStress(cu *CPUUndo) error {
	op := "cpuStress on " + cu.Node
	if !cu.Proc.Alive() {
		return engine.E(engine.KindNotFound, op, fmt.Errorf("pid %d is gone", cu.Proc.Pid))
	}
	parent := filepath.Dir(cu.Cgroup)
	if err := os.MkdirAll(cu.Cgroup, 0o755); err != nil {
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("create cgroup: %w; hint: the cgroup cpu controller must be writable (run as root)", err))
	}
	if cu.V2 {
		// The controller must be enabled on the way down for cpu.max to
		// exist in the fault's cgroup.
		for _, dir := range []string{filepath.Dir(parent), parent} {
			if err := writeCgroupFile(dir, "cgroup.subtree_control", "+cpu"); err != nil {
				return engine.E(engine.KindUnavailable, op, err)
			}
		}
		if err := writeCgroupFile(cu.Cgroup, "cpu.max", fmt.Sprintf("%d %d", cu.QuotaUS, cu.PeriodUS)); err != nil {
			return engine.E(engine.KindUnavailable, op, err)
		}
	} else {
		if err := writeCgroupFile(cu.Cgroup, "cpu.cfs_period_us", strconv.FormatInt(cu.PeriodUS, 10)); err != nil {
			return engine.E(engine.KindUnavailable, op, err)
		}
		if err := writeCgroupFile(cu.Cgroup, "cpu.cfs_quota_us", strconv.FormatInt(cu.QuotaUS, 10)); err != nil {
			return engine.E(engine.KindUnavailable, op, err)
		}
	}
	if err := writeCgroupFile(cu.Cgroup, "cgroup.procs", strconv.Itoa(cu.Proc.Pid)); err != nil {
		return engine.E(engine.KindUnavailable, op, err)
	}
	return nil
}

// recoverCPUStress moves every process of the fault's cgroup back to where
// the node's process came from and removes the cgroup. Idempotent: a
// cgroup already gone is recovered; a process gone (killed, or the run's
// cluster ended with a crash) leaves nothing to move.
func recoverCPUStress(ctx context.Context, cu *CPUUndo) error {
	if cu == nil {
		return nil
	}
	return releaseCgroup(ctx, "cpuStress on "+cu.Node, cu.Cgroup, cu.From)
}

// releaseCgroup moves every process of a fault's cgroup back to from (or
// to the hierarchy's root when from is gone) and removes the cgroup, and
// its parent once no fault uses it. A cgroup already gone is released.
func releaseCgroup(ctx context.Context, what, cgroup, from string) error {
	if cgroup == "" {
		return nil
	}
	if _, err := os.Stat(cgroup); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	back := from
	if _, err := os.Stat(filepath.Join(back, "cgroup.procs")); err != nil {
		back = filepath.Dir(filepath.Dir(cgroup)) // the hierarchy's root
	}
	var last error
	for range 50 {
		pids, err := cgroupPids(cgroup)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			last = err
		}
		for _, pid := range pids {
			if err := writeCgroupFile(back, "cgroup.procs", strconv.Itoa(pid)); err != nil && (engine.Proc{Pid: pid}).Alive() {
				last = err
			}
		}
		err = os.Remove(cgroup)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(filepath.Dir(cgroup)) // the parent, once no fault uses it
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return engine.E(engine.KindCanceled, "recover "+what, errors.Join(ctx.Err(), last))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return engine.E(engine.KindUnavailable, "recover "+what, fmt.Errorf("cgroup %s not removed: %w", cgroup, last))
}

// confirmCPUStress checks that the quota is in force on the node's process
// and measures the CPU it used over one second, with the periods the
// kernel throttled it in.
func confirmCPUStress(ctx context.Context, cu *CPUUndo) engine.ConfirmResult {
	if cu == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no cgroup recorded"}
	}
	pids, err := cgroupPids(cu.Cgroup)
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: "reading the fault's cgroup: " + err.Error()}
	}
	if !slices.Contains(pids, cu.Proc.Pid) {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("pid %d is not in cgroup %s (it holds %v)", cu.Proc.Pid, cu.Cgroup, pids)}
	}
	quota, period, err := readQuota(cu)
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	if quota != cu.QuotaUS || period != cu.PeriodUS {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("cgroup %s has quota %dµs per %dµs, want %d per %d", cu.Cgroup, quota, period, cu.QuotaUS, cu.PeriodUS)}
	}
	allowed := float64(quota) / float64(period)
	cpu0, err := procCPUTime(cu.Proc.Pid)
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	st0, _ := readCPUStat(cu.Cgroup)
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "canceled while measuring"}
	case <-time.After(time.Second):
	}
	cpu1, err := procCPUTime(cu.Proc.Pid)
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	st1, _ := readCPUStat(cu.Cgroup)
	used := float64(cpu1-cpu0) / float64(time.Since(t0))
	m := fmt.Sprintf("%s (pid %d) held to %.0f%% of one CPU (cgroup %s, quota %dµs per %dµs): it used %.0f%% of a CPU over %s, throttled in %d of %d periods",
		cu.Node, cu.Proc.Pid, allowed*100, cu.Cgroup, quota, period, used*100, time.Since(t0).Round(10*time.Millisecond),
		st1["nr_throttled"]-st0["nr_throttled"], st1["nr_periods"]-st0["nr_periods"])
	// The kernel enforces the quota per period; one second of samples
	// may overshoot it by a period's worth.
	if used > allowed*1.15+0.05 {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + "; more than the quota allows"}
	}
	return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
}

func readQuota(cu *CPUUndo) (quota, period int64, err error) {
	if cu.V2 {
		b, err := os.ReadFile(filepath.Join(cu.Cgroup, "cpu.max"))
		if err != nil {
			return 0, 0, err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 || f[0] == "max" {
			return -1, 0, nil
		}
		quota, err1 := strconv.ParseInt(f[0], 10, 64)
		period, err2 := strconv.ParseInt(f[1], 10, 64)
		return quota, period, errors.Join(err1, err2)
	}
	q, err1 := readInt(filepath.Join(cu.Cgroup, "cpu.cfs_quota_us"))
	p, err2 := readInt(filepath.Join(cu.Cgroup, "cpu.cfs_period_us"))
	return q, p, errors.Join(err1, err2)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// readCPUStat reads a cgroup's cpu.stat counters (nr_periods,
// nr_throttled, ...).
func readCPUStat(dir string) (map[string]int64, error) {
	st, err := readCgroupStat(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return map[string]int64{}, err
	}
	return st, nil
}

// cgroupPids lists the processes of a cgroup.
func cgroupPids(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// procCPUTime is the CPU time every thread of pid has run, from
// /proc/PID/task/*/schedstat (nanoseconds, no clock-tick rounding).
func procCPUTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("threads of pid %d: %w", pid, err)
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				total += n
			}
		}
	}
	return time.Duration(total), nil
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}
