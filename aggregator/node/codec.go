package node

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Binary encodings of what a node writes for itself: raft log commands
// (decoded by every replica on every apply) and output stream records (the
// stream store and snapshots). Each starts with a version byte that JSON
// never starts with, so entries and stores written as JSON stay readable.
const (
	commandCodecV1 byte = 0xC1
	recordCodecV1  byte = 0xD1
)

// errTruncated means the bytes end inside a field.
var errTruncated = errors.New("truncated")

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the fields of one encoded value; the first error sticks.
// Strings are slices of one copy of the input (one allocation per value,
// not per field): whoever keeps a field beyond the value's life — the
// dedup set, the key-value state — clones it.
type decoder struct {
	b   []byte
	s   string // the same bytes as b
	off int
	err error
}

func newDecoder(b []byte) *decoder { return &decoder{b: b, s: string(b), off: 1} }

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("byte %d: %w unsigned integer", d.off, errTruncated)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("byte %d: %w integer", d.off, errTruncated)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) str() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("byte %d: %w string (length %d, %d bytes left)", d.off, errTruncated, n, len(d.b)-d.off)
		return ""
	}
	s := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.err = fmt.Errorf("byte %d: %w flag", d.off, errTruncated)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.err = fmt.Errorf("%d unexpected bytes after byte %d", len(d.b)-d.off, d.off)
	}
	return d.err
}

// encodeCommand is the binary form of a raft log command.
func encodeCommand(c *command) []byte {
	size := 32 + len(c.N) + len(c.H)
	for i := range c.M {
		m := &c.M[i]
		size += 40 + len(m.SourceID) + len(m.MsgID) + len(m.GroupKey) + len(m.Fingerprint) + len(m.EventTime) + len(m.TraceID) + len(m.Payload) + len(m.H)
	}
	b := make([]byte, 0, size)
	b = append(b, commandCodecV1)
	b = binary.AppendUvarint(b, uint64(c.K))
	b = appendStr(b, c.N)
	b = binary.AppendVarint(b, c.T)
	b = appendStr(b, c.H)
	b = binary.AppendUvarint(b, uint64(len(c.M)))
	for i := range c.M {
		m := &c.M[i]
		b = appendStr(b, m.SourceID)
		b = binary.AppendUvarint(b, m.Seq)
		b = appendStr(b, m.MsgID)
		b = appendStr(b, m.GroupKey)
		b = appendStr(b, m.Fingerprint)
		b = appendStr(b, m.EventTime)
		b = appendStr(b, m.TraceID)
		b = appendStr(b, m.Payload)
		b = binary.AppendUvarint(b, m.Epoch)
		b = appendStr(b, m.H)
	}
	if c.P == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendStr(b, c.P.Key)
	b = appendStr(b, c.P.State)
	b = binary.AppendUvarint(b, c.P.Expected)
	return appendStr(b, c.P.Value)
}

// minStampedSize is the fewest bytes one encoded message takes (ten empty
// strings and two zero integers): it bounds the count a header may claim.
const minStampedSize = 10

// decodeCommand reads a command in either encoding.
func decodeCommand(data []byte, c *command) error {
	if len(data) == 0 {
		return errors.New("empty command")
	}
	switch data[0] {
	case '{':
		return json.Unmarshal(data, c)
	case commandCodecV1:
	default:
		return fmt.Errorf("unknown command encoding 0x%02x (want 0x%02x or JSON)", data[0], commandCodecV1)
	}
	d := newDecoder(data)
	c.K = int(d.uint())
	c.N = d.str()
	c.T = d.int()
	c.H = d.str()
	n := d.uint()
	if d.err == nil && n > uint64(len(data)-d.off)/minStampedSize {
		return fmt.Errorf("command claims %d messages in %d bytes", n, len(data)-d.off)
	}
	if n > 0 {
		c.M = make([]stamped, n)
	}
	for i := range c.M {
		if d.err != nil {
			break
		}
		m := &c.M[i]
		m.SourceID = d.str()
		m.Seq = d.uint()
		m.MsgID = d.str()
		m.GroupKey = d.str()
		m.Fingerprint = d.str()
		m.EventTime = d.str()
		m.TraceID = d.str()
		m.Payload = d.str()
		m.Epoch = d.uint()
		m.H = d.str()
	}
	switch d.byte() {
	case 0:
	case 1:
		c.P = &putCmd{Key: d.str(), State: d.str(), Expected: d.uint(), Value: d.str()}
	default:
		if d.err == nil {
			d.err = fmt.Errorf("byte %d: bad state-write flag", d.off-1)
		}
	}
	if err := d.end(); err != nil {
		return fmt.Errorf("command: %w", err)
	}
	return nil
}

// encodeRecord is the binary form of an output stream record.
func encodeRecord(r *Record) []byte {
	return appendRecord(make([]byte, 0, recordSize(r)), r)
}

// recordSize bounds the length of r's binary form.
func recordSize(r *Record) int {
	return 48 + len(r.Type) + len(r.SourceID) + len(r.MsgID) + len(r.GroupKey) + len(r.Fingerprint) + len(r.EventTime) + len(r.TraceID) + len(r.Payload) + len(r.HLC) + len(r.Node)
}

// recordLen is the exact length of r's binary form.
func recordLen(r *Record) int {
	n := 1 + uvarintLen(r.Offset) + uvarintLen(r.Seq) + uvarintLen(r.FromSeq) + uvarintLen(r.ToSeq) + uvarintLen(r.Epoch)
	for _, s := range [...]string{r.Type, r.SourceID, r.MsgID, r.GroupKey, r.Fingerprint, r.EventTime, r.TraceID, r.Payload, r.HLC, r.Node} {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	return n
}

// uvarintLen is the length of x as a uvarint.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// appendRecord appends r's binary form to b.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, recordCodecV1)
	b = binary.AppendUvarint(b, r.Offset)
	b = appendStr(b, r.Type)
	b = appendStr(b, r.SourceID)
	b = binary.AppendUvarint(b, r.Seq)
	b = appendStr(b, r.MsgID)
	b = appendStr(b, r.GroupKey)
	b = appendStr(b, r.Fingerprint)
	b = appendStr(b, r.EventTime)
	b = appendStr(b, r.TraceID)
	b = appendStr(b, r.Payload)
	b = binary.AppendUvarint(b, r.FromSeq)
	b = binary.AppendUvarint(b, r.ToSeq)
	b = binary.AppendUvarint(b, r.Epoch)
	b = appendStr(b, r.HLC)
	return appendStr(b, r.Node)
}

// decodeRecord reads a record in either encoding.
func decodeRecord(data []byte, r *Record) error {
	if len(data) == 0 {
		return errors.New("empty record")
	}
	switch data[0] {
	case '{':
		return json.Unmarshal(data, r)
	case recordCodecV1:
	default:
		return fmt.Errorf("unknown record encoding 0x%02x (want 0x%02x or JSON)", data[0], recordCodecV1)
	}
	d := newDecoder(data)
	r.Offset = d.uint()
	r.Type = d.str()
	r.SourceID = d.str()
	r.Seq = d.uint()
	r.MsgID = d.str()
	r.GroupKey = d.str()
	r.Fingerprint = d.str()
	r.EventTime = d.str()
	r.TraceID = d.str()
	r.Payload = d.str()
	r.FromSeq = d.uint()
	r.ToSeq = d.uint()
	r.Epoch = d.uint()
	r.HLC = d.str()
	r.Node = d.str()
	if err := d.end(); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}
