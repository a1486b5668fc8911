package node

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/chaosgate/chaosgate/internal/writeback"
)

// streamLog is one partition's output stream on disk: append-only segment
// files of [uvarint length][record] frames, offsets dense from the first
// record of each segment. Appending is one write per flush (no B+tree), a
// sparse in-memory index finds an offset, and retention drops whole
// segments. The stream is derived state (raft's snapshot and log rebuild
// it), so a node starts with an empty stream log.
type streamLog struct {
	dir      string
	segBytes int64 // size at which a new segment starts

	mu   sync.RWMutex
	segs []*streamSeg
	// start is the offset of the next record when there are no segments.
	start uint64
}

// streamSeg is one segment file. Its fields change only under the log's
// lock; bytes below size are never rewritten.
type streamSeg struct {
	first  uint64  // offset of the first record
	n      uint64  // records
	size   int64   // bytes written
	sparse []int64 // file position of record first+i*streamStride
	f      *os.File
}

const (
	// streamStride is the spacing of the sparse index.
	streamStride = 64
	// streamSegBytes is the size at which a new segment starts.
	streamSegBytes = 64 << 20
)

// openStreamLog creates an empty stream log in dir, removing what a
// previous run left there.
func openStreamLog(dir string) (*streamLog, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("stream log: clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &streamLog{dir: dir, segBytes: streamSegBytes}, nil
}

// bounds returns the first offset held and the offset after the last.
func (s *streamLog) bounds() (first, next uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.segs) == 0 {
		return s.start, s.start
	}
	last := s.segs[len(s.segs)-1]
	return s.segs[0].first, last.first + last.n
}

// append writes records with contiguous offsets. A batch that starts past
// the end (records below a retention floor were skipped) starts the log
// afresh there.
func (s *streamLog) append(recs [][]byte, first uint64) error {
	size := 0
	for _, r := range recs {
		size += binary.MaxVarintLen64 + len(r)
	}
	buf := make([]byte, 0, size)
	starts := make([]int, 0, len(recs))
	for _, r := range recs {
		starts = append(starts, len(buf))
		buf = binary.AppendUvarint(buf, uint64(len(r)))
		buf = append(buf, r...)
	}
	return s.appendFrames(buf, starts, first)
}

// appendFrames writes records already framed ([uvarint length][record]
// each, frame i starting at buf[starts[i]]) with contiguous offsets from
// first, in one write.
func (s *streamLog) appendFrames(buf []byte, starts []int, first uint64) error {
	if len(starts) == 0 {
		return nil
	}
	_, next := s.bounds()
	switch {
	case first < next:
		return fmt.Errorf("stream log: append at offset %d, but %d records are already held", first, next)
	case first > next:
		s.reset(first)
	}
	s.mu.RLock()
	var seg *streamSeg
	if n := len(s.segs); n > 0 && s.segs[n-1].size < s.segBytes {
		seg = s.segs[n-1]
	}
	s.mu.RUnlock()
	if seg == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("%020d.seg", first)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("stream log: %w", err)
		}
		seg = &streamSeg{first: first, f: f}
		s.mu.Lock()
		s.segs = append(s.segs, seg)
		s.mu.Unlock()
	}
	pos := seg.size
	n := seg.n
	var sparse []int64
	for _, at := range starts {
		if n%streamStride == 0 {
			sparse = append(sparse, pos+int64(at))
		}
		n++
	}
	if _, err := seg.f.WriteAt(buf, pos); err != nil {
		return fmt.Errorf("stream log: append: %w", err)
	}
	// The stream log is never fsynced, but left to the kernel its pages are
	// written back tens of MiB at a time, 30 s later, and the journal
	// commit of every raft log fsync on the disk then waits for them.
	// Starting each flush's writeback at once keeps that work small.
	writeback.Start(seg.f)
	s.mu.Lock()
	seg.size += int64(len(buf))
	seg.n = n
	seg.sparse = append(seg.sparse, sparse...)
	s.mu.Unlock()
	return nil
}

// reset drops every record; the next one appended has offset start.
func (s *streamLog) reset(start uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		_ = os.Remove(seg.f.Name()) // readers holding the file still read it
	}
	s.segs, s.start = nil, start
}

// dropBelow removes whole segments whose records all lie below floor.
func (s *streamLog) dropBelow(floor uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := 0
	for keep < len(s.segs)-1 && s.segs[keep].first+s.segs[keep].n <= floor {
		_ = os.Remove(s.segs[keep].f.Name()) // open readers keep reading it
		keep++
	}
	s.segs = append([]*streamSeg(nil), s.segs[keep:]...)
}

// close closes every segment file.
func (s *streamLog) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		_ = seg.f.Close()
	}
	s.segs = nil
}

// segView is what a reader needs of a segment, copied under the lock.
type segView struct {
	first, n uint64
	size     int64
	sparse   []int64
	f        *os.File
}

// views returns, in order, a consistent view of the segments holding any
// record of from..to-1.
func (s *streamLog) views(from, to uint64) []segView {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var views []segView
	for _, seg := range s.segs {
		if seg.first < to && seg.first+seg.n > from {
			views = append(views, segView{seg.first, seg.n, seg.size, seg.sparse, seg.f})
		}
	}
	return views
}

// indexed returns the last record at or before off that the sparse index
// points at, and its file position (the segment's start when off is
// before it).
func (v *segView) indexed(off uint64) (uint64, int64) {
	if off <= v.first || len(v.sparse) == 0 {
		return v.first, 0
	}
	i := min((off-v.first)/streamStride, uint64(len(v.sparse))-1)
	return v.first + i*streamStride, v.sparse[i]
}

// scan calls fn for every record from offset from on, in order, until fn
// returns false or the records run out.
func (s *streamLog) scan(from uint64, fn func(off uint64, rec []byte) (bool, error)) error {
	for _, v := range s.views(from, math.MaxUint64) {
		off, pos := v.indexed(from)
		r := bufio.NewReaderSize(io.NewSectionReader(v.f, pos, v.size-pos), 64<<10)
		for ; off < v.first+v.n; off++ {
			size, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("stream log: segment %d, record %d: %w", v.first, off, err)
			}
			if size > uint64(v.size) {
				return fmt.Errorf("stream log: segment %d, record %d: frame of %d bytes", v.first, off, size)
			}
			if off < from {
				if _, err := r.Discard(int(size)); err != nil {
					return fmt.Errorf("stream log: segment %d, record %d: %w", v.first, off, err)
				}
				continue
			}
			rec := make([]byte, size)
			if _, err := io.ReadFull(r, rec); err != nil {
				return fmt.Errorf("stream log: segment %d, record %d: %w", v.first, off, err)
			}
			more, err := fn(off, rec)
			if err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// frameRange is where the frames of a run of records lie in one segment.
type frameRange struct {
	f          *os.File
	start, end int64
}

// frames returns where the frames of records from..to-1 lie, segment by
// segment, in order; an error if the log does not hold all of them.
func (s *streamLog) frames(from, to uint64) ([]frameRange, error) {
	if from >= to {
		return nil, nil
	}
	want := from
	var out []frameRange
	for _, v := range s.views(from, to) {
		if v.first > want {
			break
		}
		hi := min(to, v.first+v.n)
		start, err := v.pos(want)
		if err != nil {
			return nil, err
		}
		end, err := v.pos(hi)
		if err != nil {
			return nil, err
		}
		out = append(out, frameRange{v.f, start, end})
		want = hi
	}
	if want != to {
		return nil, fmt.Errorf("stream log: records %d..%d wanted, held only up to %d (dropped by retention meanwhile?)", from, to-1, want)
	}
	return out, nil
}

// pos is the file position of the frame of record off (first+n: the end
// of the segment's records), found from the sparse index.
func (v *segView) pos(off uint64) (int64, error) {
	if off == v.first+v.n {
		return v.size, nil
	}
	o, p := v.indexed(off)
	var hdr [binary.MaxVarintLen64]byte
	for ; o < off; o++ {
		k, err := v.f.ReadAt(hdr[:], p)
		if k == 0 {
			return 0, fmt.Errorf("stream log: segment %d, record %d: %w", v.first, o, err)
		}
		size, m := binary.Uvarint(hdr[:k])
		if m <= 0 || size > uint64(v.size) {
			return 0, fmt.Errorf("stream log: segment %d, record %d: bad frame header", v.first, o)
		}
		p += int64(m) + int64(size)
	}
	return p, nil
}
