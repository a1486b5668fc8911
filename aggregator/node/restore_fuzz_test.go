package node

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

// FuzzSnapshotRestore restores a partition's state machine from any bytes
// (a damaged or hostile snapshot): it fails with an error, or it restores
// a stream whose records read back in order — never a panic or an
// allocation the snapshot's header asks for without holding it.
func FuzzSnapshotRestore(f *testing.F) {
	var seeds [][]byte
	g := func() []byte {
		fs := openTestFSMForFuzz(f)
		var idx uint64
		applyMessages(fs, &idx, "a", 1, 12)
		fs.flush()
		applyMessages(fs, &idx, "b", 1, 3)
		snap, err := fs.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		sink := &memSink{}
		if err := snap.(*fsmSnapshot).Persist(sink); err != nil {
			f.Fatal(err)
		}
		return sink.Bytes()
	}
	full := g()
	seeds = append(seeds, full, full[:len(full)/2], []byte("{}\n"), []byte(`{"format":1,"first":5,"next":3}`+"\n"))
	var old bytes.Buffer
	json.NewEncoder(&old).Encode(map[string]any{"next": 2, "first": 0})
	old.WriteString(`{"offset":0,"type":"message","source_id":"s","seq":1}` + "\n" + `{"offset":1}` + "\n")
	seeds = append(seeds, old.Bytes(), []byte(`{"format":1,"next":1}`+"\n\xff\xff\xff\xff\x0f"))
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := openTestFSM(t)
		if err := fs.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			return
		}
		first := fs.earliest()
		recs, hwm, err := fs.read(first, 1<<20)
		if err != nil {
			t.Fatalf("restored, but the stream does not read: %v", err)
		}
		if uint64(len(recs)) != hwm-first {
			t.Fatalf("restored %d records from %d, high watermark %d", len(recs), first, hwm)
		}
		for i, r := range recs {
			if r.Offset != first+uint64(i) {
				t.Fatalf("record %d has offset %d", i, r.Offset)
			}
		}
	})
}

// openTestFSMForFuzz is openTestFSM for the fuzz target's seeds.
func openTestFSMForFuzz(f *testing.F) *fsm {
	log, err := openStreamLog(f.TempDir() + "/stream")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(log.close)
	fs, err := newFSM(fsmConfig{Partition: 1, DedupTTL: 1 << 40, DedupMax: 1000}, log, fsmHooks{})
	if err != nil {
		f.Fatal(err)
	}
	return fs
}
