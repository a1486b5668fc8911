package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func sampleCommands() []command {
	return []command{
		{K: cmdBatch, N: "n1", T: 1_700_000_000_000_000_000, M: []stamped{
			{Message: Message{SourceID: "s1", Seq: 7, MsgID: "m7", GroupKey: "k", Fingerprint: "f", EventTime: "2026-01-01T00:00:00Z", TraceID: "t", Payload: "héllo\x00", Epoch: 3}, H: "1700000000000000000.2"},
			{Message: Message{SourceID: "s2", Seq: 1, MsgID: "m1", GroupKey: "k2", Fingerprint: "f2"}, H: "1.0"},
		}},
		{K: cmdTick, N: "n2", T: -5, H: "9.9"},
		{K: cmdPut, N: "n3", T: 42, H: "42.0", P: &putCmd{Key: "acct", State: "active", Expected: 4, Value: strings.Repeat("v", 300)}},
	}
}

// TestCommandCodecRoundTripAndJSONCompat: binary commands decode to what
// was encoded, and JSON commands written before still decode.
func TestCommandCodecRoundTripAndJSONCompat(t *testing.T) {
	for _, c := range sampleCommands() {
		var got command
		if err := decodeCommand(encodeCommand(&c), &got); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("binary round trip:\n got %+v\nwant %+v", got, c)
		}
		js, _ := json.Marshal(&c)
		var fromJSON command
		if err := decodeCommand(js, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON, c) {
			t.Fatalf("JSON command: %v\n got %+v\nwant %+v", err, fromJSON, c)
		}
	}
	for _, bad := range [][]byte{nil, {0x00}, {commandCodecV1}, append(encodeCommand(&sampleCommands()[0]), 0), encodeCommand(&sampleCommands()[0])[:20],
		{commandCodecV1, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		var c command
		if err := decodeCommand(bad, &c); err == nil {
			t.Errorf("decodeCommand(%x) accepted", bad)
		}
	}
}

func TestRecordCodecRoundTripAndJSONCompat(t *testing.T) {
	recs := []Record{
		{Offset: 9, Type: RecordMessage, SourceID: "s", Seq: 3, MsgID: "m", GroupKey: "k", Fingerprint: "f", EventTime: "e", TraceID: "t", Payload: "p", Epoch: 2, HLC: "1.2", Node: "n1"},
		{Offset: 10, Type: RecordGap, SourceID: "s", FromSeq: 4, ToSeq: 9, Epoch: 2, HLC: "1.3", Node: "n2"},
	}
	for _, r := range recs {
		var got Record
		enc := encodeRecord(&r)
		if err := decodeRecord(enc, &got); err != nil || got != r {
			t.Fatalf("binary round trip: %v\n got %+v\nwant %+v", err, got, r)
		}
		if recordLen(&r) != len(enc) {
			t.Fatalf("recordLen %d, encoded %d bytes", recordLen(&r), len(enc))
		}
		js, _ := json.Marshal(&r)
		var fromJSON Record
		if err := decodeRecord(js, &fromJSON); err != nil || fromJSON != r {
			t.Fatalf("JSON record: %v: %+v", err, fromJSON)
		}
	}
	full := encodeRecord(&recs[0])
	for _, bad := range [][]byte{nil, {0x7f}, full[:len(full)-1], append(append([]byte{}, full...), 1)} {
		var r Record
		if err := decodeRecord(bad, &r); err == nil {
			t.Errorf("decodeRecord(%x) accepted", bad)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(encodeCommand(&c))
		js, _ := json.Marshal(&c)
		f.Add(js)
	}
	f.Add([]byte{commandCodecV1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c command
		if err := decodeCommand(b, &c); err != nil || (len(b) > 0 && b[0] == '{') {
			return
		}
		// What decodes re-encodes to the same bytes (one canonical form).
		if again := encodeCommand(&c); !bytes.Equal(again, b) {
			var c2 command
			if err := decodeCommand(again, &c2); err != nil || !reflect.DeepEqual(c, c2) {
				t.Fatalf("re-encoding changed the command: %v", err)
			}
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&Record{Offset: 1, Type: RecordMessage, SourceID: "s", Seq: 1, MsgID: "m", HLC: "1.0", Node: "n1"}))
	f.Add([]byte(`{"offset":1,"type":"message"}`))
	f.Add([]byte{recordCodecV1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := decodeRecord(b, &r); err != nil || (len(b) > 0 && b[0] == '{') {
			return
		}
		var r2 Record
		enc := encodeRecord(&r)
		if err := decodeRecord(enc, &r2); err != nil || r2 != r {
			t.Fatalf("re-encoding changed the record: %v", err)
		}
		if recordLen(&r) != len(enc) || recordSize(&r) < len(enc) {
			t.Fatalf("record of %d bytes: recordLen %d, recordSize %d", len(enc), recordLen(&r), recordSize(&r))
		}
	})
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func openTestFSM(t *testing.T) *fsm {
	return openTestFSMWith(t, fsmConfig{Partition: 1, DedupTTL: 1 << 40, DedupMax: 1000})
}

// openTestFSMWith opens a state machine over a stream log with 512-byte
// segments, so that rotation and retention drops happen in small tests.
func openTestFSMWith(t *testing.T, cfg fsmConfig) *fsm {
	t.Helper()
	log, err := openStreamLog(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	log.segBytes = 512
	t.Cleanup(log.close)
	f, err := newFSM(cfg, log, fsmHooks{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// persistAndRestore writes snap and restores a fresh state machine from it.
func persistAndRestore(t *testing.T, snap raft.FSMSnapshot) (*fsm, *memSink) {
	t.Helper()
	sink := &memSink{}
	if err := snap.(*fsmSnapshot).Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := openTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	return g, sink
}

func applyMessages(f *fsm, index *uint64, src string, from, to uint64) {
	c := command{K: cmdBatch, N: "n1", T: 1}
	for s := from; s <= to; s++ {
		id := src + "-" + strings.Repeat("x", int(s%3)) + string(rune('a'+s%26)) + string(rune('0'+s%10)) + "-" + string(rune('A'+s/26%26))
		c.M = append(c.M, stamped{Message: Message{SourceID: src, Seq: s, MsgID: id, GroupKey: "k", Fingerprint: id, Payload: "p"}, H: "1.0"})
	}
	*index++
	f.ApplyBatch([]*raft.Log{{Index: *index, Term: 1, Type: raft.LogCommand, Data: encodeCommand(&c)}})
}

// TestStreamWriteBehindReadsSnapshotsAndRestores: records are readable as
// soon as they are applied (before the flush), a snapshot taken with
// records still pending holds all of them, and a restore from it — or from
// a snapshot in the older JSON-lines format — gives back the same stream.
func TestStreamWriteBehindReadsSnapshotsAndRestores(t *testing.T) {
	f := openTestFSM(t)
	var idx uint64
	applyMessages(f, &idx, "a", 1, 40)
	recs, hwm, err := f.read(0, 1000)
	if err != nil || hwm != 40 || len(recs) != 40 || recs[39].Seq != 40 {
		t.Fatalf("before flush: %d records, hwm %d, %v", len(recs), hwm, err)
	}
	f.flush()
	applyMessages(f, &idx, "a", 41, 60) // 40 stored, 20 pending
	recs, hwm, err = f.read(35, 10)
	if err != nil || hwm != 60 || len(recs) != 10 || recs[0].Offset != 35 || recs[9].Offset != 44 {
		t.Fatalf("across the flushed boundary: %+v hwm %d %v", recs, hwm, err)
	}
	all, _, _ := f.read(0, 1000)
	if len(all) != 60 {
		t.Fatalf("%d records", len(all))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g, sink := persistAndRestore(t, snap)
	got, hwm, err := g.read(0, 1000)
	if err != nil || hwm != 60 || !reflect.DeepEqual(got, all) {
		t.Fatalf("restored stream differs: hwm %d err %v, %d records", hwm, err, len(got))
	}
	// The JSON-lines format of earlier snapshots.
	var old bytes.Buffer
	st := snap.(*fsmSnapshot).st
	st.Format = 0
	_ = json.NewEncoder(&old).Encode(&st)
	for i := range all {
		b, _ := json.Marshal(&all[i])
		old.Write(append(b, '\n'))
	}
	h := openTestFSM(t)
	if err := h.Restore(io.NopCloser(&old)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := h.read(0, 1000); err != nil || !reflect.DeepEqual(got, all) {
		t.Fatalf("restore from a JSON-lines snapshot: %v, %d records", err, len(got))
	}
	// A torn snapshot is refused with the record it stopped at.
	torn := sink.Bytes()[:sink.Len()-3]
	if err := openTestFSM(t).Restore(io.NopCloser(bytes.NewReader(torn))); err == nil || !strings.Contains(err.Error(), "snapshot record 59") {
		t.Fatalf("torn snapshot: %v", err)
	}
}

// TestStreamRetentionBoundsStoreAndSnapshots: with Retain set, the store
// and snapshots keep only the newest records, a read below the earliest
// kept offset is an error (never a silent skip), and a restore from the
// trimmed snapshot serves the same records with the same earliest offset.
func TestStreamRetentionBoundsStoreAndSnapshots(t *testing.T) {
	f := openTestFSMWith(t, fsmConfig{Partition: 2, DedupTTL: 1 << 40, DedupMax: 1000, Retain: 25})
	var idx uint64
	for s := uint64(1); s <= 100; s += 10 {
		applyMessages(f, &idx, "a", s, s+9)
		f.flush()
	}
	if f.earliest() != 75 {
		t.Fatalf("earliest %d, want 75", f.earliest())
	}
	// Whole segments below the earliest kept are gone; the one straddling
	// it stays, hidden from readers.
	if first, next := f.log.bounds(); first > 75 || first < 60 || next != 100 {
		t.Fatalf("stream log holds %d..%d, want from a segment start near 75 up to 100", first, next)
	}
	var re *retainedError
	if _, _, err := f.read(10, 5); !errors.As(err, &re) || re.earliest != 75 {
		t.Fatalf("read below retention: %v", err)
	}
	kept, hwm, err := f.read(75, 100)
	if err != nil || hwm != 100 || len(kept) != 25 || kept[0].Offset != 75 {
		t.Fatalf("kept records: %d from %v, hwm %d, %v", len(kept), kept, hwm, err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	applyMessages(f, &idx, "a", 101, 110) // retention moves on while the snapshot is written
	f.flush()
	g, _ := persistAndRestore(t, snap)
	got, hwm, err := g.read(g.earliest(), 100)
	if err != nil || hwm != 100 || len(got) == 0 || got[len(got)-1].Offset != 99 || got[0].Offset != g.earliest() || g.earliest() < 75 {
		t.Fatalf("restored: earliest %d, %d records, hwm %d, %v", g.earliest(), len(got), hwm, err)
	}
	if !reflect.DeepEqual(got, kept[got[0].Offset-75:]) {
		t.Fatal("restored records differ")
	}
}
