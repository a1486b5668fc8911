package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wire is the JSON shape of one line. Pointers mark fields whose zero value
// is meaningful (partition 0, offset 0) or must be told apart from absence.
type wire struct {
	Op                string  `json:"op"`
	T                 string  `json:"t,omitempty"`
	Client            string  `json:"client,omitempty"`
	Partition         *int    `json:"partition,omitempty"`
	Offset            *int64  `json:"offset,omitempty"`
	Key               *string `json:"key,omitempty"`
	Source            *string `json:"source,omitempty"`
	Seq               *uint64 `json:"seq,omitempty"`
	FromSeq           *uint64 `json:"from_seq,omitempty"`
	ToSeq             *uint64 `json:"to_seq,omitempty"`
	MsgID             *string `json:"msg_id,omitempty"`
	Fingerprint       *string `json:"fingerprint,omitempty"`
	Value             *string `json:"value,omitempty"`
	State             *string `json:"state,omitempty"`
	Version           *uint64 `json:"version,omitempty"`
	ExpectedVersion   *uint64 `json:"expected_version,omitempty"`
	Epoch             *uint64 `json:"epoch,omitempty"`
	HLC               *string `json:"hlc,omitempty"`
	Node              *string `json:"node,omitempty"`
	Event             *string `json:"event,omitempty"`
	Detail            *string `json:"detail,omitempty"`
	Result            *string `json:"result,omitempty"`
	Start             string  `json:"start,omitempty"`
	End               string  `json:"end,omitempty"`
	Upstream          *string `json:"upstream,omitempty"`
	UpstreamPartition *int    `json:"upstream_partition,omitempty"`
	UpstreamOffset    *int64  `json:"upstream_offset,omitempty"`
	Reason            *string `json:"reason,omitempty"`
	Attempts          *int    `json:"attempts,omitempty"`
}

// fieldsOf lists, per op, the fields a line must carry and the ones it may.
var fieldsOf = map[Op]struct{ required, optional []string }{
	OpSend:   {[]string{"source", "seq", "msg_id", "key", "result"}, []string{"fingerprint", "node", "hlc", "partition", "epoch", "upstream", "upstream_partition", "upstream_offset"}},
	OpRecv:   {[]string{"partition", "offset", "source", "seq", "msg_id"}, []string{"key", "epoch", "hlc", "node", "fingerprint"}},
	OpGap:    {[]string{"partition", "offset", "source", "from_seq", "to_seq"}, []string{"epoch", "hlc", "node"}},
	OpRead:   {[]string{"key", "result", "start", "end"}, []string{"value", "node", "state", "version"}},
	OpWrite:  {[]string{"key", "result", "start", "end"}, []string{"value", "node", "state", "version", "expected_version"}},
	OpNode:   {[]string{"node", "event"}, []string{"detail"}},
	OpDLQ:    {[]string{"msg_id", "reason"}, []string{"source", "seq", "key", "node", "upstream", "upstream_partition", "upstream_offset", "attempts"}},
	OpCommit: {[]string{"upstream", "upstream_offset"}, []string{"upstream_partition", "node"}},
}

func has(w *wire, name string) bool {
	switch name {
	case "partition":
		return w.Partition != nil
	case "offset":
		return w.Offset != nil
	case "key":
		return w.Key != nil
	case "source":
		return w.Source != nil
	case "seq":
		return w.Seq != nil
	case "from_seq":
		return w.FromSeq != nil
	case "to_seq":
		return w.ToSeq != nil
	case "msg_id":
		return w.MsgID != nil
	case "fingerprint":
		return w.Fingerprint != nil
	case "value":
		return w.Value != nil
	case "state":
		return w.State != nil
	case "version":
		return w.Version != nil
	case "expected_version":
		return w.ExpectedVersion != nil
	case "epoch":
		return w.Epoch != nil
	case "hlc":
		return w.HLC != nil
	case "node":
		return w.Node != nil
	case "event":
		return w.Event != nil
	case "detail":
		return w.Detail != nil
	case "result":
		return w.Result != nil
	case "start":
		return w.Start != ""
	case "end":
		return w.End != ""
	case "upstream":
		return w.Upstream != nil
	case "upstream_partition":
		return w.UpstreamPartition != nil
	case "upstream_offset":
		return w.UpstreamOffset != nil
	case "reason":
		return w.Reason != nil
	case "attempts":
		return w.Attempts != nil
	}
	return false
}

var allFields = []string{"partition", "offset", "key", "source", "seq", "from_seq", "to_seq", "msg_id", "fingerprint",
	"value", "state", "version", "expected_version", "epoch", "hlc", "node", "event", "detail", "result", "start", "end",
	"upstream", "upstream_partition", "upstream_offset", "reason", "attempts"}

// ErrMalformed is the kind of every error the reader returns for bad input.
var ErrMalformed = errors.New("malformed history")

// ParseError says which line and which JSON field of a history is malformed,
// with a hint on how to fix it.
type ParseError struct {
	Line  int
	Field string // JSON field at fault; empty when the whole line is
	Msg   string
	Hint  string
}

// Error implements error.
func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d", e.Line)
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *ParseError) Unwrap() error { return ErrMalformed }

func perr(line int, field, hint, format string, args ...any) *ParseError {
	return &ParseError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

func parseTime(line int, field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, perr(line, field, "use RFC 3339 with nanoseconds, e.g. 2026-11-22T10:00:00.123456789Z", "bad time %q", s)
	}
	return t, nil
}

// DecodeLine parses one history line strictly. line is used in errors.
func DecodeLine(line int, data []byte) (Line, error) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Line{}, jsonError(line, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Line{}, perr(line, "", "one JSON object per line", "trailing data after the JSON object")
	}
	return fromWire(line, &w)
}

func jsonError(line int, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return perr(line, te.Field, "see history/v1 field types: numbers for seq/offset/partition/epoch, strings otherwise", "wrong type %s, want %s", te.Value, te.Type)
	case errors.As(err, &se):
		return perr(line, "", "each line must be one JSON object", "invalid JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return perr(line, name, "known fields: op t client "+strings.Join(allFields, " "), "unknown field")
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return perr(line, "", "each line must be one complete JSON object", "truncated JSON")
	default:
		return perr(line, "", "each line must be one JSON object", "%v", err)
	}
}

func fromWire(line int, w *wire) (Line, error) {
	op, ok := ParseOp(w.Op)
	if !ok {
		if w.Op == "" {
			return Line{}, perr(line, "op", "every line needs an op", "missing op")
		}
		return Line{}, perr(line, "op", "one of send, recv, gap, read, write, node, dlq, commit", "unknown op %q", w.Op)
	}
	ev := Line{Op: op, Client: w.Client, Line: line}
	if w.T != "" {
		t, err := parseTime(line, "t", w.T)
		if err != nil {
			return Line{}, err
		}
		ev.T = t
	}
	spec := fieldsOf[op]
	for _, f := range spec.required {
		if !has(w, f) {
			return Line{}, perr(line, f, fmt.Sprintf("a %s line needs %s", op, strings.Join(spec.required, ", ")), "missing field")
		}
	}
	for _, f := range allFields {
		if has(w, f) && !contains(spec.required, f) && !contains(spec.optional, f) {
			return Line{}, perr(line, f, fmt.Sprintf("a %s line may carry %s", op, strings.Join(append(append([]string{}, spec.required...), spec.optional...), ", ")), "field not allowed on op %q", op)
		}
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	u64 := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	ev.Source, ev.MsgID, ev.Key, ev.Fingerprint, ev.Node = str(w.Source), str(w.MsgID), str(w.Key), str(w.Fingerprint), str(w.Node)
	ev.Seq, ev.FromSeq, ev.ToSeq, ev.Epoch = u64(w.Seq), u64(w.FromSeq), u64(w.ToSeq), u64(w.Epoch)
	ev.Version, ev.ExpectedVersion = u64(w.Version), u64(w.ExpectedVersion)
	ev.Value, ev.State, ev.NodeEvent, ev.Detail = str(w.Value), str(w.State), str(w.Event), str(w.Detail)
	if w.Partition != nil {
		if *w.Partition < 0 {
			return Line{}, perr(line, "partition", "partitions are numbered from 0", "negative partition %d", *w.Partition)
		}
		ev.Partition, ev.HasPartition = *w.Partition, op == OpSend
	}
	if w.Offset != nil {
		if *w.Offset < 0 {
			return Line{}, perr(line, "offset", "offsets are numbered from 0", "negative offset %d", *w.Offset)
		}
		ev.Offset = *w.Offset
	}
	if w.Upstream != nil {
		if *w.Upstream == "" {
			return Line{}, perr(line, "upstream", "name the broker, e.g. kafka or nats", "empty upstream")
		}
		ev.Upstream = *w.Upstream
	}
	if w.UpstreamPartition != nil {
		if *w.UpstreamPartition < 0 {
			return Line{}, perr(line, "upstream_partition", "upstream partitions are numbered from 0", "negative upstream_partition %d", *w.UpstreamPartition)
		}
		ev.UpstreamPartition, ev.HasUpstreamPartition = *w.UpstreamPartition, true
	}
	if w.UpstreamOffset != nil {
		if *w.UpstreamOffset < 0 {
			return Line{}, perr(line, "upstream_offset", "upstream offsets are numbered from 0", "negative upstream_offset %d", *w.UpstreamOffset)
		}
		ev.UpstreamOffset, ev.HasUpstreamOffset = *w.UpstreamOffset, true
	}
	if w.Reason != nil {
		ev.Reason = *w.Reason
	}
	if w.Attempts != nil {
		if *w.Attempts < 0 {
			return Line{}, perr(line, "attempts", "a count of attempts", "negative attempts %d", *w.Attempts)
		}
		ev.Attempts = *w.Attempts
	}
	if w.HLC != nil {
		h, err := ParseHLC(*w.HLC)
		if err != nil {
			return Line{}, perr(line, "hlc", `write "<wall>.<logical>", e.g. "1763805600123456789.2"`, "bad hlc %q: %v", *w.HLC, err)
		}
		ev.HLC = h
	}
	if w.Result != nil {
		r, ok := ParseResult(*w.Result)
		if !ok || (r == ResultRejected && op != OpSend) {
			hint := "one of ok, fail, timeout, rejected"
			if op != OpSend {
				hint = "one of ok, fail, timeout"
			}
			return Line{}, perr(line, "result", hint, "bad result %q", *w.Result)
		}
		ev.Result = r
	}
	if w.Start != "" {
		t, err := parseTime(line, "start", w.Start)
		if err != nil {
			return Line{}, err
		}
		ev.Start = t
	}
	if w.End != "" {
		t, err := parseTime(line, "end", w.End)
		if err != nil {
			return Line{}, err
		}
		ev.End = t
		if t.Before(ev.Start) {
			return Line{}, perr(line, "end", "an operation ends after it starts", "end %s is before start %s", w.End, w.Start)
		}
	}
	switch op {
	case OpSend, OpRecv:
		if ev.Seq == 0 {
			return Line{}, perr(line, "seq", "sequences start at 1", "seq 0")
		}
		if ev.Source == "" || ev.MsgID == "" {
			f := "source"
			if ev.Source != "" {
				f = "msg_id"
			}
			return Line{}, perr(line, f, "must be a non-empty string", "empty %s", f)
		}
		if op == OpSend && ev.Key == "" {
			return Line{}, perr(line, "key", "must be a non-empty string", "empty key")
		}
	case OpGap:
		if ev.FromSeq == 0 || ev.ToSeq < ev.FromSeq {
			return Line{}, perr(line, "to_seq", "a gap covers from_seq..to_seq with 1 <= from_seq <= to_seq", "bad gap range %d..%d", ev.FromSeq, ev.ToSeq)
		}
	case OpRead, OpWrite:
		if ev.Key == "" {
			return Line{}, perr(line, "key", "must be a non-empty string", "empty key")
		}
	case OpNode:
		if ev.Node == "" || ev.NodeEvent == "" {
			return Line{}, perr(line, "event", "node and event must be non-empty", "empty node or event")
		}
	case OpDLQ:
		if ev.MsgID == "" {
			return Line{}, perr(line, "msg_id", "must be a non-empty string", "empty msg_id")
		}
		if w.Seq != nil && ev.Seq == 0 {
			return Line{}, perr(line, "seq", "sequences start at 1", "seq 0")
		}
	}
	return ev, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func toWire(ev *Line) wire {
	w := wire{Op: ev.Op.String(), Client: ev.Client}
	if !ev.T.IsZero() {
		w.T = ev.T.UTC().Format(time.RFC3339Nano)
	}
	sp := func(s string) *string { return &s }
	up := func(u uint64) *uint64 { return &u }
	hlc := func() *string {
		if ev.HLC.IsZero() {
			return nil
		}
		return sp(ev.HLC.String())
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return sp(s)
	}
	optu := func(u uint64) *uint64 {
		if u == 0 {
			return nil
		}
		return up(u)
	}
	part := ev.Partition
	off := ev.Offset
	switch ev.Op {
	case OpSend:
		w.Source, w.Seq, w.MsgID, w.Key = sp(ev.Source), up(ev.Seq), sp(ev.MsgID), sp(ev.Key)
		w.Fingerprint, w.Node, w.Result, w.HLC = opt(ev.Fingerprint), opt(ev.Node), sp(ev.Result.String()), hlc()
		if ev.HasPartition {
			w.Partition = &part
		}
		w.Epoch = optu(ev.Epoch)
	case OpRecv:
		w.Partition, w.Offset, w.Key, w.Source, w.Seq, w.MsgID = &part, &off, sp(ev.Key), sp(ev.Source), up(ev.Seq), sp(ev.MsgID)
		w.Fingerprint, w.Epoch, w.HLC, w.Node = opt(ev.Fingerprint), up(ev.Epoch), hlc(), opt(ev.Node)
	case OpGap:
		w.Partition, w.Offset, w.Source, w.FromSeq, w.ToSeq = &part, &off, sp(ev.Source), up(ev.FromSeq), up(ev.ToSeq)
		w.Epoch, w.HLC, w.Node = optu(ev.Epoch), hlc(), opt(ev.Node)
	case OpRead, OpWrite:
		w.Key, w.Value, w.Node, w.Result = sp(ev.Key), sp(ev.Value), opt(ev.Node), sp(ev.Result.String())
		w.Start, w.End = ev.Start.UTC().Format(time.RFC3339Nano), ev.End.UTC().Format(time.RFC3339Nano)
		w.State = opt(ev.State)
		if ev.Version != 0 {
			w.Version = up(ev.Version)
		}
		if ev.Op == OpWrite && (ev.ExpectedVersion != 0 || ev.State != "") {
			w.ExpectedVersion = up(ev.ExpectedVersion)
		}
	case OpNode:
		w.Node, w.Event, w.Detail = sp(ev.Node), sp(ev.NodeEvent), opt(ev.Detail)
	case OpDLQ:
		w.MsgID, w.Reason = sp(ev.MsgID), sp(ev.Reason)
		w.Source, w.Key, w.Node = opt(ev.Source), opt(ev.Key), opt(ev.Node)
		w.Seq = optu(ev.Seq)
		if ev.Attempts > 0 {
			a := ev.Attempts
			w.Attempts = &a
		}
	case OpCommit:
		w.Node = opt(ev.Node)
	}
	if ev.Op == OpSend || ev.Op == OpDLQ || ev.Op == OpCommit {
		w.Upstream = opt(ev.Upstream)
		if ev.HasUpstreamPartition {
			up := ev.UpstreamPartition
			w.UpstreamPartition = &up
		}
		if ev.HasUpstreamOffset || ev.Op == OpCommit {
			uo := ev.UpstreamOffset
			w.UpstreamOffset = &uo
		}
	}
	return w
}

// Marshal encodes ev as one history/v1 line (without the newline). It
// validates the result by decoding it again, so a writer never produces a
// line the reader would reject.
func Marshal(ev Line) ([]byte, error) {
	if ev.Op < OpSend || ev.Op > OpCommit {
		return nil, fmt.Errorf("history: cannot encode %s", ev.Op)
	}
	w := toWire(&ev)
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("history: encode %s: %w", ev.Op, err)
	}
	if _, err := DecodeLine(0, b); err != nil {
		return nil, fmt.Errorf("history: refusing to write an invalid %s line: %w", ev.Op, err)
	}
	return b, nil
}

// Writer appends history lines; it is safe for concurrent use. Lines are
// buffered; Flush writes them out and Close flushes, fsyncs and closes the
// file it owns.
type Writer struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	f    *os.File // nil when the writer does not own a file
	err  error
	n    int64
	done bool
}

// NewWriter returns a Writer over w; Close flushes but does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 256<<10)}
}

// Create creates (truncates) the history file at path.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("history: create %s: %w", path, err)
	}
	w := NewWriter(f)
	w.f = f
	return w, nil
}

// Write appends one event. A write error is sticky: later calls return it.
func (w *Writer) Write(ev Line) error {
	b, err := Marshal(ev)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return errors.New("history: write after close")
	}
	if w.err != nil {
		return w.err
	}
	b = append(b, '\n')
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("history: write: %w", err)
		return w.err
	}
	w.n++
	return nil
}

// Lines reports how many lines were written.
func (w *Writer) Lines() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Flush writes buffered lines to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("history: flush: %w", err)
	}
	return w.err
}

// Close flushes, fsyncs and closes the owned file. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return w.err
	}
	w.done = true
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("history: flush: %w", err)
		}
	}
	if w.f != nil {
		if err := w.f.Sync(); err != nil && w.err == nil {
			w.err = fmt.Errorf("history: fsync: %w", err)
		}
		if err := w.f.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("history: close: %w", err)
		}
	}
	return w.err
}

// MaxLine is the longest line the reader accepts.
const MaxLine = 1 << 20

// Reader reads history lines one at a time.
type Reader struct {
	sc   *bufio.Scanner
	line int
}

// NewReader returns a strict reader over r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return &Reader{sc: sc}
}

// Next returns the next event, io.EOF at the end, or a *ParseError. Blank
// lines are skipped.
func (r *Reader) Next() (Line, error) {
	for r.sc.Scan() {
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		return DecodeLine(r.line, b)
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Line{}, perr(r.line+1, "", "split the record; lines are at most 1 MiB", "line too long")
		}
		return Line{}, fmt.Errorf("history: read: %w", err)
	}
	return Line{}, io.EOF
}

// ReadAll reads every event of r, stopping at the first malformed line.
func ReadAll(r io.Reader) ([]Line, error) {
	hr := NewReader(r)
	var out []Line
	for {
		ev, err := hr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// ReadFile reads a whole history file.
func ReadFile(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: open: %w", err)
	}
	defer f.Close()
	evs, err := ReadAll(f)
	var pe *ParseError
	if errors.As(err, &pe) {
		return evs, fmt.Errorf("%s:%w", path, err)
	}
	return evs, err
}

// SortedNodeStats parses a stats detail ("name=value ...") into sorted
// name/value pairs; it reports the first token that is not name=number.
func SortedNodeStats(detail string) ([]Stat, error) {
	var out []Stat
	for _, tok := range strings.Fields(detail) {
		name, val, ok := strings.Cut(tok, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("stat %q is not name=value", tok)
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("stat %q: value is not a number", tok)
		}
		out = append(out, Stat{Name: name, Value: f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stat is one gauge of a stats node event.
type Stat struct {
	Name  string
	Value float64
}
