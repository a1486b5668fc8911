package node

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chaosgate/chaosgate/aggregator/dedup"
	"github.com/chaosgate/chaosgate/aggregator/hlc"
	"github.com/chaosgate/chaosgate/aggregator/reorder"
	"github.com/chaosgate/chaosgate/aggregator/state"
)

// Command kinds in the replicated log.
const (
	cmdBatch = 1 + iota // a batch of stamped messages
	cmdTick             // the leader's clock: expire reorder holes
	cmdPut              // a per-key state compare-and-set
)

// command is one replicated log entry. Everything the state machine needs
// to decide is inside it (the leader's clock reading included), so every
// replica applies it identically.
type command struct {
	K int       `json:"k"`
	N string    `json:"n"`           // proposing leader
	T int64     `json:"t"`           // leader HLC wall (ns): the FSM's clock
	H string    `json:"h,omitempty"` // HLC of a tick or put
	M []stamped `json:"m,omitempty"`
	P *putCmd   `json:"p,omitempty"`
}

type stamped struct {
	Message
	H string `json:"h"`
}

type putCmd struct {
	Key      string `json:"key"`
	State    string `json:"state"`
	Expected uint64 `json:"expected"`
	Value    string `json:"value"`
}

// putResult is the FSM's answer to a cmdPut.
type putResult struct {
	Outcome state.PutOutcome
	Value   state.Value
}

// fsmConfig is the state machine's behaviour, identical on every replica.
type fsmConfig struct {
	Partition int
	Reorder   reorder.Config
	DedupTTL  int64
	DedupMax  int
	NoDedup   bool
	// Retain is how many of the newest stream records are kept (0: all);
	// older ones are removed, so snapshots — and restart time — stay
	// bounded.
	Retain uint64
}

// fsmHooks observe the state machine (metrics, clock merging).
type fsmHooks struct {
	observeHLC func(hlc.Timestamp)
	dedupHit   func(level string)
	gap        func(n uint64)
	late       func()
}

// fsm is the deterministic replicated state machine of one partition.
type fsm struct {
	cfg   fsmConfig
	hooks fsmHooks
	log   *streamLog // the output stream (rebuilt from snapshot + log after a crash)

	mu        sync.RWMutex
	buf       *reorder.Buffer[stamped]
	dd        *dedup.Set
	kv        map[string]state.Value
	next      uint64 // next stream offset
	first     uint64 // earliest offset kept (retention)
	gaps      uint64 // gap records emitted
	lastIndex uint64
	lastTerm  uint64

	hwm     atomic.Uint64 // readable high watermark (records < hwm are applied)
	changed chan struct{} // closed and replaced when hwm moves
	chMu    sync.Mutex

	// The output stream is written behind: applied records wait in pending
	// (offsets flushed, flushed+1, ...) and a flush appends them to the
	// stream log in one write. Reads see both. The stream is derived state — after
	// a crash raft's snapshot and log replay rewrite what was pending.
	pmu     sync.RWMutex
	pending []Record
	flushed uint64     // records below this offset are in the stream log
	fmu     sync.Mutex // serialises flushes
	// retained is the earliest offset readers may ask for; the store may
	// still hold older records until the next flush removes them.
	retained atomic.Uint64
}

// retainedError is a read below the earliest offset kept.
type retainedError struct{ earliest uint64 }

func (e *retainedError) Error() string {
	return fmt.Sprintf("offset removed by retention; earliest kept is %d", e.earliest)
}

// earliest is the first offset still kept.
func (f *fsm) earliest() uint64 { return f.retained.Load() }

// maxSnapshotRecord bounds one record frame read from a snapshot.
const maxSnapshotRecord = 64 << 20

// flushBacklog is the most records held in memory before ApplyBatch
// writes them itself instead of waiting for the flusher.
const flushBacklog = 8192

func newFSM(cfg fsmConfig, log *streamLog, hooks fsmHooks) (*fsm, error) {
	return &fsm{
		cfg: cfg, hooks: hooks, log: log,
		buf:     reorder.New[stamped](cfg.Reorder),
		dd:      dedup.New(cfg.DedupTTL, cfg.DedupMax),
		kv:      map[string]state.Value{},
		changed: make(chan struct{}),
	}, nil
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: one stream write per batch.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var recs []Record
	f.mu.Lock()
	for i, l := range logs {
		f.lastIndex, f.lastTerm = l.Index, l.Term
		if l.Type != raft.LogCommand {
			continue
		}
		var c command
		if err := decodeCommand(l.Data, &c); err != nil {
			out[i] = fmt.Errorf("partition %d: undecodable log entry %d: %w", f.cfg.Partition, l.Index, err)
			continue
		}
		out[i], recs = f.applyCommand(l, &c, recs)
	}
	if f.cfg.Retain > 0 && f.next > f.first+f.cfg.Retain {
		f.first = f.next - f.cfg.Retain
		f.retained.Store(f.first)
	}
	f.mu.Unlock()
	if len(recs) > 0 {
		f.pmu.Lock()
		f.pending = append(f.pending, recs...)
		backlog := len(f.pending)
		f.pmu.Unlock()
		f.publish(recs[len(recs)-1].Offset + 1)
		if backlog >= flushBacklog {
			f.flush()
		}
	}
	return out
}

// flush appends the pending records to the stream log in one write and
// drops segments below the retention floor.
func (f *fsm) flush() {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.pmu.RLock()
	recs := f.pending
	f.pmu.RUnlock()
	floor := f.retained.Load()
	// Every record is encoded, framed, straight into one buffer: one
	// allocation and one copy of each payload per flush (with 1 KiB
	// payloads a flush is megabytes).
	skip := 0
	for skip < len(recs) && recs[skip].Offset < floor {
		skip++
	}
	if skip < len(recs) {
		size := 0
		for i := skip; i < len(recs); i++ {
			size += binary.MaxVarintLen64 + recordSize(&recs[i])
		}
		buf := make([]byte, 0, size)
		starts := make([]int, 0, len(recs)-skip)
		for i := skip; i < len(recs); i++ {
			starts = append(starts, len(buf))
			buf = binary.AppendUvarint(buf, uint64(recordLen(&recs[i]))) // the frame's length, then the record
			buf = appendRecord(buf, &recs[i])
		}
		if err := f.log.appendFrames(buf, starts, recs[skip].Offset); err != nil {
			// The stream store is derived state; failing to write it is
			// fatal for this replica's correctness, so stop serving it.
			panic(fmt.Sprintf("partition %d: stream store write failed: %v", f.cfg.Partition, err))
		}
	}
	if floor > 0 {
		f.log.dropBelow(floor)
	}
	if len(recs) == 0 {
		return
	}
	f.pmu.Lock()
	f.pending = append([]Record(nil), f.pending[len(recs):]...)
	f.flushed = recs[len(recs)-1].Offset + 1
	f.pmu.Unlock()
}

// flushLoop writes pending records every interval until stop closes.
func (f *fsm) flushLoop(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f.flush()
		}
	}
}

func (f *fsm) publish(hwm uint64) {
	f.hwm.Store(hwm)
	f.chMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.chMu.Unlock()
}

// waitChan returns a channel closed when the high watermark next moves.
func (f *fsm) waitChan() <-chan struct{} {
	f.chMu.Lock()
	defer f.chMu.Unlock()
	return f.changed
}

func (f *fsm) applyCommand(l *raft.Log, c *command, recs []Record) (any, []Record) {
	emit := func(ev reorder.Release[stamped], h string) {
		r := Record{Offset: f.next, SourceID: ev.Source, Epoch: l.Term, HLC: h, Node: c.N}
		if ev.Kind == reorder.EventGap {
			r.Type, r.FromSeq, r.ToSeq = RecordGap, ev.FromSeq, ev.ToSeq
			f.gaps++
			if f.hooks.gap != nil {
				f.hooks.gap(ev.ToSeq - ev.FromSeq + 1)
			}
		} else {
			m := ev.Value
			r.Type, r.Seq, r.MsgID, r.GroupKey, r.Fingerprint = RecordMessage, m.Seq, m.MsgID, m.GroupKey, m.Fingerprint
			r.EventTime, r.TraceID, r.Payload = m.EventTime, m.TraceID, m.Payload
		}
		recs = append(recs, r)
		f.next++
	}
	if c.H != "" {
		f.observe(c.H)
	}
	switch c.K {
	case cmdTick:
		for _, ev := range f.buf.Expire(c.T) {
			emit(ev, c.H)
		}
		return nil, recs
	case cmdPut:
		p := c.P
		to, _ := state.ParsePhase(p.State)
		out, v := state.Put(f.kv[p.Key], to, p.Value, p.Expected, l.Term, c.H)
		if out == state.Applied {
			v.Data, v.HLC = strings.Clone(v.Data), strings.Clone(v.HLC) // decoded strings share the entry's memory
			f.kv[strings.Clone(p.Key)] = v
		}
		return putResult{Outcome: out, Value: v}, recs
	case cmdBatch:
		res := make([]Result, len(c.M))
		for i := range c.M {
			m := &c.M[i]
			f.observe(m.H)
			r := Result{MsgID: m.MsgID, Partition: f.cfg.Partition, Epoch: l.Term, HLC: m.H, Node: c.N}
			switch {
			case m.Epoch > 0 && m.Epoch < l.Term:
				r.Status, r.Error = StatusStaleEpoch, fmt.Sprintf("epoch %d is stale: partition %d is at epoch %d", m.Epoch, f.cfg.Partition, l.Term)
			case !f.cfg.NoDedup && f.dd.Contains(m.MsgID, m.Fingerprint, c.T):
				r.Status = StatusDuplicate
				if f.hooks.dedupHit != nil {
					f.hooks.dedupHit("msg_id")
				}
			default:
				outcome, evs := f.buf.Offer(m.SourceID, m.Seq, c.T, *m)
				switch {
				case outcome == reorder.Accepted || f.cfg.NoDedup:
					r.Status = StatusOK
					if outcome != reorder.Accepted { // no-dedup: emit the copy anyway
						evs = []reorder.Release[stamped]{{Kind: reorder.EventMessage, Source: m.SourceID, Seq: m.Seq, Value: *m}}
					}
					if !f.cfg.NoDedup {
						f.dd.Insert(m.MsgID, m.Fingerprint, c.T) // Contains was false above
					}
					for _, ev := range evs {
						if ev.Kind == reorder.EventMessage && ev.Value.MsgID == m.MsgID && ev.Seq == m.Seq {
							off := int64(f.next)
							r.Offset = &off
						}
						emit(ev, m.H)
					}
				case outcome == reorder.Duplicate:
					r.Status = StatusDuplicate
					if f.hooks.dedupHit != nil {
						f.hooks.dedupHit("seq")
					}
				case outcome == reorder.Forgotten:
					r.Status, r.ErrorKind = StatusError, "late"
					r.Error = fmt.Sprintf("late: seq %d of source %s in partition %d is older than the gaps this partition still remembers; "+
						"it was either stored earlier or declared a gap, so it is not stored now", m.Seq, m.SourceID, f.cfg.Partition)
					if f.hooks.late != nil {
						f.hooks.late()
					}
				default:
					r.Status, r.ErrorKind = StatusError, "late"
					r.Error = fmt.Sprintf("late: seq %d of source %s in partition %d was already declared a gap", m.Seq, m.SourceID, f.cfg.Partition)
					if f.hooks.late != nil {
						f.hooks.late()
					}
				}
			}
			res[i] = r
		}
		return res, recs
	}
	return fmt.Errorf("unknown command kind %d", c.K), recs
}

func (f *fsm) observe(h string) {
	if f.hooks.observeHLC == nil {
		return
	}
	if ts, err := hlc.Parse(h); err == nil {
		f.hooks.observeHLC(ts)
	}
}

// get returns the state of key.
func (f *fsm) get(key string) state.Value {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.kv[key]
	if v.Phase == 0 {
		v.Phase = state.Init
	}
	return v
}

// depth and dedupLen are gauges.
func (f *fsm) stats() (depth, dedupLen int, gaps uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.buf.Depth(), f.dd.Len(), f.gaps
}

// read returns up to limit records from offset from (only records below
// the high watermark, i.e. committed and applied).
func (f *fsm) read(from uint64, limit int) ([]Record, uint64, error) {
	hwm := f.hwm.Load()
	recs := make([]Record, 0, min(limit, 256))
	if e := f.retained.Load(); from < e {
		return nil, hwm, &retainedError{earliest: e}
	}
	if from >= hwm {
		return recs, hwm, nil
	}
	f.pmu.RLock()
	pend, flushed := f.pending, f.flushed
	f.pmu.RUnlock()
	var err error
	if from < flushed {
		stored := min(flushed, hwm)
		err = f.log.scan(from, func(off uint64, raw []byte) (bool, error) {
			if off >= stored || len(recs) >= limit {
				return false, nil
			}
			var r Record
			if err := decodeRecord(raw, &r); err != nil {
				return false, fmt.Errorf("partition %d: stream record at offset %d: %w", f.cfg.Partition, off, err)
			}
			recs = append(recs, r)
			return true, nil
		})
	}
	for o := max(from, flushed); err == nil && o < hwm && len(recs) < limit; o++ {
		i := o - flushed
		if i >= uint64(len(pend)) {
			break
		}
		recs = append(recs, pend[i])
	}
	return recs, hwm, err
}

// snapshotFormatFramed marks a snapshot whose records follow the header as
// length-prefixed binary frames ([uvarint length][record]); without it
// (snapshots written before) they are JSON lines.
const snapshotFormatFramed = 2

// snapshotState is the in-memory part of a snapshot.
type snapshotState struct {
	Format    int                                     `json:"format,omitempty"`
	Partition int                                     `json:"partition"`
	Next      uint64                                  `json:"next"`
	First     uint64                                  `json:"first,omitempty"`
	Gaps      uint64                                  `json:"gaps"`
	Reorder   map[string]reorder.SourceState[stamped] `json:"reorder"`
	Dedup     []dedup.Entry                           `json:"dedup"`
	KV        map[string]state.Value                  `json:"kv"`
}

// Snapshot implements raft.FSM: it captures the in-memory state; Persist
// streams it and the output stream records below the captured offset.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.flush() // Persist reads every record below Next from the store
	f.mu.RLock()
	defer f.mu.RUnlock()
	kv := make(map[string]state.Value, len(f.kv))
	for k, v := range f.kv {
		kv[k] = v
	}
	return &fsmSnapshot{f: f, st: snapshotState{Format: snapshotFormatFramed, Partition: f.cfg.Partition, Next: f.next, First: f.first, Gaps: f.gaps,
		Reorder: f.buf.State(), Dedup: f.dd.Entries(), KV: kv}}, nil
}

type fsmSnapshot struct {
	f  *fsm
	st snapshotState
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	err := func() error {
		// Retention may have dropped records since Snapshot: the snapshot
		// starts at the first record still held (records are contiguous up
		// to Next, which Snapshot flushed).
		st := s.st
		if first, _ := s.f.log.bounds(); first > st.First {
			st.First = min(first, st.Next)
		}
		// The stream log's segments hold the records framed exactly as a
		// snapshot frames them ([uvarint length][record]): their bytes are
		// copied as they are, not read and written record by record.
		ranges, err := s.f.log.frames(st.First, st.Next)
		if err != nil {
			return err
		}
		if err := json.NewEncoder(w).Encode(&st); err != nil {
			return err
		}
		for _, r := range ranges {
			n, err := io.Copy(w, io.NewSectionReader(r.f, r.start, r.end-r.start))
			if err != nil {
				return err
			}
			if n != r.end-r.start {
				return fmt.Errorf("stream log: segment ends %d bytes short of its records", r.end-r.start-n)
			}
		}
		return nil
	}()
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the state and rewrites the
// output stream from the snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<16)
	dec := json.NewDecoder(br)
	var st snapshotState
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("partition %d: snapshot header: %w", f.cfg.Partition, err)
	}
	if st.First > st.Next {
		return fmt.Errorf("partition %d: snapshot header: first offset %d is past next %d", f.cfg.Partition, st.First, st.Next)
	}
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.pmu.Lock()
	f.pending, f.flushed = nil, 0
	f.pmu.Unlock()
	f.log.reset(st.First)
	n := st.First // records are numbered from the earliest kept
	var frames *bufio.Reader
	if st.Format == snapshotFormatFramed {
		frames = bufio.NewReaderSize(io.MultiReader(dec.Buffered(), br), 1<<16)
		if c, err := frames.ReadByte(); err != nil || c != '\n' {
			return fmt.Errorf("partition %d: snapshot header is not followed by a newline", f.cfg.Partition)
		}
	} else if st.Format != 0 {
		return fmt.Errorf("partition %d: snapshot format %d is newer than this node understands (%d)", f.cfg.Partition, st.Format, snapshotFormatFramed)
	}
	next := func(want uint64) ([]byte, error) {
		if frames == nil {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			return raw, err
		}
		size, err := binary.ReadUvarint(frames)
		if err != nil {
			return nil, err // io.EOF between frames: the end
		}
		if size == 0 || size > maxSnapshotRecord {
			return nil, fmt.Errorf("frame of %d bytes", size)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(frames, b); err != nil {
			return nil, fmt.Errorf("frame of %d bytes: %w", size, err)
		}
		var r Record
		if err := decodeRecord(b, &r); err != nil {
			return nil, err
		}
		if r.Offset != want {
			return nil, fmt.Errorf("record has offset %d", r.Offset)
		}
		return b, nil
	}
	var last []byte
	for {
		batch := make([][]byte, 0, 4096)
		for len(batch) < 4096 {
			raw, err := next(n + uint64(len(batch)))
			if err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("partition %d: snapshot record %d: %w", f.cfg.Partition, n+uint64(len(batch)), err)
			}
			batch = append(batch, raw)
		}
		if len(batch) == 0 {
			break
		}
		if err := f.log.append(batch, n); err != nil {
			return err
		}
		n += uint64(len(batch))
		last = batch[len(batch)-1]
	}
	// The snapshot's newest stamp is one this node's clock must not go
	// below once it leads (as applying the entries would have made it
	// observe).
	if last != nil {
		var r Record
		var err error
		if frames != nil {
			err = decodeRecord(last, &r)
		} else {
			err = json.Unmarshal(last, &r)
		}
		if err == nil && r.HLC != "" {
			f.observe(r.HLC)
		}
	}
	if n != st.Next {
		return fmt.Errorf("partition %d: snapshot holds %d records, header says %d", f.cfg.Partition, n-st.First, st.Next-st.First)
	}
	f.mu.Lock()
	f.buf.Restore(st.Reorder)
	f.dd.Restore(st.Dedup)
	f.kv = st.KV
	if f.kv == nil {
		f.kv = map[string]state.Value{}
	}
	f.next, f.gaps, f.first = st.Next, st.Gaps, st.First
	f.mu.Unlock()
	f.pmu.Lock()
	f.flushed = st.Next
	f.retained.Store(st.First)
	f.pmu.Unlock()
	f.publish(st.Next)
	return nil
}
