// Package history defines the history/v1 contract: the JSON-lines operation
// history written by the load generator and consumers and read by the
// consistency checker (`chaosgate check`).
//
// One JSON object a line, in the order observed. Every line has an "op"; "t"
// (RFC 3339 with nanoseconds) and "client" are common optional fields. The
// ops and their fields are:
//
//	send  source seq msg_id key fingerprint node result hlc [partition epoch]
//	recv  partition offset key source seq msg_id epoch hlc node
//	gap   partition offset source from_seq to_seq [epoch hlc node]
//	read  key value node result start end
//	write key value node result start end [state version expected_version]
//	node  node event detail
//	dlq   msg_id reason [source seq key node upstream upstream_partition upstream_offset attempts]
//	commit upstream upstream_offset [upstream_partition node]
//
// A send through a message broker carries where the broker stored it
// (upstream, upstream_partition, upstream_offset); its "ok" is the broker's
// acknowledgement. A dlq line is a message the aggregator dead-lettered
// (read from its dead-letter queue): it is accounted for, not lost. A
// commit line is a consumer group's committed position in an upstream
// partition (the next offset it will read).
//
// A key never written reads as the empty value "". Node events are nemesis
// events (kill, start, pause, resume, partition, heal) plus "stats", whose
// detail is a space-separated list of name=value gauges with optional
// name_cap=value limits (for example "rss_bytes=1000 rss_bytes_cap=2000"),
// and "config", whose detail carries checker settings such as
// "max_offset=500ms".
package history

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schema is the contract name and version of the format.
const Schema = "history/v1"

// Op is the kind of one history line.
type Op uint8

// The ops of history/v1.
const (
	OpSend Op = 1 + iota
	OpRecv
	OpGap
	OpRead
	OpWrite
	OpNode
	OpDLQ
	OpCommit
)

var opNames = [...]string{OpSend: "send", OpRecv: "recv", OpGap: "gap", OpRead: "read", OpWrite: "write", OpNode: "node", OpDLQ: "dlq", OpCommit: "commit"}

// String returns the wire name of the op.
func (o Op) String() string {
	if o >= OpSend && o <= OpCommit {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// ParseOp maps a wire name to its Op.
func ParseOp(s string) (Op, bool) {
	for i := OpSend; i <= OpCommit; i++ {
		if opNames[i] == s {
			return i, true
		}
	}
	return 0, false
}

// OpResult is the outcome of a client operation.
type OpResult uint8

// Results of send, read and write ops. ResultOK means acknowledged,
// ResultTimeout an unknown outcome, ResultRejected explicit backpressure
// (not stored), ResultFail a definite failure (not stored or not applied).
const (
	ResultOK OpResult = 1 + iota
	ResultFail
	ResultTimeout
	ResultRejected
)

var resultNames = [...]string{ResultOK: "ok", ResultFail: "fail", ResultTimeout: "timeout", ResultRejected: "rejected"}

// String returns the wire name of the result.
func (r OpResult) String() string {
	if r >= ResultOK && r <= ResultRejected {
		return resultNames[r]
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// ParseResult maps a wire name to its Result.
func ParseResult(s string) (OpResult, bool) {
	for i := ResultOK; i <= ResultRejected; i++ {
		if resultNames[i] == s {
			return i, true
		}
	}
	return 0, false
}

// HLC is a hybrid logical clock timestamp: wall nanoseconds and a logical
// counter, written "<wall>.<logical>".
type HLC struct {
	Wall    int64
	Logical uint32
}

// IsZero reports whether h is unset.
func (h HLC) IsZero() bool { return h.Wall == 0 && h.Logical == 0 }

// Less orders HLC timestamps.
func (h HLC) Less(o HLC) bool {
	return h.Wall < o.Wall || (h.Wall == o.Wall && h.Logical < o.Logical)
}

// String formats h as "<wall>.<logical>".
func (h HLC) String() string {
	return strconv.FormatInt(h.Wall, 10) + "." + strconv.FormatUint(uint64(h.Logical), 10)
}

// ParseHLC parses "<wall>.<logical>" (both non-negative decimal integers).
func ParseHLC(s string) (HLC, error) {
	w, l, ok := strings.Cut(s, ".")
	if !ok || w == "" || l == "" {
		return HLC{}, errors.New("want <wall>.<logical>")
	}
	wall, err := strconv.ParseInt(w, 10, 64)
	if err != nil || wall < 0 || w[0] == '+' {
		return HLC{}, fmt.Errorf("wall %q is not a non-negative integer", w)
	}
	lg, err := strconv.ParseUint(l, 10, 32)
	if err != nil || l[0] == '+' {
		return HLC{}, fmt.Errorf("logical %q is not a 32-bit unsigned integer", l)
	}
	return HLC{Wall: wall, Logical: uint32(lg)}, nil
}

// Line is one history line. Which fields are meaningful depends on Op
// (see the package documentation); the others stay zero.
type Line struct {
	Op     Op
	T      time.Time // when it was observed (send: when the outcome was known)
	Client string

	Source      string
	Seq         uint64
	MsgID       string
	Key         string
	Fingerprint string
	Node        string
	Result      OpResult
	HLC         HLC

	Partition    int
	HasPartition bool // send only: Partition is set (the client computed or was told it)
	Offset       int64
	Epoch        uint64

	FromSeq uint64
	ToSeq   uint64

	Value           string
	Start           time.Time
	End             time.Time
	State           string
	Version         uint64
	ExpectedVersion uint64

	NodeEvent string
	Detail    string

	// Upstream (send, dlq, commit): the broker a message went through and
	// its position there; HasUpstreamPartition and HasUpstreamOffset tell
	// a position 0 from none.
	Upstream             string
	UpstreamPartition    int
	HasUpstreamPartition bool
	UpstreamOffset       int64
	HasUpstreamOffset    bool
	// Reason and Attempts (dlq): why the aggregator dead-lettered the
	// message and how often it tried.
	Reason   string
	Attempts int

	// Line is the 1-based line number the reader found the event on.
	Line int
}

// Node events that the checker understands.
const (
	NodeKill      = "kill"
	NodeStart     = "start"
	NodePause     = "pause"
	NodeResume    = "resume"
	NodePartition = "partition"
	NodeHeal      = "heal"
	NodeStats     = "stats"
	NodeConfig    = "config"
)
