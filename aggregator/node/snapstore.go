package node

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/chaosgate/chaosgate/internal/writeback"
)

// snapshotWritebackBytes is how much snapshot state is written between two
// writeback starts.
const snapshotWritebackBytes = 4 << 20

// snapshotStore is raft's file snapshot store whose sinks send the state to
// disk as it is written, a few MiB at a time, instead of leaving it all to
// the fsync that closes the snapshot. A snapshot carries the retained
// stream (up to ~100 MiB per partition with 1 KiB payloads); flushed in one
// go, the file system's journal commit behind it holds up every raft log
// fsync on the disk for as long as the whole file takes to write.
type snapshotStore struct {
	*raft.FileSnapshotStore
	dir string // where the store keeps its snapshots
}

func newSnapshotStore(base string, retain int, logger hclog.Logger) (*snapshotStore, error) {
	fs, err := raft.NewFileSnapshotStoreWithLogger(base, retain, logger)
	if err != nil {
		return nil, err
	}
	return &snapshotStore{FileSnapshotStore: fs, dir: filepath.Join(base, "snapshots")}, nil
}

// Create implements raft.SnapshotStore.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	// The file the sink writes (raft's layout: snapshots/<id>.tmp/state.bin
	// until the sink closes). Without it the sink is used as it is.
	f, err := os.Open(filepath.Join(s.dir, sink.ID()+".tmp", "state.bin"))
	if err != nil {
		return sink, nil
	}
	return &writebackSink{SnapshotSink: sink, f: f, pacer: writeback.Pacer{F: f, Every: snapshotWritebackBytes}}, nil
}

// writebackSink starts writing the state file to disk every
// snapshotWritebackBytes.
type writebackSink struct {
	raft.SnapshotSink
	f     *os.File // the state file, opened for the writeback hints only
	pacer writeback.Pacer
}

func (w *writebackSink) Write(b []byte) (int, error) {
	n, err := w.SnapshotSink.Write(b)
	w.pacer.Wrote(n)
	return n, err
}

func (w *writebackSink) Close() error {
	w.f.Close()
	return w.SnapshotSink.Close()
}

func (w *writebackSink) Cancel() error {
	w.f.Close()
	return w.SnapshotSink.Cancel()
}
