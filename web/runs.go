package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/scenarios"
)

// Run statuses.
const (
	StatusRunning     = "running"
	StatusFinished    = "finished" // judged: the report carries a verdict
	StatusAborted     = "aborted"
	StatusInterrupted = "interrupted"
	StatusError       = "error"
)

// RunRecord is one run, started by serve or by a command (demo, run,
// gate), as listed by the API and kept in DATA/serve/runs/ID.json; its
// events are also appended, as they happen, to DATA/serve/runs/ID.events.jsonl
// (see docs/run-record.md).
type RunRecord struct {
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	Revision string `json:"revision,omitempty"`
	// Trigger is what started the run: "api:<token>", "ui:<token>",
	// "schedule:<name>", "cli:<command>" or "ci:<command>" (a command run
	// under a CI system). TriggerKind gives the part before the colon.
	Trigger string `json:"trigger"`
	Status  string `json:"status"`
	// Owner is the process that runs the run: a record left "running" by a
	// process that is gone is shown (and saved) as interrupted.
	Owner    *Owner         `json:"owner,omitempty"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished,omitzero"`
	Report   *report.Report `json:"report,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Error    string         `json:"error,omitempty"`
	Aborted  string         `json:"aborted,omitempty"`
	Failing  []string       `json:"failing_dimensions,omitempty"`
	Events   []LiveEvent    `json:"events,omitempty"`
}

// Owner identifies the process running a run: its pid, the host it runs
// on and, on Linux, its start time in clock ticks since boot (so a reused
// pid is not taken for the run's process).
type Owner struct {
	PID       int    `json:"pid"`
	Host      string `json:"host,omitempty"`
	ProcStart uint64 `json:"proc_start,omitempty"`
}

// TriggerKind is the kind of trigger: api, ui, schedule, cli or ci.
func (r *RunRecord) TriggerKind() string {
	k, _, _ := strings.Cut(r.Trigger, ":")
	return k
}

// Verdict is the run's verdict, or "" when it was not judged.
func (r *RunRecord) Verdict() string {
	if r.Report == nil {
		return ""
	}
	return r.Report.Verdict
}

// RunRequest asks for one run.
type RunRequest struct {
	// ID is the run id chosen by serve.
	ID string
	// Scenario names the document (built-in name, file in the experiments
	// directory, or "upload:NAME").
	Scenario string
	Doc      *scenarios.Document
	// Revision is the evidence subject (empty: the runner's default).
	Revision string
	Trigger  string
	// Upload marks a document that came with the request rather than from
	// the library or the experiments directory: its evidence is recorded
	// under the revision "upload:<run id>", which no gate asks about.
	Upload bool
}

// RunResult is what a finished run reports back.
type RunResult struct {
	Report      report.Report
	Reason      string
	Error       string
	Aborted     string
	Interrupted bool
	Failing     []string
}

// RunFunc executes one run to its end, publishing progress on live. It
// returns the result even with an error when it has one. serve wires the
// local game-day runner (LocalRunner) or the Kubernetes one.
type RunFunc func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error)

// LiveState is the live view of a running run.
type LiveState struct {
	Phase        string             `json:"phase"`
	Weight       int                `json:"weight"`
	ActiveFaults []string           `json:"active_faults"`
	Arms         map[string]ArmLive `json:"arms,omitempty"`
	Steps        []string           `json:"steps,omitempty"`
	ElapsedS     float64            `json:"elapsed_s"`
}

// ArmLive is one arm's recent availability.
type ArmLive struct {
	SuccessRatio float64 `json:"success_ratio"`
	P99MS        float64 `json:"p99_ms"`
	Requests     int64   `json:"requests"`
}

// LiveEvent is one live event of a run, sent over server-sent events.
type LiveEvent struct {
	Seq        int        `json:"seq"`
	T          time.Time  `json:"t"`
	Kind       string     `json:"kind"` // info | phase | fault | verdict | state | end
	Phase      string     `json:"phase,omitempty"`
	Weight     int        `json:"weight,omitempty"`
	Experiment string     `json:"experiment,omitempty"`
	Fault      string     `json:"fault,omitempty"`
	Msg        string     `json:"msg,omitempty"`
	State      *LiveState `json:"state,omitempty"`
}

// maxEvents bounds the events kept per run (live backlog and record).
const maxEvents = 1000

// Live is the event stream and live state of one run. Safe for concurrent
// use.
type Live struct {
	mu      sync.Mutex
	events  []LiveEvent
	seq     int
	subs    map[chan LiveEvent]struct{}
	state   func() LiveState
	last    LiveState
	done    bool
	nowFunc func() time.Time
	// sink, when set, receives every event as one JSON line as it is
	// published (the run's events file, which serve tails for runs of
	// other processes).
	sink io.WriteCloser
}

func newLive(now func() time.Time) *Live {
	return &Live{subs: map[chan LiveEvent]struct{}{}, nowFunc: now}
}

// Emit publishes ev (its Seq and, when zero, T are set here).
func (l *Live) Emit(ev LiveEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.seq++
	ev.Seq = l.seq
	if ev.T.IsZero() {
		ev.T = l.nowFunc()
	}
	if ev.State != nil {
		l.last = *ev.State
	}
	l.events = append(l.events, ev)
	l.writeSinkLocked(ev)
	if len(l.events) > maxEvents {
		l.events = append(l.events[:0:0], l.events[len(l.events)-maxEvents:]...)
	}
	for ch := range l.subs {
		select {
		case ch <- ev:
		default: // a slow reader loses events rather than stalling the run
		}
	}
}

// writeSinkLocked appends ev to the events file. A write that fails drops
// the file (the record keeps the events); the run goes on.
func (l *Live) writeSinkLocked(ev LiveEvent) {
	if l.sink == nil {
		return
	}
	data, err := json.Marshal(ev)
	if err == nil {
		_, err = l.sink.Write(append(data, '\n'))
	}
	if err != nil {
		l.sink.Close()
		l.sink = nil
	}
}

// SetState registers the function polled (every second) for the live
// state; a changed state is published as a "state" event.
func (l *Live) SetState(f func() LiveState) {
	l.mu.Lock()
	l.state = f
	l.mu.Unlock()
}

func (l *Live) poll() {
	l.mu.Lock()
	f, last := l.state, l.last
	l.mu.Unlock()
	if f == nil {
		return
	}
	st := f()
	cmp := st
	cmp.ElapsedS, last.ElapsedS = 0, 0
	if !reflect.DeepEqual(cmp, last) {
		l.Emit(LiveEvent{Kind: "state", Phase: st.Phase, Weight: st.Weight, State: &st})
	}
}

// State returns the last published live state.
func (l *Live) State() LiveState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// subscribe returns the backlog after seq and a channel of later events;
// the channel is closed when the run ends.
func (l *Live) subscribe(after int) ([]LiveEvent, chan LiveEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var back []LiveEvent
	for _, e := range l.events {
		if e.Seq > after {
			back = append(back, e)
		}
	}
	ch := make(chan LiveEvent, 256)
	if l.done {
		close(ch)
		return back, ch
	}
	l.subs[ch] = struct{}{}
	return back, ch
}

func (l *Live) unsubscribe(ch chan LiveEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.subs[ch]; ok {
		delete(l.subs, ch)
		close(ch)
	}
}

// end records the end event without publishing it yet, and returns every
// event kept; close publishes it. In between the run's record is saved, so
// a client that sees the end event finds the finished record.
func (l *Live) end(msg string) []LiveEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	ev := LiveEvent{Seq: l.seq, T: l.nowFunc(), Kind: "end", Msg: msg}
	l.events = append(l.events, ev)
	l.writeSinkLocked(ev)
	l.done = true
	return append([]LiveEvent(nil), l.events...)
}

// close publishes the end event and closes every subscription.
func (l *Live) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.events[len(l.events)-1]
	if l.sink != nil {
		l.sink.Close()
		l.sink = nil
	}
	for ch := range l.subs {
		select {
		case ch <- ev:
		default:
		}
		close(ch)
		delete(l.subs, ch)
	}
}

// ErrBusy is returned when a run is already in progress.
var ErrBusy = errors.New("a run is already in progress")

// runStore keeps run records as JSON files, with an in-memory index of
// every record without its events, so listing reads no file that did not
// change. Records written by other processes (a command's run) are picked
// up when the directory or the file changes.
type runStore struct {
	dir string
	mu  sync.Mutex
	idx map[string]*RunRecord // nil until loaded
	// stamps are the modification time and size of each record file as
	// last read; scanned is when the directory was last listed.
	stamps  map[string]fileStamp
	dirMod  time.Time
	scanned time.Time
}

// fileStamp is what tells a record file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

// rescanEvery bounds how long a change by another process can go unseen
// on a file system whose directory times are coarse.
const rescanEvery = time.Second

func (s *runStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

func (s *runStore) put(r *RunRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(r)
}

func (s *runStore) putLocked(r *RunRecord) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil && len(r.Events) > 0 {
		// Keep the record (and its verdict) even when an event cannot be
		// encoded; say so in the record.
		c := *r
		c.Events = []LiveEvent{{Kind: "info", Msg: "events not kept: " + err.Error()}}
		data, err = json.MarshalIndent(&c, "", "  ")
	}
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path(r.ID), data, 0o600); err != nil {
		return err
	}
	if s.idx != nil {
		c := *r
		c.Events = nil
		s.idx[r.ID] = &c
	}
	return nil
}

func (s *runStore) get(id string) (*RunRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getLocked(id)
}

func (s *runStore) getLocked(id string) (*RunRecord, error) {
	if !validID(id) {
		return nil, errNotFound
	}
	data, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%w: run record %s does not decode: %v", errDamaged, id, err)
	}
	return r, nil
}

// errDamaged marks a stored run record that does not decode.
var errDamaged = errors.New("damaged run record")

// decodeRecord decodes a stored run record. A dimension outcome is written
// by name ("pass"), an unset one as "invalid"; such a record reads back
// with the outcome unset. When decision.Outcome cannot read its own names
// back, the names are turned into their ranks before decoding.
func decodeRecord(data []byte) (*RunRecord, error) {
	var r RunRecord
	err := json.Unmarshal(data, &r)
	if err == nil {
		return &r, nil
	}
	for _, ranks := range []bool{false, true} {
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			return nil, err
		}
		rep, _ := m["report"].(map[string]any)
		steps, _ := rep["steps"].([]any)
		for _, st := range steps {
			stm, _ := st.(map[string]any)
			dims, _ := stm["dimensions"].([]any)
			for _, d := range dims {
				dm, ok := d.(map[string]any)
				if !ok {
					continue
				}
				name, ok := dm["outcome"].(string)
				if !ok {
					continue
				}
				if name == decision.Outcome(0).String() {
					dm["outcome"] = nil
					continue
				}
				if ranks {
					for _, o := range []decision.Outcome{decision.Pass, decision.Inconclusive, decision.Fail} {
						if o.String() == name {
							dm["outcome"] = int(o)
						}
					}
				}
			}
		}
		fixed, merr := json.Marshal(m)
		if merr != nil {
			return nil, err
		}
		r = RunRecord{}
		if json.Unmarshal(fixed, &r) == nil {
			return &r, nil
		}
	}
	return nil, err
}

// list returns every record, newest first, without events. The records
// are shared: callers must not modify them. A record left running by a
// process that is gone is saved as interrupted first.
func (s *runStore) list() ([]*RunRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	for id, r := range s.idx {
		if r.Status == StatusRunning && r.Owner != nil && r.Owner.gone() {
			s.interruptLocked(id, r.Owner)
		}
	}
	out := make([]*RunRecord, 0, len(s.idx))
	for _, r := range s.idx {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// interruptLocked saves run id, whose owner process is gone, as
// interrupted.
func (s *runStore) interruptLocked(id string, o *Owner) {
	full, err := s.getLocked(id)
	if err != nil || full.Status != StatusRunning {
		return
	}
	full.Status = StatusInterrupted
	full.Error = fmt.Sprintf("the process that ran it (pid %d) ended before the run did; the next run on this data directory (or serve's start) reaps the faults it left", o.PID)
	if full.Finished.IsZero() {
		full.Finished = time.Now()
	}
	s.putLocked(full)
}

// refreshLocked brings the index up to date with the directory: new and
// changed record files are read, removed ones dropped.
func (s *runStore) refreshLocked() error {
	st, err := os.Stat(s.dir)
	if err != nil {
		return err
	}
	if s.idx != nil && st.ModTime().Equal(s.dirMod) && time.Since(s.scanned) < rescanEvery {
		return nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	if s.idx == nil {
		s.idx, s.stamps = map[string]*RunRecord{}, map[string]fileStamp{}
	}
	s.dirMod, s.scanned = st.ModTime(), time.Now()
	present := map[string]bool{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || !validID(id) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		present[id] = true
		stamp := fileStamp{mod: info.ModTime(), size: info.Size()}
		if old, ok := s.stamps[id]; ok && old == stamp {
			continue
		}
		data, err := os.ReadFile(s.path(id))
		if err != nil {
			continue
		}
		r, err := decodeRecord(data)
		if err != nil || r.ID != id {
			continue // a half-written or foreign file is not a run
		}
		r.Events = nil
		s.idx[id], s.stamps[id] = r, stamp
	}
	for id := range s.idx {
		if !present[id] {
			delete(s.idx, id)
			delete(s.stamps, id)
		}
	}
	return nil
}

var errNotFound = errors.New("not found")

func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return id[0] != '.'
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, written, fsynced, given mode, renamed over path, and the
// directory fsynced so the rename survives a crash.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// newRunID is a run id: prefix (the starting process: serve, cli, ci),
// the UTC start time and 4 random bytes.
func newRunID(prefix string, now time.Time) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// active is the run in progress.
type active struct {
	rec    *RunRecord
	live   *Live
	cancel context.CancelFunc
	// killed is the kill-switch reason when serve had to cancel the run
	// itself (it was between fault experiments, where no journal polls
	// the abort request).
	killed string
}

// Start begins a run in the background with the server's RunFunc, exactly
// as POST /api/v1/runs does (req.ID is assigned here). Only one run at a
// time: ErrBusy otherwise. `chaosgate demo --ui` style callers use Start
// and Wait to drive a run while the dashboard shows it.
func (s *Server) Start(req RunRequest) (*RunRecord, error) { return s.start(req) }

// Wait blocks until run id has ended (or ctx ends) and returns its record.
func (s *Server) Wait(ctx context.Context, id string) (*RunRecord, error) {
	for {
		s.mu.Lock()
		busy := s.cur != nil && s.cur.rec.ID == id
		s.mu.Unlock()
		if !busy {
			return s.runs.get(id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// start begins req in the background; only one run at a time.
func (s *Server) start(req RunRequest) (*RunRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("server is shutting down")
	}
	if s.cur != nil {
		return nil, fmt.Errorf("%w: %s", ErrBusy, s.cur.rec.ID)
	}
	if err := s.checkTarget(req.Doc); err != nil {
		return nil, err
	}
	now := s.now()
	req.ID = newRunID("serve", now)
	if req.Upload {
		req.Revision = "upload:" + req.ID
	}
	rec := &RunRecord{ID: req.ID, Scenario: req.Scenario, Revision: req.Revision, Trigger: req.Trigger, Status: StatusRunning, Started: now, Owner: selfOwner()}
	if err := s.runs.put(rec); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.base)
	live := newLive(s.now)
	s.runs.attachEvents(live, rec.ID)
	act := &active{rec: rec, live: live, cancel: cancel}
	s.cur = act
	s.metrics.runsStarted.Inc()
	s.wg.Add(2)
	stop := make(chan struct{})
	go func() {
		defer s.wg.Done()
		pollState(live, stop)
	}()
	go func() {
		defer s.wg.Done()
		defer cancel()
		live.Emit(LiveEvent{Kind: "info", Msg: fmt.Sprintf("run %s started: %s (%s)", req.ID, req.Scenario, req.Trigger)})
		res, err := s.opt.Run(ctx, req, live)
		close(stop)
		s.mu.Lock()
		killed := act.killed
		s.mu.Unlock()
		done := finishRecord(*rec, res, err, killed, s.now())
		done.Events = live.end(fmt.Sprintf("run %s %s %s", done.ID, done.Status, done.Verdict()))
		if perr := s.runs.put(&done); perr != nil {
			s.log.Error("saving run record", "run", done.ID, "err", perr)
		}
		s.metrics.runsFinished.WithLabelValues(done.Status, done.Verdict()).Inc()
		s.log.Info("run ended", "run", done.ID, "status", done.Status, "verdict", done.Verdict(), "err", done.Error)
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		live.close()
		if s.opt.OnRunEnd != nil {
			s.opt.OnRunEnd(&done)
		}
	}()
	return rec, nil
}

// pollState publishes the run's live state every second until stop.
func pollState(live *Live, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			live.poll()
		}
	}
}

// finishRecord is rec at the end of its run: the result's report, reason
// and failing dimensions, and the status the run ended in. killed is the
// kill switch's reason when serve had to cancel the run itself.
func finishRecord(rec RunRecord, res *RunResult, err error, killed string, now time.Time) RunRecord {
	done := rec
	done.Finished = now
	done.Status = StatusFinished
	if res != nil {
		r := res.Report
		done.Report, done.Reason, done.Error, done.Aborted, done.Failing = &r, res.Reason, res.Error, res.Aborted, res.Failing
		switch {
		case killed != "" && (res.Interrupted || res.Aborted != "" || res.Error != "" || err != nil || !validVerdict(res.Report.Verdict)):
			// The kill switch stopped it, in whatever phase (setup
			// included): aborted, with the kill switch's reason.
			done.Status, done.Aborted, done.Error = StatusAborted, killed, ""
		case res.Interrupted:
			done.Status = StatusInterrupted
		case res.Aborted != "":
			done.Status = StatusAborted
		case res.Error != "":
			done.Status = StatusError
		}
	}
	if res == nil && killed != "" {
		done.Status, done.Aborted = StatusAborted, killed
	}
	if err != nil && done.Status == StatusFinished {
		done.Status = StatusError
	}
	if err != nil && done.Error == "" && done.Status != StatusAborted {
		done.Error = err.Error()
	}
	if done.Status == StatusFinished && !validVerdict(done.Verdict()) {
		done.Status = StatusError
		if done.Error == "" {
			done.Error = "the run ended without a verdict"
		}
	}
	return done
}

func validVerdict(v string) bool { return v == "promote" || v == "hold" || v == "block" }

// current returns the run in progress, if any.
func (s *Server) current() *active {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// markStale closes records left "running" by a process that died (serve
// or a command): they can never finish. Runs of live processes (a command
// running on the same data directory) stay running.
func (s *Server) markStale() error {
	recs, err := s.runs.list()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Status != StatusRunning || r.Owner != nil && !r.Owner.gone() {
			continue
		}
		full, err := s.runs.get(r.ID)
		if err != nil {
			continue
		}
		full.Status = StatusInterrupted
		full.Error = "serve stopped while the run was in progress; its faults were reaped at the next start"
		full.Finished = s.now()
		if err := s.runs.put(full); err != nil {
			return err
		}
	}
	return nil
}
