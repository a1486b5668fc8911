package node

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestStreamLogAgainstModel appends, reads from random offsets, drops
// segments below a rising floor and resets, checking every read against a
// plain slice.
func TestStreamLogAgainstModel(t *testing.T) {
	for trial := range 20 {
		r := rand.New(rand.NewPCG(uint64(trial), 3))
		log, err := openStreamLog(filepath.Join(t.TempDir(), "stream"))
		if err != nil {
			t.Fatal(err)
		}
		log.segBytes = int64(64 + r.IntN(512))
		if trial%4 == 0 {
			log.segBytes = 1 << 20 // segments past the sparse index's stride
		}
		model := map[uint64]string{}
		var floor, next uint64
		for step := 0; step < 200; step++ {
			switch op := r.IntN(10); {
			case op < 6: // append a batch
				n := 1 + r.IntN(20)
				var recs [][]byte
				for i := 0; i < n; i++ {
					v := fmt.Sprintf("rec-%d-%s", next+uint64(i), string(make([]byte, r.IntN(40))))
					recs = append(recs, []byte(v))
					model[next+uint64(i)] = v
				}
				if err := log.append(recs, next); err != nil {
					t.Fatal(err)
				}
				next += uint64(n)
			case op < 8: // read
				if next == floor {
					continue
				}
				from := floor + uint64(r.IntN(int(next-floor)))
				want := from
				if err := log.scan(from, func(off uint64, rec []byte) (bool, error) {
					if off != want || string(rec) != model[off] {
						return false, fmt.Errorf("offset %d (want %d): %q, model %q", off, want, rec, model[off])
					}
					want++
					return true, nil
				}); err != nil {
					t.Fatalf("trial %d step %d: %v", trial, step, err)
				}
				if want != next {
					t.Fatalf("trial %d step %d: read %d..%d, log ends at %d", trial, step, from, want, next)
				}
				to := from + 1 + uint64(r.IntN(int(next-from)))
				if err := checkFrames(log, model, from, to); err != nil {
					t.Fatalf("trial %d step %d: frames %d..%d: %v", trial, step, from, to, err)
				}
			case op < 9: // retention
				floor += uint64(r.IntN(int(next-floor) + 1))
				log.dropBelow(floor)
				if first, _ := log.bounds(); first > floor {
					t.Fatalf("trial %d: dropped past the floor: first %d > %d", trial, first, floor)
				}
			default: // restart from a snapshot point
				if r.IntN(4) == 0 {
					log.reset(next)
					floor = next
				}
			}
		}
		log.close()
	}
}

func TestStreamLogRefusesOverlap(t *testing.T) {
	log, err := openStreamLog(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.close()
	if err := log.append([][]byte{[]byte("a"), []byte("b")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := log.append([][]byte{[]byte("c")}, 1); err == nil {
		t.Fatal("an append over held offsets was accepted")
	}
	if err := log.append([][]byte{[]byte("z")}, 10); err != nil { // past the end: starts afresh
		t.Fatal(err)
	}
	if first, next := log.bounds(); first != 10 || next != 11 {
		t.Fatalf("bounds %d..%d after a jump", first, next)
	}
}

// checkFrames reads the byte ranges frames gives for from..to-1 and checks
// they are exactly those records' frames, in order.
func checkFrames(log *streamLog, model map[uint64]string, from, to uint64) error {
	ranges, err := log.frames(from, to)
	if err != nil {
		return err
	}
	var b []byte
	for _, fr := range ranges {
		part, err := io.ReadAll(io.NewSectionReader(fr.f, fr.start, fr.end-fr.start))
		if err != nil {
			return err
		}
		b = append(b, part...)
	}
	for off := from; off < to; off++ {
		size, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < size {
			return fmt.Errorf("record %d: bad frame", off)
		}
		if got := string(b[n : n+int(size)]); got != model[off] {
			return fmt.Errorf("record %d: %q, model %q", off, got, model[off])
		}
		b = b[n+int(size):]
	}
	if len(b) != 0 {
		return fmt.Errorf("%d bytes past record %d", len(b), to-1)
	}
	return nil
}
