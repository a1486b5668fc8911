package replica

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// frame splits data into records [u32 length][u32 crc32c][body] with
// valid checksums, so that the fuzzer reaches the record decoders behind
// the checksum; a leftover byte count becomes a torn tail.
func frame(data []byte, sizes []byte) []byte {
	var out []byte
	for _, s := range sizes {
		n := int(s)
		if n > len(data) {
			n = len(data)
		}
		body := data[:n]
		data = data[n:]
		out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
		out = binary.BigEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
		out = append(out, body...)
	}
	return append(out, data...)
}

func sampleSegment(first uint64) []byte {
	var buf []byte
	for _, l := range entries(first, first+3, 2) {
		body := encodeLog(l)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(body)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(body, castagnoli))
		buf = append(buf, body...)
	}
	return buf
}

// FuzzWALSegmentReplay opens a raft log whose segment file holds any bytes
// (a torn or damaged disk): opening cuts what does not verify and every
// entry it keeps reads back, never a panic or a huge allocation.
func FuzzWALSegmentReplay(f *testing.F) {
	f.Add(uint8(1), sampleSegment(1), []byte(nil))
	f.Add(uint8(1), make([]byte, 8), []byte(nil))
	f.Add(uint8(5), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, []byte(nil))
	f.Add(uint8(1), append(binary.BigEndian.AppendUint64(nil, 1), make([]byte, 30)...), []byte{0, 3, 38})
	f.Fuzz(func(t *testing.T, base uint8, data, sizes []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "1.wal"), frame(data, sizes), 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := OpenWAL(dir, 1<<20)
		if err != nil {
			return
		}
		defer w.Close()
		first, _ := w.FirstIndex()
		last, _ := w.LastIndex()
		for i := first; i <= last && i < first+64; i++ {
			var l raft.Log
			if err := w.GetLog(i, &l); err == nil && l.Index != i {
				t.Fatalf("entry %d reads back as %d", i, l.Index)
			}
		}
	})
}

// FuzzSharedWALReplay does the same for the shared log of all partitions:
// entry, trim and cut records of any group with any content.
func FuzzSharedWALReplay(f *testing.F) {
	rec := func(kind byte, group uint32, rest []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{kind}, group), rest...)
	}
	var seed []byte
	var sizes []byte
	for _, l := range entries(1, 3, 1) {
		r := rec(recEntry, 7, encodeLog(l))
		seed, sizes = append(seed, r...), append(sizes, byte(len(r)))
	}
	tr := rec(recTrim, 7, binary.BigEndian.AppendUint64(nil, 2))
	seed, sizes = append(seed, tr...), append(sizes, byte(len(tr)))
	f.Add(seed, sizes)
	f.Add(rec(recTrim, 1, []byte{1}), []byte{6})
	f.Add(rec(recCut, 1, nil), []byte{5})
	f.Add(rec(recEntry, 0, []byte{0, 0, 0, 0, 0, 0, 0, 1}), []byte{13})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "1.log"), frame(data, sizes), 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := OpenSharedWAL(dir, 1<<20)
		if err != nil {
			return
		}
		defer w.Close()
		for g := uint32(0); g < 8; g++ {
			st := w.Group(g)
			first, _ := st.FirstIndex()
			last, _ := st.LastIndex()
			for i := first; i <= last && i < first+64; i++ {
				var l raft.Log
				st.GetLog(i, &l)
			}
		}
	})
}

// FuzzDecodeLog decodes any bytes as a raft log entry: an error, or an
// entry that encodes back to the same bytes.
func FuzzDecodeLog(f *testing.F) {
	for _, l := range entries(1, 2, 3) {
		f.Add(encodeLog(l))
	}
	f.Add(make([]byte, 25))
	f.Add(append(make([]byte, 25), 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l raft.Log
		if err := decodeLog(data, &l); err != nil {
			return
		}
		var again raft.Log
		if err := decodeLog(encodeLog(&l), &again); err != nil || !reflect.DeepEqual(l, again) {
			t.Fatalf("re-encoding changed the entry: %v\n%+v\n%+v", err, l, again)
		}
		if enc := encodeLog(&l); len(enc) > len(data) || !bytes.Equal(enc, data[:len(enc)]) {
			// Trailing bytes after the extensions are not part of the entry;
			// everything before them must match.
			if len(enc) > len(data) {
				t.Fatalf("the entry encodes longer than its bytes")
			}
		}
	})
}

// TestWALOpensWithAZeroedTail: a segment whose tail is zeros (blocks
// allocated but never written before a power loss) opens with the entries
// before it, instead of panicking on a record of length 0.
func TestWALOpensWithAZeroedTail(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWAL(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()
	w, err = OpenWAL(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if last, _ := w.LastIndex(); last != 3 || mustGet(t, w, 3) != "e3-t1" {
		t.Fatalf("last %d", last)
	}
}
