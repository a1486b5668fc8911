package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Proc identifies a process across pid reuse: its pid and its start time
// (clock ticks since boot, /proc/PID/stat field 22).
type Proc struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

// ProcStat returns a process's state letter (R, S, D, T, t, Z, X) and its
// start time from /proc/PID/stat. It fails with KindNotFound when the
// process does not exist.
func ProcStat(pid int) (state byte, start uint64, err error) {
	if pid <= 0 {
		return 0, 0, E(KindInvalid, "proc stat", fmt.Errorf("bad pid %d", pid))
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, 0, E(KindNotFound, "proc stat", fmt.Errorf("no process %d", pid))
		}
		return 0, 0, E(KindUnavailable, "proc stat", err)
	}
	// The command name is in parentheses and may hold spaces: parse after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, E(KindInternal, "proc stat", fmt.Errorf("malformed /proc/%d/stat", pid))
	}
	fields := bytes.Fields(b[i+2:])
	// fields[0] is field 3 (state); start time is field 22 → fields[19].
	if len(fields) < 20 {
		return 0, 0, E(KindInternal, "proc stat", fmt.Errorf("short /proc/%d/stat", pid))
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, E(KindInternal, "proc stat", err)
	}
	return fields[0][0], start, nil
}

// ProcOf returns the Proc of a running pid.
func ProcOf(pid int) (Proc, error) {
	_, st, err := ProcStat(pid)
	if err != nil {
		return Proc{}, err
	}
	return Proc{Pid: pid, StartTime: st}, nil
}

// Alive reports whether the process still exists and is the same process
// (same start time). A zombie counts as gone.
func (p Proc) Alive() bool {
	state, st, err := ProcStat(p.Pid)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	return p.StartTime == 0 || st == p.StartTime
}

// Signal sends sig to the process only when it is still the same process.
// It returns KindNotFound when the process is gone or was replaced.
func (p Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return E(KindNotFound, "signal", fmt.Errorf("process %d is gone", p.Pid))
	}
	if err := syscall.Kill(p.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return E(KindNotFound, "signal", fmt.Errorf("process %d is gone", p.Pid))
		}
		return E(KindUnavailable, "signal", err)
	}
	return nil
}
