package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	cron "github.com/netresearch/go-cron"
)

// ScheduleView is a schedule with its next and last firing.
type ScheduleView struct {
	Schedule
	Next     time.Time `json:"next,omitzero"`
	Prev     time.Time `json:"prev,omitzero"`
	LastRun  string    `json:"last_run,omitempty"`
	LastSkip string    `json:"last_skip,omitempty"`
}

// scheduler runs cron game days inside serve. Schedules from the config
// file are fixed; those created through the API persist in a JSON file.
type scheduler struct {
	s    *Server
	path string
	c    *cron.Cron

	mu      sync.Mutex
	entries map[string]cron.EntryID
	defs    map[string]Schedule
	last    map[string]string
	skip    map[string]string
}

func newScheduler(s *Server, path string, fromConfig []Schedule) (*scheduler, error) {
	sc := &scheduler{s: s, path: path, c: cron.New(), entries: map[string]cron.EntryID{}, defs: map[string]Schedule{},
		last: map[string]string{}, skip: map[string]string{}}
	for _, d := range fromConfig {
		d.Source = "config"
		if err := sc.add(d); err != nil {
			return nil, fmt.Errorf("schedule %s: %w", d.Name, err)
		}
	}
	saved, err := sc.load()
	if err != nil {
		return nil, err
	}
	for _, d := range saved {
		if _, dup := sc.defs[d.Name]; dup {
			s.log.Warn("saved schedule shadowed by the config file", "name", d.Name)
			continue
		}
		d.Source = "api"
		if !validScheduleName(d.Name) {
			s.log.Warn("saved schedule dropped: its name is not valid", "name", d.Name, "file", path)
			continue
		}
		if err := sc.add(d); err != nil {
			return nil, fmt.Errorf("%s: schedule %s: %w", path, d.Name, err)
		}
	}
	sc.c.Start()
	return sc, nil
}

func (sc *scheduler) load() ([]Schedule, error) {
	data, err := os.ReadFile(sc.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Schedule
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w (hint: fix or remove the file; it holds the schedules created through the API)", sc.path, err)
	}
	return out, nil
}

// saveLocked writes the API-created schedules.
func (sc *scheduler) saveLocked() error {
	var out []Schedule
	for _, d := range sc.defs {
		if d.Source == "api" {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if out == nil {
		out = []Schedule{}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(sc.path, data, 0o600)
}

func (sc *scheduler) add(d Schedule) error {
	if err := d.check(); err != nil {
		return err
	}
	doc, err := sc.s.resolveScenario(d.Scenario)
	if err != nil {
		return fmt.Errorf("scenario %q: %w", d.Scenario, err)
	}
	if err := sc.s.checkTarget(doc); err != nil {
		return fmt.Errorf("scenario %q: %w", d.Scenario, err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if _, dup := sc.defs[d.Name]; dup {
		return fmt.Errorf("%w: schedule %q exists", errExists, d.Name)
	}
	name := d.Name
	id, err := sc.c.AddFunc(d.Cron, func() { sc.fire(name) })
	if err != nil {
		return err
	}
	sc.entries[d.Name], sc.defs[d.Name] = id, d
	return nil
}

var errExists = errors.New("already exists")

// fire starts the schedule's run; a run in progress skips this firing.
func (sc *scheduler) fire(name string) {
	sc.mu.Lock()
	d, ok := sc.defs[name]
	sc.mu.Unlock()
	if !ok {
		return
	}
	doc, err := sc.s.resolveScenario(d.Scenario)
	var rec *RunRecord
	if err == nil {
		rec, err = sc.s.start(RunRequest{Scenario: d.Scenario, Doc: doc, Revision: d.Revision, Trigger: "schedule:" + name})
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err != nil {
		sc.skip[name] = fmt.Sprintf("%s: skipped: %v", sc.s.now().UTC().Format(time.RFC3339), err)
		sc.s.log.Warn("scheduled run skipped", "schedule", name, "err", err)
		return
	}
	sc.last[name] = rec.ID
}

func (sc *scheduler) remove(name string) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	d, ok := sc.defs[name]
	if !ok {
		return errNotFound
	}
	if d.Source == "config" {
		return fmt.Errorf("schedule %q comes from the config file: remove it there", name)
	}
	sc.c.Remove(sc.entries[name])
	delete(sc.entries, name)
	delete(sc.defs, name)
	if err := sc.saveLocked(); err != nil {
		return err
	}
	return nil
}

func (sc *scheduler) list() []ScheduleView {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := []ScheduleView{}
	for name, d := range sc.defs {
		e := sc.c.Entry(sc.entries[name])
		out = append(out, ScheduleView{Schedule: d, Next: e.Next, Prev: e.Prev, LastRun: sc.last[name], LastSkip: sc.skip[name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (sc *scheduler) stop() {
	<-sc.c.Stop().Done()
}

func (s *Server) apiListSchedules(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"schedules": s.sched.list()})
}

func (s *Server) apiCreateSchedule(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "invalid", err.Error(), "")
		return
	}
	var d Schedule
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", "schedule: "+err.Error(), `{"name":"nightly","cron":"0 3 * * *","scenario":"default-gameday","revision":"..."}`)
		return
	}
	d.Source, d.Created = "api", s.now().UTC()
	if err := s.sched.add(d); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errExists) {
			code = http.StatusConflict
		}
		writeErr(w, code, "invalid_schedule", err.Error(), `cron: five fields "m h dom mon dow" or @every 1h; scenario: a built-in name or a file in the experiments directory`)
		return
	}
	s.sched.mu.Lock()
	err = s.sched.saveLocked()
	s.sched.mu.Unlock()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "saving schedules: "+err.Error(), "")
		return
	}
	writeJSON(w, http.StatusCreated, d)
}

func (s *Server) apiDeleteSchedule(w http.ResponseWriter, r *http.Request) {
	err := s.sched.remove(r.PathValue("name"))
	switch {
	case errors.Is(err, errNotFound):
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schedule %q", r.PathValue("name")), "")
	case err != nil:
		writeErr(w, http.StatusConflict, "conflict", err.Error(), "")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
