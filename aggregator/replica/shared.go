package replica

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// SharedWAL is one append-only log for every raft group of a node: appends
// that different groups make at the same moment are written together and
// covered by a single fsync (group commit across partitions), so the fsync
// rate does not grow with the number of partitions. Each group sees its own
// raft.LogStore (Group). Deletions are logical and recorded as marker
// records; a segment file is removed once no group needs any entry in it.
//
// Record: [u32 length][u32 crc32c][u8 kind][u32 group][body]; kinds: entry
// (body = encoded raft.Log), trim (first index kept), cut (suffix deleted
// from this index).
type SharedWAL struct {
	dir          string
	maxSize      int64
	syncInterval time.Duration // 0: fsync every write (see WALOptions)

	mu     sync.Mutex
	segs   []*sharedSeg
	groups map[uint32]*groupIndex
	active *sharedSeg

	reqs   chan *walReq
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

type sharedSeg struct {
	id    uint64
	path  string
	f     *os.File
	size  int64
	dirty bool              // written since the last fsync
	maxI  map[uint32]uint64 // per group: highest entry index stored here
	// markers: the segment holds trim/cut records, which must outlive every
	// older segment still on disk (replay applies them in order).
	markers bool
}

type loc struct {
	seg *sharedSeg
	off int64
	n   int32
}

type groupIndex struct {
	base uint64 // index of locs[0]
	locs []loc
}

func (g *groupIndex) first() uint64 {
	if len(g.locs) == 0 {
		return 0
	}
	return g.base
}

func (g *groupIndex) last() uint64 {
	if len(g.locs) == 0 {
		return 0
	}
	return g.base + uint64(len(g.locs)) - 1
}

const (
	recEntry = 1 + iota
	recTrim
	recCut
)

type walReq struct {
	group uint32
	kind  byte
	logs  []*raft.Log
	index uint64
	err   chan error
}

// OpenSharedWAL opens or creates the shared log in dir and replays it,
// fsyncing every write.
func OpenSharedWAL(dir string, maxSize int64) (*SharedWAL, error) {
	return OpenSharedWALWithOptions(dir, WALOptions{MaxSize: maxSize})
}

// OpenSharedWALWithOptions opens or creates the shared log in dir and
// replays it.
func OpenSharedWALWithOptions(dir string, o WALOptions) (*SharedWAL, error) {
	maxSize := o.MaxSize
	if maxSize <= 0 {
		maxSize = 64 << 20
	}
	if o.SyncInterval < 0 {
		return nil, fmt.Errorf("raft log: negative sync interval %v", o.SyncInterval)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &SharedWAL{dir: dir, maxSize: maxSize, syncInterval: o.SyncInterval, groups: map[uint32]*groupIndex{},
		reqs: make(chan *walReq, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".log"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("raft log: unexpected file %s", name)
		}
		if err := w.replay(name, id); err != nil {
			w.closeFiles()
			return nil, err
		}
	}
	w.gc()
	go w.writer()
	return w, nil
}

func (w *SharedWAL) replay(path string, id uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	s := &sharedSeg{id: id, path: path, f: f, maxI: map[uint32]uint64{}}
	var hdr [8]byte
	var off int64
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(hdr[:4]))
		if n < 5 || n > 1<<30 {
			break
		}
		body := make([]byte, n)
		if _, err := f.ReadAt(body, off+8); err != nil {
			break
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		kind, group := body[0], binary.BigEndian.Uint32(body[1:5])
		rest := body[5:]
		if len(rest) < 8 {
			// Every record starts with an index: a shorter one is damage
			// that its checksum happened to match.
			f.Close()
			return fmt.Errorf("raft log %s: record of %d bytes at offset %d is too short for its index", path, n, off)
		}
		switch kind {
		case recEntry:
			w.place(s, group, binary.BigEndian.Uint64(rest), off, int32(8+n))
		case recTrim:
			s.markers = true
			w.applyTrim(group, binary.BigEndian.Uint64(rest))
		case recCut:
			s.markers = true
			w.applyCut(group, binary.BigEndian.Uint64(rest))
		}
		off += 8 + n
	}
	if st, err := f.Stat(); err == nil && st.Size() != off { // torn tail
		if err := f.Truncate(off); err != nil {
			f.Close()
			return err
		}
		_ = f.Sync()
	}
	s.size = off
	w.segs = append(w.segs, s)
	w.active = s
	return nil
}

// place records entry index of group at (s, off).
func (w *SharedWAL) place(s *sharedSeg, group uint32, index uint64, off int64, n int32) {
	g := w.groups[group]
	if g == nil {
		g = &groupIndex{}
		w.groups[group] = g
	}
	switch {
	case len(g.locs) == 0 || index > g.last()+1 || index < g.base:
		g.base, g.locs = index, g.locs[:0] // a fresh start or a jump after a snapshot install
	case index <= g.last():
		g.locs = g.locs[:index-g.base] // overwrite of a deleted suffix
	}
	g.locs = append(g.locs, loc{seg: s, off: off, n: n})
	s.maxI[group] = max(s.maxI[group], index)
}

func (w *SharedWAL) applyTrim(group uint32, first uint64) {
	g := w.groups[group]
	if g == nil || len(g.locs) == 0 || first <= g.base {
		return
	}
	if first > g.last() {
		g.locs = g.locs[:0]
		g.base = first
		return
	}
	g.locs = append([]loc(nil), g.locs[first-g.base:]...)
	g.base = first
}

func (w *SharedWAL) applyCut(group uint32, from uint64) {
	g := w.groups[group]
	if g == nil || len(g.locs) == 0 || from > g.last() {
		return
	}
	if from <= g.base {
		g.locs = g.locs[:0]
		return
	}
	g.locs = g.locs[:from-g.base]
}

// gc removes segments no group needs any more (never the active one).
func (w *SharedWAL) gc() {
	keep := w.segs[:0]
	for _, s := range w.segs {
		needed := s == w.active || (s.markers && len(keep) > 0)
		for grp, mx := range s.maxI {
			if g := w.groups[grp]; g != nil && len(g.locs) > 0 && mx >= g.base {
				needed = true
				break
			}
		}
		if needed {
			keep = append(keep, s)
			continue
		}
		s.f.Close()
		_ = os.Remove(s.path)
	}
	w.segs = keep
}

// writer batches every pending request into one write and one fsync.
func (w *SharedWAL) writer() {
	defer close(w.done)
	var tick <-chan time.Time
	if w.syncInterval > 0 {
		t := time.NewTicker(w.syncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var batch []*walReq
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		case <-tick:
			w.mu.Lock()
			w.syncDirty()
			w.mu.Unlock()
			continue
		case <-w.stop:
			return
		}
	more:
		for len(batch) < 4096 {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		err := w.write(batch)
		for _, r := range batch {
			r.err <- err
		}
	}
}

func (w *SharedWAL) write(batch []*walReq) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active == nil || w.active.size >= w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	s := w.active
	type placed struct {
		group uint32
		index uint64
		off   int64
		n     int32
	}
	var buf []byte
	var ps []placed
	rec := func(kind byte, group uint32, body []byte) int64 {
		off := s.size + int64(len(buf))
		payload := make([]byte, 0, 5+len(body))
		payload = append(payload, kind)
		payload = binary.BigEndian.AppendUint32(payload, group)
		payload = append(payload, body...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(payload, castagnoli))
		buf = append(buf, payload...)
		return off
	}
	for _, r := range batch {
		switch r.kind {
		case recEntry:
			for _, l := range r.logs {
				body := encodeLog(l)
				off := rec(recEntry, r.group, body)
				ps = append(ps, placed{r.group, l.Index, off, int32(8 + 5 + len(body))})
			}
		default:
			s.markers = true
			rec(r.kind, r.group, binary.BigEndian.AppendUint64(nil, r.index))
		}
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		return fmt.Errorf("raft log append: %w", err)
	}
	if w.syncInterval == 0 {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("raft log fsync: %w", err)
		}
	} else {
		s.dirty = true
	}
	s.size += int64(len(buf))
	i := 0
	for _, r := range batch {
		switch r.kind {
		case recEntry:
			for range r.logs {
				p := ps[i]
				w.place(s, p.group, p.index, p.off, p.n)
				i++
			}
		case recTrim:
			w.applyTrim(r.group, r.index)
		case recCut:
			w.applyCut(r.group, r.index)
		}
	}
	if len(w.segs) > 1 {
		w.gc()
	}
	return nil
}

// syncDirty fsyncs every segment written since its last fsync. w.mu held.
func (w *SharedWAL) syncDirty() {
	for _, s := range w.segs {
		if s.dirty && s.f.Sync() == nil { // a failed flush is retried on the next tick
			s.dirty = false
		}
	}
}

func (w *SharedWAL) rotate() error {
	w.syncDirty() // a segment is complete on disk before the next one starts
	var id uint64 = 1
	if w.active != nil {
		id = w.active.id + 1
	}
	path := filepath.Join(w.dir, fmt.Sprintf("%020d.log", id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	syncDir(w.dir)
	s := &sharedSeg{id: id, path: path, f: f, maxI: map[uint32]uint64{}}
	w.segs = append(w.segs, s)
	w.active = s
	return nil
}

func (w *SharedWAL) submit(r *walReq) error {
	r.err = make(chan error, 1)
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return fmt.Errorf("raft log closed")
	}
	select {
	case w.reqs <- r:
	case <-w.done:
		return fmt.Errorf("raft log closed")
	}
	select {
	case err := <-r.err:
		return err
	case <-w.done:
		return fmt.Errorf("raft log closed")
	}
}

// Close stops the writer and closes the files.
func (w *SharedWAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncDirty()
	w.closeFiles()
	return nil
}

func (w *SharedWAL) closeFiles() {
	for _, s := range w.segs {
		s.f.Close()
	}
	w.segs = nil
}

// Group returns the raft.LogStore of one raft group.
func (w *SharedWAL) Group(id uint32) raft.LogStore { return &groupLog{w: w, id: id} }

type groupLog struct {
	w  *SharedWAL
	id uint32
}

func (g *groupLog) FirstIndex() (uint64, error) {
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	if gi := g.w.groups[g.id]; gi != nil {
		return gi.first(), nil
	}
	return 0, nil
}

func (g *groupLog) LastIndex() (uint64, error) {
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	if gi := g.w.groups[g.id]; gi != nil {
		return gi.last(), nil
	}
	return 0, nil
}

func (g *groupLog) GetLog(index uint64, l *raft.Log) error {
	g.w.mu.Lock()
	gi := g.w.groups[g.id]
	if gi == nil || len(gi.locs) == 0 || index < gi.base || index > gi.last() {
		g.w.mu.Unlock()
		return raft.ErrLogNotFound
	}
	lc := gi.locs[index-gi.base]
	f := lc.seg.f
	g.w.mu.Unlock()
	buf := make([]byte, lc.n)
	if _, err := f.ReadAt(buf, lc.off); err != nil {
		return fmt.Errorf("raft log: read entry %d of group %d: %w", index, g.id, err)
	}
	return decodeLog(buf[13:], l)
}

func (g *groupLog) StoreLog(l *raft.Log) error { return g.StoreLogs([]*raft.Log{l}) }

func (g *groupLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("raft log: entries %d and %d are not contiguous", logs[i-1].Index, logs[i].Index)
		}
	}
	return g.w.submit(&walReq{group: g.id, kind: recEntry, logs: logs})
}

func (g *groupLog) DeleteRange(min, max uint64) error {
	g.w.mu.Lock()
	gi := g.w.groups[g.id]
	if gi == nil || len(gi.locs) == 0 || max < min {
		g.w.mu.Unlock()
		return nil
	}
	first, last := gi.first(), gi.last()
	g.w.mu.Unlock()
	switch {
	case min <= first:
		return g.w.submit(&walReq{group: g.id, kind: recTrim, index: max + 1})
	case max >= last:
		return g.w.submit(&walReq{group: g.id, kind: recCut, index: min})
	}
	return fmt.Errorf("raft log: cannot delete %d..%d from the middle of %d..%d", min, max, first, last)
}
