package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// JournalVersion is the version of the journal record format.
const JournalVersion = 1

// Journal record types.
const (
	RecOpen          = "open"           // a run started: owner pid and start time
	RecIntent        = "intent"         // a fault is about to be applied (written before acting)
	RecApplied       = "applied"        // the fault took effect; Applied holds the undo information
	RecRecovered     = "recovered"      // the fault was undone
	RecRecoverFailed = "recover_failed" // undoing failed; the reaper retries
	RecProcess       = "process"        // a child process the run started (reaped if orphaned)
	RecProcessExit   = "process_exit"   // that child process ended normally
	RecClose         = "close"          // the run ended; nothing is outstanding
	RecReaped        = "reaped"         // a later run recovered what this one left behind
)

// Record is one line of a journal (JSON, one object a line, fsynced).
type Record struct {
	V       int       `json:"v"`
	T       time.Time `json:"t"`
	Type    string    `json:"type"`
	Run     string    `json:"run,omitempty"`
	Name    string    `json:"name,omitempty"`
	ID      string    `json:"id,omitempty"`
	Owner   *Proc     `json:"owner,omitempty"`
	Proc    *Proc     `json:"proc,omitempty"`
	Note    string    `json:"note,omitempty"`
	Applied *Applied  `json:"applied,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Journal is a run's crash-safe log under DATA/journal/RUN.journal. The run
// holds an exclusive flock on it while it lives, so a reaper can tell a
// crashed run (lock free) from a live one.
//
// Format (version 1): one JSON object a line, each fsynced before the call
// that wrote it returns:
//
//	{"v":1,"t":"...","type":"open","run":"R","name":"default-gameday","owner":{"pid":41233,"start_time":98127}}
//	{"v":1,"t":"...","type":"intent","run":"R","id":"F","applied":{...Applied from Prepare, with undo...}}
//	{"v":1,"t":"...","type":"applied","run":"R","id":"F","applied":{...Applied from Inject...}}
//	{"v":1,"t":"...","type":"recovered","run":"R","id":"F"}
//	{"v":1,"t":"...","type":"recover_failed","run":"R","id":"F","applied":{...},"error":"..."}
//	{"v":1,"t":"...","type":"process","run":"R","proc":{"pid":41240,"start_time":98130},"note":"canary/n1"}
//	{"v":1,"t":"...","type":"process_exit","run":"R","proc":{"pid":41240,"start_time":98130}}
//	{"v":1,"t":"...","type":"close","run":"R"}
//
// A fault is outstanding from its intent until its recovered record. A
// clean close archives the file under DATA/journal/done; a reaper appends
// {"type":"reaped"} and archives it. Control files next to the journal:
// RUN.abort (abort with the reason inside) and RUN.pause (pause the
// fault-duration clock while it exists).
type Journal struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	run   string
	clock Clock
}

// JournalDir is where journals live under a data directory.
func JournalDir(dataDir string) string { return filepath.Join(dataDir, "journal") }

// OpenJournal creates the journal of a new run, locks it and writes the
// open record.
func OpenJournal(dataDir, runID, name string, clock Clock) (*Journal, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	// The journal names every process and fault of a run: its owner's only.
	dir := JournalDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, E(KindUnavailable, "open journal", err)
	}
	p := filepath.Join(dir, runID+".journal")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, E(KindUnavailable, "open journal", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, E(KindUnavailable, "lock journal", err)
	}
	j := &Journal{f: f, path: p, run: runID, clock: clock}
	owner, err := ProcOf(os.Getpid())
	if err != nil {
		owner = Proc{Pid: os.Getpid()}
	}
	if err := j.Append(Record{Type: RecOpen, Name: name, Owner: &owner}); err != nil {
		f.Close()
		return nil, err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Append writes one record and fsyncs it before returning.
func (j *Journal) Append(r Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return E(KindInternal, "journal append", errors.New("journal is closed"))
	}
	r.V = JournalVersion
	if r.T.IsZero() {
		r.T = j.clock.Now().UTC()
	}
	r.Run = j.run
	b, err := json.Marshal(r)
	if err != nil {
		return E(KindInternal, "journal append", err)
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		return E(KindUnavailable, "journal append", err)
	}
	if err := j.f.Sync(); err != nil {
		return E(KindUnavailable, "journal fsync", err)
	}
	return nil
}

// Spawned records a child process the run started, so that a reaper kills
// it if the run crashes and leaves it orphaned.
func (j *Journal) Spawned(p Proc, note string) error {
	return j.Append(Record{Type: RecProcess, Proc: &p, Note: note})
}

// Exited records that a child process recorded with Spawned has ended.
func (j *Journal) Exited(p Proc) error { return j.Append(Record{Type: RecProcessExit, Proc: &p}) }

// Close writes the close record (when clean is true), releases the lock
// and archives the file under journal/done.
func (j *Journal) Close(clean bool) error {
	if clean {
		if err := j.Append(Record{Type: RecClose}); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	if clean {
		archive(j.path)
	}
	return err
}

func archive(p string) {
	done := filepath.Join(filepath.Dir(p), "done")
	if err := os.MkdirAll(done, 0o700); err == nil {
		os.Rename(p, filepath.Join(done, filepath.Base(p)))
	}
}

// ReadJournal parses a journal file. A torn last line (a crash in the
// middle of a write) is ignored; any other malformed line is an error
// naming its line number.
func ReadJournal(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, E(KindUnavailable, "read journal", err)
	}
	return parseJournal(path, data)
}

func parseJournal(path string, data []byte) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	complete := len(data) > 0 && data[len(data)-1] == '\n'
	total := bytes.Count(data, []byte{'\n'})
	if !complete && len(data) > 0 {
		total++
	}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var r Record
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil || r.Type == "" || r.V != JournalVersion {
			if line == total && !complete {
				break // torn final write
			}
			if err == nil {
				err = fmt.Errorf("record without a type or with version %d", r.V)
			}
			return out, E(KindInvalid, "read journal", fmt.Errorf("%s:%d: %v", path, line, err))
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return out, E(KindInvalid, "read journal", fmt.Errorf("%s: %v", path, err))
	}
	return out, nil
}

// Outstanding is what a journal says is still applied or still running.
type Outstanding struct {
	Run   string
	Name  string
	Owner Proc
	// Faults are the applied (or intended) faults never recovered, in
	// application order; each holds the last Applied the journal has.
	Faults []Applied
	// Procs are child processes recorded as spawned and never as exited.
	Procs []ProcNote
	// Closed reports a close or reaped record: nothing to do.
	Closed bool
}

// ProcNote is a recorded child process and what it was.
type ProcNote struct {
	Proc Proc   `json:"proc"`
	Note string `json:"note"`
}

// Summarize folds a journal's records into what is outstanding.
func Summarize(recs []Record) Outstanding {
	var o Outstanding
	last := map[string]Applied{}
	var order []string
	live := map[string]bool{}
	procs := map[int]ProcNote{}
	var porder []int
	for _, r := range recs {
		switch r.Type {
		case RecOpen:
			o.Run, o.Name = r.Run, r.Name
			if r.Owner != nil {
				o.Owner = *r.Owner
			}
		case RecIntent, RecApplied, RecRecoverFailed:
			if r.Applied != nil {
				if _, seen := last[r.ID]; !seen {
					order = append(order, r.ID)
				}
				if r.Type != RecIntent || last[r.ID].ID == "" {
					last[r.ID] = *r.Applied
				}
			}
			live[r.ID] = true
		case RecRecovered:
			live[r.ID] = false
		case RecProcess:
			if r.Proc != nil {
				if _, seen := procs[r.Proc.Pid]; !seen {
					porder = append(porder, r.Proc.Pid)
				}
				procs[r.Proc.Pid] = ProcNote{Proc: *r.Proc, Note: r.Note}
			}
		case RecProcessExit:
			if r.Proc != nil {
				delete(procs, r.Proc.Pid)
			}
		case RecClose, RecReaped:
			o.Closed = true
		}
	}
	for _, id := range order {
		if live[id] {
			o.Faults = append(o.Faults, last[id])
		}
	}
	for _, pid := range porder {
		if p, ok := procs[pid]; ok {
			o.Procs = append(o.Procs, p)
		}
	}
	return o
}
