package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Reaped is one thing the reaper undid (or found already gone).
type Reaped struct {
	Run    string `json:"run"`
	What   string `json:"what"` // "fault" or "process"
	ID     string `json:"id,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Target string `json:"target,omitempty"`
	// Result is "recovered", "killed", "gone" or "failed: ...".
	Result string `json:"result"`
}

// String is one line for the terminal: run, what, target, result.
func (r Reaped) String() string {
	s := fmt.Sprintf("run %s: %s", r.Run, r.What)
	if r.Kind != "" {
		s += " " + r.Kind
	}
	if r.Target != "" {
		s += " on " + r.Target
	}
	if r.ID != "" {
		s += " (" + r.ID + ")"
	}
	return s + ": " + r.Result
}

// Reap recovers what crashed runs left behind in dataDir: for every journal
// that is not closed and whose owner no longer holds its lock, it recovers
// every outstanding fault with the injector for its kind and kills every
// orphaned child process it recorded, then marks the journal reaped and
// archives it. A journal whose owner still runs is left alone. Reap is what
// `run`, `gate`, `demo` and `serve` call before they start.
func Reap(ctx context.Context, dataDir string, injectors map[FaultKind]Injector, log *slog.Logger) ([]Reaped, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	paths, err := filepath.Glob(filepath.Join(JournalDir(dataDir), "*.journal"))
	if err != nil {
		return nil, E(KindInternal, "reap", err)
	}
	sort.Strings(paths)
	var out []Reaped
	var errs []error
	for _, p := range paths {
		r, err := reapOne(ctx, p, injectors, log)
		out = append(out, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

func reapOne(ctx context.Context, path string, injectors map[FaultKind]Injector, log *slog.Logger) ([]Reaped, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, E(KindUnavailable, "reap", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, nil // the owner is alive and holds the lock
	}
	recs, err := ReadJournal(path)
	if err != nil {
		return nil, err
	}
	o := Summarize(recs)
	if o.Closed {
		archive(path)
		return nil, nil
	}
	run := o.Run
	if run == "" {
		run = strings.TrimSuffix(filepath.Base(path), ".journal")
	}
	var out []Reaped
	var errs []error
	// Undo in reverse order of application.
	for i := len(o.Faults) - 1; i >= 0; i-- {
		a := o.Faults[i]
		r := Reaped{Run: run, What: "fault", ID: a.ID, Kind: a.Kind.String(), Target: a.Target.Name()}
		inj := injectors[a.Kind]
		if inj == nil {
			r.Result = "failed: no injector for " + a.Kind.String()
			errs = append(errs, E(KindInternal, "reap", fmt.Errorf("%s: no injector for %s", a.ID, a.Kind)))
		} else {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := inj.Recover(rctx, a)
			cancel()
			if err != nil {
				r.Result = "failed: " + err.Error()
				errs = append(errs, E(KindOf(err), "reap "+a.ID, err))
			} else {
				r.Result = "recovered"
			}
		}
		out = append(out, r)
		log.Warn("reaped a fault left by a crashed run", "run", run, "fault", a.ID, "kind", a.Kind, "target", a.Target.Name(), "result", r.Result)
	}
	for _, pn := range o.Procs {
		r := Reaped{Run: run, What: "process", ID: fmt.Sprint(pn.Proc.Pid), Target: pn.Note}
		if !pn.Proc.Alive() {
			r.Result = "gone"
		} else {
			pn.Proc.Signal(syscall.SIGCONT)
			if err := pn.Proc.Signal(syscall.SIGKILL); err != nil && KindOf(err) != KindNotFound {
				r.Result = "failed: " + err.Error()
				errs = append(errs, err)
			} else {
				r.Result = "killed"
			}
		}
		out = append(out, r)
		log.Warn("reaped a process left by a crashed run", "run", run, "pid", pn.Proc.Pid, "note", pn.Note, "result", r.Result)
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	me, _ := ProcOf(os.Getpid())
	line := fmt.Sprintf(`{"v":%d,"t":%q,"type":%q,"run":%q,"owner":{"pid":%d,"start_time":%d}}`+"\n",
		JournalVersion, time.Now().UTC().Format(time.RFC3339Nano), RecReaped, run, me.Pid, me.StartTime)
	if _, err := f.WriteString(line); err == nil {
		f.Sync()
	}
	archive(path)
	return out, nil
}

// ActiveRun is a run that currently holds its journal's lock.
type ActiveRun struct {
	Run   string `json:"run"`
	Name  string `json:"name"`
	Owner Proc   `json:"owner"`
}

// ActiveRuns lists the live runs in dataDir.
func ActiveRuns(dataDir string) ([]ActiveRun, error) {
	paths, err := filepath.Glob(filepath.Join(JournalDir(dataDir), "*.journal"))
	if err != nil {
		return nil, E(KindInternal, "active runs", err)
	}
	var out []ActiveRun
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		lockErr := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		f.Close() // releases a shared lock we may have taken
		if lockErr == nil {
			continue // nobody holds it: not live
		}
		recs, err := ReadJournal(p)
		if err != nil {
			continue
		}
		o := Summarize(recs)
		out = append(out, ActiveRun{Run: o.Run, Name: o.Name, Owner: o.Owner})
	}
	return out, nil
}

// Control files of a run, next to its journal.
func abortFile(dataDir, run string) string { return filepath.Join(JournalDir(dataDir), run+".abort") }
func pauseFile(dataDir, run string) string { return filepath.Join(JournalDir(dataDir), run+".pause") }

// RequestAbort asks live runs in dataDir to abort: it writes the control
// file DATA/journal/RUN.abort holding the reason, which the run polls
// (every 100 ms) during every phase; the run then recovers every applied
// fault and ends with an aborted result. An empty runID aborts every live
// run. It returns the runs it signalled.
func RequestAbort(dataDir, runID, reason string) ([]ActiveRun, error) {
	runs, err := ActiveRuns(dataDir)
	if err != nil {
		return nil, err
	}
	var out []ActiveRun
	for _, r := range runs {
		if runID != "" && r.Run != runID {
			continue
		}
		if err := writeSynced(abortFile(dataDir, r.Run), []byte(reason+"\n")); err != nil {
			return out, E(KindUnavailable, "abort", err)
		}
		out = append(out, r)
	}
	if runID != "" && len(out) == 0 {
		return nil, E(KindNotFound, "abort", fmt.Errorf("no live run %q in %s", runID, dataDir))
	}
	return out, nil
}

// AbortPoll is how often a run looks for its abort control file.
const AbortPoll = 100 * time.Millisecond

// WatchAbort polls the abort control file of runID (written by
// RequestAbort) every AbortPoll until ctx ends or stop is called, and calls
// onAbort once with the reason when it appears. stop waits for the poller
// and removes the control file. A run that spans several journaled parts
// (a game day's steps) uses it to stay abortable between them.
func WatchAbort(ctx context.Context, dataDir, runID string, onAbort func(reason string)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(AbortPoll)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(abortFile(dataDir, runID)); err == nil {
				reason := string(trimNL(b))
				if reason == "" {
					reason = "chaosgate abort"
				}
				onAbort(reason)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		os.Remove(abortFile(dataDir, runID))
		os.Remove(pauseFile(dataDir, runID))
	}
}

func writeSynced(p string, data []byte) error {
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// RequestPause pauses (or resumes) the fault-duration clock of a live run
// through the control file DATA/journal/RUN.pause: while it exists the
// observe phase does not count down (faults stay applied).
func RequestPause(dataDir, runID string, pause bool) error {
	runs, err := ActiveRuns(dataDir)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.Run != runID {
			continue
		}
		if !pause {
			if err := os.Remove(pauseFile(dataDir, runID)); err != nil && !os.IsNotExist(err) {
				return E(KindUnavailable, "resume", err)
			}
			return nil
		}
		if err := writeSynced(pauseFile(dataDir, runID), []byte("paused\n")); err != nil {
			return E(KindUnavailable, "pause", err)
		}
		return nil
	}
	return E(KindNotFound, "pause", fmt.Errorf("no live run %q in %s", runID, dataDir))
}
