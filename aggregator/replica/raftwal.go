package replica

import (
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	walsegment "github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// RaftWAL is github.com/hashicorp/raft-wal (the log store of Consul and
// Vault): a raft.LogStore and a raft.StableStore in one directory —
// append-only segment files, preallocated and sealed with an index frame,
// plus a bbolt file holding the segment list and the stable keys.
//
// raft-wal fsyncs the tail segment at the end of every StoreLogs (one write
// and one fsync per batch of entries) and has no setting to defer it. With
// RaftWALOptions.SyncInterval above 0 the files it writes go through a file
// system layer whose Sync only marks the file dirty; a background flush
// fsyncs dirty files every SyncInterval, and before raft-wal commits a new
// segment list (a sealed segment is durable before the list names it
// sealed). An append then returns once in the page cache, as with WAL's
// SyncInterval.
//
// raft-wal v0.4.1 seals a full segment inside an append and records the
// seal in its segment list afterwards, in the background; a process that
// dies in between leaves a sealed tail that raft-wal reopens as writable,
// and then refuses every append ("segment is sealed"). OpenRaftWAL finds
// such a tail and rotates it (see repairSealedTail); Close waits for a
// rotation in flight, so a clean shutdown never leaves one.
type RaftWAL struct {
	*wal.WAL
	// RepairedSealedTail is set when Open found a sealed tail and rotated
	// it.
	RepairedSealedTail bool
	lazy               *lazySyncFS // nil: every append is fsynced
	stopSync           chan struct{}
	syncDone           chan struct{}
	once               sync.Once
}

// RaftWALOptions tune a RaftWAL.
type RaftWALOptions struct {
	// SegmentSize is the size of a segment file, preallocated when it is
	// created (default: raft-wal's, 64 MiB).
	SegmentSize int
	// SyncInterval is 0 (the default) to keep raft-wal's fsync of every
	// append; above 0, appends are fsynced in the background within it (see
	// RaftWAL).
	SyncInterval time.Duration
	// Logger receives raft-wal's logs (default: none).
	Logger hclog.Logger
}

// OpenRaftWAL opens or creates a raft-wal log and stable store in dir.
func OpenRaftWAL(dir string, o RaftWALOptions) (*RaftWAL, error) {
	if o.SyncInterval < 0 {
		return nil, fmt.Errorf("raft-wal %s: negative sync interval %v", dir, o.SyncInterval)
	}
	if o.SegmentSize < 0 || o.SegmentSize > math.MaxInt32 {
		return nil, fmt.Errorf("raft-wal %s: segment size %d: want 0 (default) to %d bytes", dir, o.SegmentSize, math.MaxInt32)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = wal.DefaultSegmentSize
	}
	r := &RaftWAL{}
	var vfs types.VFS = walfs.New()
	var meta types.MetaStore = &metadb.BoltMetaDB{}
	if o.SyncInterval > 0 {
		r.lazy = &lazySyncFS{VFS: vfs, dirty: map[*lazyFile]struct{}{}}
		vfs, meta = r.lazy, &flushingMetaStore{MetaStore: meta, fs: r.lazy}
	}
	filer := &sealAwareFiler{SegmentFiler: walsegment.NewFiler(dir, vfs)}
	w, err := wal.Open(dir, wal.WithLogger(o.Logger), wal.WithSegmentSize(o.SegmentSize),
		wal.WithSegmentFiler(filer), wal.WithMetaStore(meta))
	if err != nil {
		return nil, fmt.Errorf("open raft-wal %s: %w", dir, err)
	}
	r.WAL = w
	if filer.sealedTail {
		if err := r.repairSealedTail(); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("open raft-wal %s: rotate the sealed tail segment left by a crash: %w", dir, err)
		}
		r.RepairedSealedTail = true
	}
	if r.lazy != nil {
		r.stopSync, r.syncDone = make(chan struct{}), make(chan struct{})
		go r.flusher(o.SyncInterval)
	}
	return r, nil
}

func (r *RaftWAL) flusher(every time.Duration) {
	defer close(r.syncDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stopSync:
			return
		case <-t.C:
			_ = r.lazy.flush() // a failed fsync leaves the file dirty: retried on the next tick
		}
	}
}

// repairSealedTail makes raft-wal rotate a tail segment that was sealed
// but not recorded as sealed: it deletes the last entry (a suffix
// truncation seals the tail in the segment list and starts a new segment)
// and appends it again, fsynced, to the new segment. A crash between the
// two loses that one entry from this replica only — raft's majority still
// holds it; the same as a torn last append.
func (r *RaftWAL) repairSealedTail() error {
	last, err := r.WAL.LastIndex()
	if err != nil {
		return err
	}
	if last == 0 {
		return fmt.Errorf("sealed tail segment holds no entries")
	}
	var l raft.Log
	if err := r.WAL.GetLog(last, &l); err != nil {
		return fmt.Errorf("read last entry %d: %w", last, err)
	}
	if err := r.WAL.DeleteRange(last, last); err != nil {
		return fmt.Errorf("truncate entry %d: %w", last, err)
	}
	if err := r.WAL.StoreLogs([]*raft.Log{&l}); err != nil {
		return fmt.Errorf("append entry %d again: %w", last, err)
	}
	return nil
}

// awaitRotation returns once a segment rotation raft-wal runs in the
// background has finished: DeleteRange of a range below the log waits for
// it and deletes nothing.
func (r *RaftWAL) awaitRotation() error {
	first, err := r.WAL.FirstIndex()
	if err != nil || first == 0 {
		return err
	}
	return r.WAL.DeleteRange(0, 0)
}

// Close waits for a segment rotation in flight, stops the background
// flush, fsyncs what it had not, and closes the log. It is safe to call
// twice.
func (r *RaftWAL) Close() error {
	var err error
	r.once.Do(func() {
		err = r.awaitRotation()
		if r.lazy != nil {
			close(r.stopSync)
			<-r.syncDone
			if ferr := r.lazy.flush(); err == nil {
				err = ferr
			}
		}
		if cerr := r.WAL.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// sealAwareFiler notes whether the tail segment raft-wal recovers on open
// is already sealed.
type sealAwareFiler struct {
	types.SegmentFiler
	sealedTail bool
}

func (f *sealAwareFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.RecoverTail(info)
	if err != nil {
		return nil, err
	}
	if sealed, _, serr := w.Sealed(); serr == nil && sealed {
		f.sealedTail = true
	}
	return w, nil
}

// lazySyncFS is raft-wal's file system with Sync deferred: Sync marks a
// file dirty and flush fsyncs every dirty file.
type lazySyncFS struct {
	types.VFS
	mu    sync.Mutex
	dirty map[*lazyFile]struct{}
}

func (l *lazySyncFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := l.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return &lazyFile{WritableFile: f, fs: l}, nil
}

func (l *lazySyncFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := l.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &lazyFile{WritableFile: f, fs: l}, nil
}

// flush fsyncs every dirty file; it returns the first error, and files whose
// fsync failed stay dirty.
func (l *lazySyncFS) flush() error {
	l.mu.Lock()
	files := make([]*lazyFile, 0, len(l.dirty))
	for f := range l.dirty {
		files = append(files, f)
		delete(l.dirty, f)
	}
	l.mu.Unlock()
	var first error
	for _, f := range files {
		if err := f.syncNow(); err != nil {
			l.mark(f)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (l *lazySyncFS) mark(f *lazyFile) {
	l.mu.Lock()
	l.dirty[f] = struct{}{}
	l.mu.Unlock()
}

func (l *lazySyncFS) forget(f *lazyFile) {
	l.mu.Lock()
	delete(l.dirty, f)
	l.mu.Unlock()
}

// lazyFile is a segment file whose Sync is deferred to its lazySyncFS.
type lazyFile struct {
	types.WritableFile
	fs     *lazySyncFS
	mu     sync.Mutex
	closed bool
}

// Sync marks the file for the next background flush.
func (f *lazyFile) Sync() error {
	f.fs.mark(f)
	return nil
}

func (f *lazyFile) syncNow() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil // Close fsynced it
	}
	return f.WritableFile.Sync()
}

// Close fsyncs what the file has not yet fsynced (a sealed segment stays
// readable and complete), then closes it.
func (f *lazyFile) Close() error {
	f.fs.forget(f)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.WritableFile.Sync()
	if cerr := f.WritableFile.Close(); err == nil {
		err = cerr
	}
	return err
}

// flushingMetaStore fsyncs the dirty segment files before raft-wal commits
// a new segment list, so the list never names data that is not on disk.
type flushingMetaStore struct {
	types.MetaStore
	fs *lazySyncFS
}

func (m *flushingMetaStore) CommitState(s types.PersistentState) error {
	if err := m.fs.flush(); err != nil {
		return fmt.Errorf("raft-wal: fsync segments before committing the segment list: %w", err)
	}
	return m.MetaStore.CommitState(s)
}
