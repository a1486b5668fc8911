package node

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestSnapshotStoreWritesBackAndReadsTheSame: the store finds the state
// file raft's sink writes (so the writeback hints are given), and what a
// sink receives — several writeback periods of it — is what Open returns;
// a cancelled snapshot is not listed.
func TestSnapshotStoreWritesBackAndReadsTheSame(t *testing.T) {
	s, err := newSnapshotStore(t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	cfg := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "n1"}}}
	sink, err := s.Create(1, 10, 2, cfg, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sink.(*writebackSink); !ok {
		t.Fatalf("sink %T: the state file of raft's sink was not found", sink)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), (3*snapshotWritebackBytes+12345)/16)
	for b := want; len(b) > 0; {
		n := min(len(b), 100_000)
		if _, err := sink.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	cancelled, err := s.Create(1, 20, 2, cfg, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cancelled.Write([]byte("partial"))
	if err := cancelled.Cancel(); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Index != 10 {
		t.Fatalf("list: %v %+v", err, list)
	}
	meta, rc, err := s.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || meta.Size != int64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (meta size %d), want %d: %v", len(got), meta.Size, len(want), err)
	}
}
