package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/chaosgate/chaosgate/engine"
)

// A memoryStress takes memory from a node the way a stressor in a pod
// does: the node moves into a memory cgroup of its own, limited to the
// fault's limit (the pod's limit), and the fault's size of that limit is
// taken by tmpfs pages written from inside the cgroup — charged to it and,
// with no swap, never reclaimed — so the node is left with limit − size of
// new memory before the kernel's OOM killer ends it. The node's pages from
// before the fault stay charged where they were (cgroup v1 no longer moves
// charges; v2 never did), so the limit bounds what the node takes during
// the fault. Recovery deletes the tmpfs file, moves the node back and
// removes the cgroup; all of it is in the undo, so a crashed run's reaper
// does the same.

// shmDir is where the taken memory lives (a tmpfs on Linux).
const shmDir = "/dev/shm"

// MemoryUndo is what a memoryStress changed.
type MemoryUndo struct {
	Node string      `json:"node"`
	Proc engine.Proc `json:"proc"`
	// Cgroup is the fault's memory cgroup, From the node's before.
	Cgroup string `json:"cgroup"`
	From   string `json:"from"`
	V2     bool   `json:"v2,omitempty"`
	// File holds the taken memory (tmpfs).
	File string `json:"file"`
	// SizeBytes is the memory taken; LimitBytes the cgroup's limit.
	SizeBytes  int64 `json:"size_bytes"`
	LimitBytes int64 `json:"limit_bytes"`
}

func mib(b int64) string { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }

// prepareMemoryStress records the node, the cgroups and the file, and
// refuses a fault this machine cannot afford.
func (in *Injector) prepareMemoryStress(t engine.Target, f engine.Fault, a *engine.Applied, u *Undo) error {
	op := "memoryStress on " + t.Name()
	if in.cfg.Nodes == nil {
		return engine.E(engine.KindInvalid, "prepare", errors.New("no node supervisor configured"))
	}
	if t.Node == "" {
		return engine.E(engine.KindInvalid, "prepare", errors.New("memoryStress needs a node"))
	}
	limit := f.MemoryLimit
	if limit == 0 {
		limit = f.MemoryBytes + 64<<20
	}
	if f.MemoryBytes <= 0 || limit <= f.MemoryBytes {
		return engine.E(engine.KindInvalid, op, fmt.Errorf("size %d bytes and limit %d bytes: the limit must be above the size", f.MemoryBytes, limit))
	}
	if avail, err := memAvailable(); err == nil && limit > avail/2 {
		return engine.E(engine.KindInvalid, op, fmt.Errorf("limit %s is more than half of this machine's available memory (%s); hint: a smaller size and limit", mib(limit), mib(avail)))
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(shmDir, &st); err != nil {
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("%s: %w; hint: a local memoryStress writes its memory to a tmpfs at %s", shmDir, err, shmDir))
	}
	if free := int64(st.Bavail) * st.Bsize; free < f.MemoryBytes {
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("%s has %s free, the fault takes %s", shmDir, mib(free), mib(f.MemoryBytes)))
	}
	pid, err := in.cfg.Nodes.Pid(t.Arm, t.Node)
	if err != nil {
		return engine.E(engine.KindUnavailable, "pid of "+t.Name(), err)
	}
	p, err := engine.ProcOf(pid)
	if err != nil {
		return err
	}
	h, err := findHierarchy("memory")
	if err != nil {
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("%w; hint: a local memoryStress needs the cgroup memory controller mounted and writable (root, or a delegated cgroup)", err))
	}
	from, err := h.cgroupOf(pid)
	if err != nil {
		return engine.E(engine.KindUnavailable, op, err)
	}
	name := unsafeCgroupName.ReplaceAllString(f.ID, "_")
	mu := &MemoryUndo{Node: t.Node, Proc: p, From: from, V2: h.v2, SizeBytes: f.MemoryBytes, LimitBytes: limit,
		Cgroup: filepath.Join(h.mount, cgroupParent, name), File: filepath.Join(shmDir, "chaosgate-"+name)}
	u.Memory = mu
	u.Node, u.Proc = t.Node, &p
	a.Affected = []string{t.Node}
	text := f.MemoryText
	if text == "" {
		text = mib(f.MemoryBytes)
	}
	a.Detail = fmt.Sprintf("%s taken from %s (pid %d) under a %s memory limit (cgroup %s, tmpfs %s): the node may take %s of new memory",
		text, t.Node, pid, mib(limit), mu.Cgroup, mu.File, mib(limit-f.MemoryBytes))
	return nil
}

// injectMemoryStress creates the limited cgroup, moves the node into it
// and writes the taken memory from inside it.
func injectMemoryStress(ctx context.Context, mu *MemoryUndo) error {
	op := "memoryStress on " + mu.Node
	if !mu.Proc.Alive() {
		return engine.E(engine.KindNotFound, op, fmt.Errorf("pid %d is gone", mu.Proc.Pid))
	}
	parent := filepath.Dir(mu.Cgroup)
	if err := os.MkdirAll(mu.Cgroup, 0o755); err != nil {
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("create cgroup: %w; hint: the cgroup memory controller must be writable (run as root)", err))
	}
	limit := strconv.FormatInt(mu.LimitBytes, 10)
	if mu.V2 {
		for _, dir := range []string{filepath.Dir(parent), parent} {
			if err := writeCgroupFile(dir, "cgroup.subtree_control", "+memory"); err != nil {
				return engine.E(engine.KindUnavailable, op, err)
			}
		}
		if err := writeCgroupFile(mu.Cgroup, "memory.max", limit); err != nil {
			return engine.E(engine.KindUnavailable, op, err)
		}
		_ = writeCgroupFile(mu.Cgroup, "memory.swap.max", "0") // no swap to escape to, where there is swap
	} else {
		if err := writeCgroupFile(mu.Cgroup, "memory.limit_in_bytes", limit); err != nil {
			return engine.E(engine.KindUnavailable, op, err)
		}
	}
	if err := writeCgroupFile(mu.Cgroup, "cgroup.procs", strconv.Itoa(mu.Proc.Pid)); err != nil {
		return engine.E(engine.KindUnavailable, op, err)
	}
	if fi, err := os.Stat(mu.File); err == nil && fi.Size() >= mu.SizeBytes {
		return nil // applied already
	}
	// A shell joins the cgroup, then becomes dd: the pages it writes are
	// charged to the cgroup and stay charged after it exits.
	cmd := exec.CommandContext(ctx, "sh", "-c", `echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=1M count="$3" iflag=count_bytes status=none`,
		"sh", mu.Cgroup, mu.File, strconv.FormatInt(mu.SizeBytes, 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(mu.File)
		return engine.E(engine.KindUnavailable, op, fmt.Errorf("writing %s of tmpfs inside the cgroup: %v: %s (a limit too close to the size leaves no room for the writer)", mib(mu.SizeBytes), err, strings.TrimSpace(string(out))))
	}
	return nil
}

// recoverMemoryStress frees the taken memory and releases the cgroup.
func recoverMemoryStress(ctx context.Context, mu *MemoryUndo) error {
	if mu == nil {
		return nil
	}
	if mu.File != "" {
		if err := os.Remove(mu.File); err != nil && !errors.Is(err, os.ErrNotExist) {
			return engine.E(engine.KindUnavailable, "recover memoryStress on "+mu.Node, err)
		}
	}
	return releaseCgroup(ctx, "memoryStress on "+mu.Node, mu.Cgroup, mu.From)
}

// confirmMemoryStress reads back the limit, the taken memory charged to
// the cgroup and where the node is.
func confirmMemoryStress(mu *MemoryUndo) engine.ConfirmResult {
	if mu == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no cgroup recorded"}
	}
	stat, err := readCgroupStat(filepath.Join(mu.Cgroup, "memory.stat"))
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: "reading the fault's cgroup: " + err.Error()}
	}
	limitFile, usageFile, hitsFile := "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.failcnt"
	if mu.V2 {
		limitFile, usageFile, hitsFile = "memory.max", "memory.current", ""
	}
	limit, _ := readInt(filepath.Join(mu.Cgroup, limitFile))
	usage, _ := readInt(filepath.Join(mu.Cgroup, usageFile))
	var hits int64
	if hitsFile != "" {
		hits, _ = readInt(filepath.Join(mu.Cgroup, hitsFile))
	} else if ev, err := readCgroupStat(filepath.Join(mu.Cgroup, "memory.events")); err == nil {
		hits = ev["max"]
	}
	shmem := stat["shmem"]
	pids, _ := cgroupPids(mu.Cgroup)
	m := fmt.Sprintf("%s under a %s limit (cgroup %s): %s of tmpfs charged to it, usage %s, the limit reached %d times",
		mu.Node, mib(limit), mu.Cgroup, mib(shmem), mib(usage), hits)
	switch {
	case limit != mu.LimitBytes:
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + fmt.Sprintf("; the limit is %d bytes, want %d", limit, mu.LimitBytes)}
	case float64(shmem) < 0.95*float64(mu.SizeBytes):
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + fmt.Sprintf("; want %s taken", mib(mu.SizeBytes))}
	case !slices.Contains(pids, mu.Proc.Pid) && mu.Proc.Alive():
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + fmt.Sprintf("; pid %d is not in the cgroup", mu.Proc.Pid)}
	case !mu.Proc.Alive():
		// The limit did what a pod's does: the node outgrew what was left.
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m + fmt.Sprintf("; pid %d is gone (killed at the limit)", mu.Proc.Pid)}
	}
	return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m + fmt.Sprintf("; pid %d in it with %s left", mu.Proc.Pid, mib(mu.LimitBytes-mu.SizeBytes))}
}

// readCgroupStat reads a flat "key value" cgroup file (memory.stat).
func readCgroupStat(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// memAvailable is /proc/meminfo's MemAvailable in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}
