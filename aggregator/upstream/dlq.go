package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Letter is one dead-lettered message: what was received, from where, and
// why it could not be stored.
type Letter struct {
	// ID numbers the node's letters from 1.
	ID       uint64    `json:"id"`
	At       time.Time `json:"at"`
	Node     string    `json:"node"`
	Upstream string    `json:"upstream"`
	// UpstreamPartition and UpstreamOffset are the message's position in
	// the broker (absent when the upstream has none).
	UpstreamPartition *int32 `json:"upstream_partition,omitempty"`
	UpstreamOffset    *int64 `json:"upstream_offset,omitempty"`
	// The message's identity, when its payload could be decoded.
	MsgID  string `json:"msg_id,omitempty"`
	Source string `json:"source_id,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Key    string `json:"group_key,omitempty"`
	// Reason is why it was not stored; Attempts how often it was tried.
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts"`
	// Payload is the message as received.
	Payload string `json:"payload"`
	// Replay is the last replay of the letter, if any.
	Replay *Replay `json:"replay,omitempty"`
}

// Replay records one replay of a letter.
type Replay struct {
	At time.Time `json:"at"`
	// Result is "stored", "duplicate", "transient" or "permanent".
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Replayed reports whether the letter was put back and stored.
func (l Letter) Replayed() bool {
	return l.Replay != nil && (l.Replay.Result == "stored" || l.Replay.Result == "duplicate")
}

// dlqLine is one line of the DLQ file: a letter or a replay record.
type dlqLine struct {
	Letter *Letter     `json:"letter,omitempty"`
	Replay *replayLine `json:"replay,omitempty"`
}

type replayLine struct {
	ID uint64 `json:"id"`
	Replay
}

// DLQ is a node's durable dead-letter queue: an append-only JSON-lines file,
// fsynced on every append, read back whole when the node starts.
type DLQ struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	max     int
	letters []Letter // ordered by ID
	byID    map[uint64]int
	next    uint64
}

// ErrDLQFull is returned by Add when the queue holds its maximum.
var ErrDLQFull = errors.New("dead-letter queue is full")

// OpenDLQ opens (or creates) the queue at path; max bounds the letters held
// (0: 100000). A torn last line (a crash mid-append) is dropped.
func OpenDLQ(path string, max int) (*DLQ, error) {
	if max <= 0 {
		max = 100000
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	letters, good, err := DecodeDLQ(raw)
	if err != nil {
		return nil, fmt.Errorf("dead-letter queue %s: %w", path, err)
	}
	if good < len(raw) { // drop a torn tail so appends start on a line boundary
		if err := os.Truncate(path, int64(good)); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	q := &DLQ{f: f, path: path, max: max, letters: letters, byID: map[uint64]int{}, next: 1}
	for i, l := range letters {
		q.byID[l.ID] = i
		q.next = max64(q.next, l.ID+1)
	}
	return q, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// DecodeDLQ reads a DLQ file's bytes: its letters (replays applied) and how
// many leading bytes are whole lines. A last line without its newline is a
// torn append and is ignored; any other malformed line is an error naming
// its line number.
func DecodeDLQ(raw []byte) ([]Letter, int, error) {
	var letters []Letter
	byID := map[uint64]int{}
	good := 0
	line := 0
	for off := 0; off < len(raw); {
		nl := bytes.IndexByte(raw[off:], '\n')
		if nl < 0 {
			break // torn tail
		}
		line++
		b := bytes.TrimSpace(raw[off : off+nl])
		off += nl + 1
		if len(b) > 0 {
			var dl dlqLine
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&dl); err != nil {
				return nil, 0, fmt.Errorf("line %d: %v", line, err)
			}
			if _, err := dec.Token(); err != io.EOF {
				return nil, 0, fmt.Errorf("line %d: trailing data after the JSON object", line)
			}
			switch {
			case dl.Letter != nil && dl.Replay == nil:
				l := *dl.Letter
				if l.ID == 0 {
					return nil, 0, fmt.Errorf("line %d: letter without an id", line)
				}
				if _, dup := byID[l.ID]; dup {
					return nil, 0, fmt.Errorf("line %d: letter %d appears twice", line, l.ID)
				}
				byID[l.ID] = len(letters)
				letters = append(letters, l)
			case dl.Replay != nil && dl.Letter == nil:
				i, ok := byID[dl.Replay.ID]
				if !ok {
					return nil, 0, fmt.Errorf("line %d: replay of unknown letter %d", line, dl.Replay.ID)
				}
				r := dl.Replay.Replay
				letters[i].Replay = &r
			default:
				return nil, 0, fmt.Errorf("line %d: want exactly one of letter and replay", line)
			}
		}
		good = off
	}
	return letters, good, nil
}

func (q *DLQ) appendLine(v dlqLine) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := q.f.Write(b); err != nil {
		return err
	}
	return q.f.Sync()
}

// Add appends a letter (its ID and time are assigned) and fsyncs it.
func (q *DLQ) Add(l Letter) (Letter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.letters) >= q.max {
		return l, fmt.Errorf("%w (%d letters; replay or remove some)", ErrDLQFull, q.max)
	}
	l.ID = q.next
	if l.At.IsZero() {
		l.At = time.Now().UTC()
	}
	l.Replay = nil
	if err := q.appendLine(dlqLine{Letter: &l}); err != nil {
		return l, fmt.Errorf("dead-letter queue: %w", err)
	}
	q.next++
	q.byID[l.ID] = len(q.letters)
	q.letters = append(q.letters, l)
	return l, nil
}

// SetReplay records the outcome of a replay of letter id.
func (q *DLQ) SetReplay(id uint64, r Replay) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i, ok := q.byID[id]
	if !ok {
		return fmt.Errorf("no dead letter %d", id)
	}
	if err := q.appendLine(dlqLine{Replay: &replayLine{ID: id, Replay: r}}); err != nil {
		return fmt.Errorf("dead-letter queue: %w", err)
	}
	q.letters[i].Replay = &r
	return nil
}

// Get returns letter id.
func (q *DLQ) Get(id uint64) (Letter, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i, ok := q.byID[id]
	if !ok {
		return Letter{}, false
	}
	return q.letters[i], true
}

// List returns up to limit letters with IDs from from on, and the next ID
// to ask for.
func (q *DLQ) List(from uint64, limit int) ([]Letter, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Letter
	next := from
	for _, l := range q.letters {
		if l.ID < from {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, l)
		next = l.ID + 1
	}
	return out, next
}

// Len is the number of letters held.
func (q *DLQ) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.letters)
}

// Close closes the file.
func (q *DLQ) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.f.Close()
}
