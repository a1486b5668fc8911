package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
)

// RunsSubdir is where, under the data directory, run records and their
// events files live.
var RunsSubdir = filepath.Join("serve", "runs")

// eventsPath is the events file of run id: one JSON event per line,
// appended as the run goes.
func (s *runStore) eventsPath(id string) string { return filepath.Join(s.dir, id+".events.jsonl") }

// attachEvents makes live append every event to the run's events file. A
// file that cannot be created leaves the run without one: serve then
// shows it from its record only.
func (s *runStore) attachEvents(live *Live, id string) {
	f, err := os.OpenFile(s.eventsPath(id), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	live.mu.Lock()
	live.sink = f
	live.mu.Unlock()
}

// maxEventLine bounds one line of an events file.
const maxEventLine = 1 << 20

// readEvents returns the complete events of run id's events file from
// byte offset on, and the offset after the last complete line. A line
// that does not decode is skipped; a missing file has no events.
func (s *runStore) readEvents(id string, offset int64) ([]LiveEvent, int64, error) {
	if !validID(id) {
		return nil, offset, errNotFound
	}
	f, err := os.Open(s.eventsPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, offset, nil
	}
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, err
	}
	return decodeEvents(f, offset)
}

// decodeEvents reads JSON event lines from r, which starts at byte offset
// of its file; a last line without its newline (still being written) is
// left for the next read.
func decodeEvents(r io.Reader, offset int64) ([]LiveEvent, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []LiveEvent
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: read it whole, within bounds.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(long) <= maxEventLine {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
			if err == nil && len(line) > maxEventLine {
				err = fmt.Errorf("a line of %d bytes, over the %d-byte bound", len(line), maxEventLine)
			}
		}
		if err != nil {
			// io.EOF: an incomplete last line waits; anything else (a line
			// over maxEventLine) stops here.
			if errors.Is(err, io.EOF) {
				return out, offset, nil
			}
			return out, offset, fmt.Errorf("events file at byte %d: %w", offset, err)
		}
		offset += int64(len(line))
		var ev LiveEvent
		if json.Unmarshal(bytes.TrimSpace(line), &ev) == nil && ev.Kind != "" {
			out = append(out, ev)
		}
	}
}

// lastState is the last live state published in run id's events file.
func (s *runStore) lastState(id string) (LiveState, []LiveEvent) {
	evs, _, _ := s.readEvents(id, 0)
	var st LiveState
	for _, e := range evs {
		if e.State != nil {
			st = *e.State
		}
	}
	return st, evs
}

// selfOwner is this process as a run's owner.
func selfOwner() *Owner {
	host, _ := os.Hostname()
	start, _ := procStart(os.Getpid())
	return &Owner{PID: os.Getpid(), Host: host, ProcStart: start}
}

// gone reports whether the owner process has ended. A process on another
// host cannot be checked and is taken as alive.
func (o *Owner) gone() bool {
	if o == nil || o.PID <= 0 {
		return true
	}
	if host, _ := os.Hostname(); o.Host != "" && host != "" && o.Host != host {
		return false
	}
	if !processAlive(o.PID) {
		return true
	}
	if o.ProcStart != 0 {
		if start, ok := procStart(o.PID); ok && start != o.ProcStart {
			return true // the pid was reused by another process
		}
	}
	return false
}

// procStart is the start time of process pid in clock ticks since boot
// (field 22 of /proc/PID/stat); false where /proc is not available.
func procStart(pid int) (uint64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// RunMeta describes a run a command records (see RecordRun).
type RunMeta struct {
	// Scenario is the scenario's name, Revision the evidence subject.
	Scenario, Revision string
	// Trigger is "cli:<command>" or "ci:<command>" (see CommandTrigger).
	Trigger string
}

// CommandTrigger is the trigger of a run started by command: "ci:<command>"
// under a CI system (the CI, GITHUB_ACTIONS, GITLAB_CI, BUILDKITE,
// JENKINS_URL or TF_BUILD variable is set), "cli:<command>" otherwise.
func CommandTrigger(command string, getenv func(string) string) string {
	for _, v := range []string{"GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD"} {
		if getenv(v) != "" {
			return "ci:" + command
		}
	}
	if b, err := strconv.ParseBool(getenv("CI")); err == nil && b {
		return "ci:" + command
	}
	return "cli:" + command
}

// RunRecorder keeps the run record of a run a command runs in its own
// process (demo, run, gate): the same record and events file serve keeps
// for its own runs, so `chaosgate serve` on the same data directory lists
// the run, shows it live while it runs, and keeps its page afterwards.
type RunRecorder struct {
	store *runStore
	rec   RunRecord
	live  *Live
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	done  *RunRecord
	err   error
}

// RecordRun writes the record of a run starting now under dataDir, with
// this process as its owner, and returns its recorder. Finish must be
// called when the run ends.
func RecordRun(dataDir string, m RunMeta) (*RunRecorder, error) {
	store := &runStore{dir: filepath.Join(dataDir, RunsSubdir)}
	if err := os.MkdirAll(store.dir, 0o700); err != nil {
		return nil, fmt.Errorf("run record: %w", err)
	}
	kind, _, _ := strings.Cut(m.Trigger, ":")
	if kind == "" {
		kind = "cli"
	}
	now := time.Now()
	rec := RunRecord{ID: newRunID(kind, now), Scenario: m.Scenario, Revision: m.Revision, Trigger: m.Trigger,
		Status: StatusRunning, Started: now, Owner: selfOwner()}
	if err := store.put(&rec); err != nil {
		return nil, fmt.Errorf("run record: %w", err)
	}
	r := &RunRecorder{store: store, rec: rec, live: newLive(time.Now), stop: make(chan struct{})}
	store.attachEvents(r.live, rec.ID)
	r.live.Emit(LiveEvent{Kind: "info", Msg: fmt.Sprintf("run %s started: %s (%s)", rec.ID, rec.Scenario, rec.Trigger)})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		pollState(r.live, r.stop)
	}()
	return r, nil
}

// ID is the run's id (use it as the run id of the evidence record, so the
// explorer's entry links to the run).
func (r *RunRecorder) ID() string { return r.rec.ID }

// Live is the run's event stream: publish the run's progress on it.
func (r *RunRecorder) Live() *Live { return r.live }

// Finish ends the run with its result (nil when the run produced none)
// and the error it ended with, saves the finished record and returns it.
// Later calls return the first call's answer.
func (r *RunRecorder) Finish(res *RunResult, runErr error) (*RunRecord, error) {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
		done := finishRecord(r.rec, res, runErr, "", time.Now())
		done.Events = r.live.end(fmt.Sprintf("run %s %s %s", done.ID, done.Status, done.Verdict()))
		r.err = r.store.put(&done)
		r.live.close()
		r.done = &done
	})
	return r.done, r.err
}

// LiveEventOf is the live event (server-sent events, the run record) of
// a run's progress event.
func LiveEventOf(ev engine.Event) LiveEvent {
	kind := "info"
	if ev.Kind != 0 {
		kind = ev.Kind.String()
	}
	return LiveEvent{T: ev.T, Kind: kind, Phase: ev.Phase, Weight: ev.Weight, Experiment: ev.Experiment, Fault: ev.Fault, Msg: ev.Msg}
}

// GameDayState is the live state of a game day's snapshot.
func GameDayState(s gameday.Snapshot) LiveState { return stateOf(s) }

// tailPoll is how often a followed events file is read again.
const tailPoll = 250 * time.Millisecond

// eventTail follows the events file of a run another process runs.
type eventTail struct {
	store  *runStore
	id     string
	after  int
	offset int64
}

// follow sends every event after t.after as the file grows, until the
// "end" event, until the run's record is no longer running (its owner
// finished or is gone: a final "end" event says so), or until ctx or
// base ends. keepAlive is called every 15 s of silence; a false answer
// from send or keepAlive stops.
func (t *eventTail) follow(ctx, base interface{ Done() <-chan struct{} }, send func(LiveEvent) bool, keepAlive func() bool) {
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	quiet := time.Now()
	lastSeq := t.after
	for {
		evs, off, err := t.store.readEvents(t.id, t.offset)
		t.offset = off
		for _, e := range evs {
			if e.Seq <= lastSeq {
				continue
			}
			lastSeq = e.Seq
			quiet = time.Now()
			if !send(e) || e.Kind == "end" {
				return
			}
		}
		if err != nil {
			return
		}
		if len(evs) == 0 {
			// Nothing new: has the run ended without its end event?
			rec, gerr := t.store.get(t.id)
			if gerr != nil {
				return
			}
			if rec.Status != StatusRunning || rec.Owner.gone() {
				if evs, _, _ := t.store.readEvents(t.id, t.offset); len(evs) > 0 {
					continue // the last events landed meanwhile
				}
				send(LiveEvent{Seq: lastSeq + 1, T: time.Now(), Kind: "end", Msg: fmt.Sprintf("run %s %s %s", rec.ID, rec.Status, rec.Verdict())})
				return
			}
			if time.Since(quiet) > 15*time.Second {
				if !keepAlive() {
					return
				}
				quiet = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-base.Done():
			return
		case <-tick.C:
		}
	}
}

// liveState is the live state of running run id: from serve's own run,
// or from the events file of another process's run.
func (s *Server) liveState(id string) LiveState {
	if cur := s.current(); cur != nil && cur.rec.ID == id {
		return cur.live.State()
	}
	st, _ := s.runs.lastState(id)
	return st
}

// runEvents are the events of run id: its events file when it has one
// (complete, and current while the run is live), else the record's.
func (s *Server) runEvents(rec *RunRecord) []LiveEvent {
	evs, _, err := s.runs.readEvents(rec.ID, 0)
	if err != nil || len(evs) == 0 {
		return rec.Events
	}
	return evs
}
