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

	"github.com/chaosgate/chaosgate/internal/writeback"
)

// WAL is a raft.LogStore on append-only segment files: a batch of entries
// is one write and one fsync (group commit), where a B+tree store needs two.
// Each record is [u32 length][u32 crc32c][entry]; a torn tail after a crash
// is detected by the checksum and cut off on open.
type WAL struct {
	dir          string
	maxSize      int64
	syncInterval time.Duration

	mu   sync.Mutex
	segs []*segment // ordered by first index; each holds contiguous indexes

	stopSync chan struct{}
	syncDone chan struct{}
}

// WALOptions tune a WAL.
type WALOptions struct {
	// MaxSize is the segment size at which a new segment starts (default
	// 64 MiB).
	MaxSize int64
	// SyncInterval is 0 (the default) to fsync every append before it
	// returns: an acknowledged entry survives a power loss. Above 0, an
	// append returns once it is in the page cache and a background flush
	// fsyncs it within SyncInterval: an entry survives a crash of the
	// process, and a power loss of fewer than a majority of the replicas
	// at once (the durability of NATS JetStream's default sync_interval).
	SyncInterval time.Duration
}

type segment struct {
	base    uint64 // index of offs[0]
	first   uint64 // logical first index (>= base after a prefix trim)
	offs    []int64
	size    int64
	path    string
	f       *os.File
	retired bool
	dirty   bool // appended since the last fsync (SyncInterval > 0)
	// writeback starts writing appended entries to disk every
	// writebackBytes (SyncInterval > 0).
	writeback writeback.Pacer
}

// writebackBytes is how much a segment appends, when appends are not
// fsynced one by one, between two starts of its writeback.
const writebackBytes = 1 << 20

// newSegment is an empty segment whose first entry will be base, kept in
// f at path.
func newSegment(base uint64, path string, f *os.File) *segment {
	return &segment{base: base, first: base, path: path, f: f, writeback: writeback.Pacer{F: f, Every: writebackBytes}}
}

func (s *segment) last() uint64 {
	if len(s.offs) == 0 {
		return 0
	}
	return s.base + uint64(len(s.offs)) - 1
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenWAL opens or creates the log in dir, fsyncing every append. Segments
// rotate at maxSize bytes.
func OpenWAL(dir string, maxSize int64) (*WAL, error) {
	return OpenWALWithOptions(dir, WALOptions{MaxSize: maxSize})
}

// OpenWALWithOptions opens or creates the log in dir.
func OpenWALWithOptions(dir string, o WALOptions) (*WAL, error) {
	maxSize := o.MaxSize
	if maxSize <= 0 {
		maxSize = 64 << 20
	}
	if o.SyncInterval < 0 {
		return nil, fmt.Errorf("raft wal: negative sync interval %v", o.SyncInterval)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, maxSize: maxSize, syncInterval: o.SyncInterval}
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	trim := w.readTrim()
	for _, name := range names {
		base, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".wal"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("raft wal: unexpected file %s", name)
		}
		s, err := openSegment(name, base)
		if err != nil {
			w.Close()
			return nil, err
		}
		if len(s.offs) == 0 || s.last() < trim {
			s.f.Close()
			_ = os.Remove(name)
			continue
		}
		s.first = max(s.base, trim)
		w.segs = append(w.segs, s)
	}
	if w.syncInterval > 0 {
		w.stopSync, w.syncDone = make(chan struct{}), make(chan struct{})
		go w.flusher()
	}
	return w, nil
}

// flusher fsyncs appended segments every syncInterval.
func (w *WAL) flusher() {
	defer close(w.syncDone)
	t := time.NewTicker(w.syncInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stopSync:
			return
		case <-t.C:
			w.mu.Lock()
			w.syncDirty()
			w.mu.Unlock()
		}
	}
}

// syncDirty fsyncs every segment written since its last fsync. w.mu held.
func (w *WAL) syncDirty() {
	for _, s := range w.segs {
		if s.dirty && s.f.Sync() == nil { // a failed flush is retried on the next tick
			s.dirty = false
		}
	}
}

func openSegment(path string, base uint64) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	s := newSegment(base, path, f)
	var hdr [8]byte
	var off int64
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(hdr[:4]))
		// An entry is at least its fixed fields (see decodeLog) and at most
		// 1 GiB: anything else is a torn or zeroed tail, not a record, and
		// must neither be allocated nor read as one.
		if n < minLogEntry || n > 1<<30 {
			break
		}
		body := make([]byte, n)
		if _, err := f.ReadAt(body, off+8); err != nil {
			break
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		if idx := binary.BigEndian.Uint64(body); idx != base+uint64(len(s.offs)) {
			break
		}
		s.offs = append(s.offs, off)
		off += 8 + n
	}
	if st, err := f.Stat(); err == nil && st.Size() != off { // torn tail
		if err := f.Truncate(off); err != nil {
			f.Close()
			return nil, err
		}
		_ = f.Sync()
	}
	s.size = off
	return s, nil
}

func (w *WAL) trimPath() string { return filepath.Join(w.dir, "first-index") }

func (w *WAL) readTrim() uint64 {
	b, err := os.ReadFile(w.trimPath())
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// Close closes every segment.
func (w *WAL) Close() error {
	if w.stopSync != nil {
		select {
		case <-w.stopSync:
		default:
			close(w.stopSync)
		}
		<-w.syncDone
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncDirty()
	for _, s := range w.segs {
		s.f.Close()
	}
	w.segs = nil
	return nil
}

// FirstIndex returns the first index held, 0 when empty.
func (w *WAL) FirstIndex() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) == 0 {
		return 0, nil
	}
	return w.segs[0].first, nil
}

// LastIndex returns the last index held, 0 when empty.
func (w *WAL) LastIndex() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) == 0 {
		return 0, nil
	}
	return w.segs[len(w.segs)-1].last(), nil
}

// GetLog reads entry index.
func (w *WAL) GetLog(index uint64, l *raft.Log) error {
	w.mu.Lock()
	var s *segment
	for i := len(w.segs) - 1; i >= 0; i-- {
		if c := w.segs[i]; index >= c.first && index <= c.last() {
			s = c
			break
		}
	}
	if s == nil {
		w.mu.Unlock()
		return raft.ErrLogNotFound
	}
	off := s.offs[index-s.base]
	end := s.size
	if k := index - s.base + 1; k < uint64(len(s.offs)) {
		end = s.offs[k]
	}
	f := s.f
	w.mu.Unlock()
	buf := make([]byte, end-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("raft wal: read entry %d: %w", index, err)
	}
	return decodeLog(buf[8:], l)
}

// StoreLog appends one entry.
func (w *WAL) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries with one write and, unless SyncInterval is
// set, one fsync.
func (w *WAL) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("raft wal: entries %d and %d are not contiguous", logs[i-1].Index, logs[i].Index)
		}
	}
	var s *segment
	if n := len(w.segs); n > 0 {
		s = w.segs[n-1]
		switch last := s.last(); {
		case logs[0].Index <= last:
			return fmt.Errorf("raft wal: entry %d already stored (last %d); delete the suffix first", logs[0].Index, last)
		case logs[0].Index != last+1 || s.size >= w.maxSize:
			s = nil // a jump (after a snapshot install) or a full segment
		}
	}
	if s == nil {
		var err error
		if s, err = w.newSegment(logs[0].Index); err != nil {
			return err
		}
	}
	// One buffer sized for the whole batch; each entry is encoded in place
	// after room for its [length][crc] header, filled in once it is known.
	size := 0
	for _, l := range logs {
		size += 8 + logSize(l)
	}
	buf := make([]byte, 0, size)
	offs := make([]int64, 0, len(logs))
	for _, l := range logs {
		at := len(buf)
		offs = append(offs, s.size+int64(at))
		buf = appendLog(append(buf, make([]byte, 8)...), l)
		body := buf[at+8:]
		binary.BigEndian.PutUint32(buf[at:], uint32(len(body)))
		binary.BigEndian.PutUint32(buf[at+4:], crc32.Checksum(body, castagnoli))
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		return fmt.Errorf("raft wal: append: %w", err)
	}
	if w.syncInterval == 0 {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("raft wal: fsync: %w", err)
		}
	} else {
		s.dirty = true
		// Start writing the entries to disk every writebackBytes, so the
		// fsync that ends the segment (or the background flush) has little
		// left to do: left to the kernel, tens of MiB are written back at
		// once and the journal commit of every fsync on the disk waits for
		// them.
		s.writeback.Wrote(len(buf))
	}
	s.offs = append(s.offs, offs...)
	s.size += int64(len(buf))
	return nil
}

func (w *WAL) newSegment(base uint64) (*segment, error) {
	w.syncDirty() // a segment is complete on disk before the next one starts
	path := filepath.Join(w.dir, fmt.Sprintf("%020d.wal", base))
	_ = os.Remove(path) // a stale file of a suffix deleted earlier
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	syncDir(w.dir)
	s := newSegment(base, path, f)
	w.segs = append(w.segs, s)
	return s, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// DeleteRange deletes min..max inclusive: raft only deletes a prefix
// (compaction after a snapshot) or a suffix (a conflicting tail).
func (w *WAL) DeleteRange(min, max uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) == 0 || max < min {
		return nil
	}
	first, last := w.segs[0].first, w.segs[len(w.segs)-1].last()
	switch {
	case min <= first: // prefix
		keep := w.segs[:0]
		for _, s := range w.segs {
			if s.last() <= max {
				s.f.Close()
				_ = os.Remove(s.path)
				continue
			}
			if s.first <= max {
				s.first = max + 1
			}
			keep = append(keep, s)
		}
		w.segs = keep
		if err := writeFileSync(w.trimPath(), []byte(strconv.FormatUint(max+1, 10)+"\n")); err != nil {
			return err
		}
		syncDir(w.dir)
		return nil
	case max >= last: // suffix
		for len(w.segs) > 0 {
			s := w.segs[len(w.segs)-1]
			if s.first >= min {
				s.f.Close()
				_ = os.Remove(s.path)
				w.segs = w.segs[:len(w.segs)-1]
				continue
			}
			if s.last() >= min {
				k := min - s.base
				s.size = s.offs[k]
				s.offs = s.offs[:k]
				if err := s.f.Truncate(s.size); err != nil {
					return err
				}
				if err := s.f.Sync(); err != nil {
					return err
				}
			}
			break
		}
		syncDir(w.dir)
		return nil
	}
	return fmt.Errorf("raft wal: cannot delete %d..%d from the middle of %d..%d", min, max, first, last)
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
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
	return os.Rename(tmp, path)
}

var _ raft.LogStore = (*WAL)(nil)
