package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chaosgate/chaosgate/internal/jsonscan"
)

// Message is one ingested message (the message contract of API.md).
type Message struct {
	SourceID    string `json:"source_id"`
	Seq         uint64 `json:"seq"`
	MsgID       string `json:"msg_id"`
	GroupKey    string `json:"group_key"`
	Fingerprint string `json:"fingerprint"`
	EventTime   string `json:"event_time,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`
	Payload     string `json:"payload,omitempty"`
	Epoch       uint64 `json:"epoch,omitempty"`
}

// Result statuses (API.md).
const (
	StatusOK         = "ok"
	StatusDuplicate  = "duplicate"
	StatusRejected   = "rejected"
	StatusStaleEpoch = "stale_epoch"
	StatusError      = "error"
)

// Result is the outcome of one message, in request order.
type Result struct {
	MsgID        string `json:"msg_id"`
	Status       string `json:"status"`
	Partition    int    `json:"partition"`
	Epoch        uint64 `json:"epoch,omitempty"`
	HLC          string `json:"hlc,omitempty"`
	Node         string `json:"node,omitempty"`
	Offset       *int64 `json:"offset,omitempty"`
	Error        string `json:"error,omitempty"`
	ErrorKind    string `json:"error_kind,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
}

// IngestResponse is the body of POST /v1/messages.
type IngestResponse struct {
	Results []Result `json:"results"`
}

// Record types of the output stream.
const (
	RecordMessage = "message"
	RecordGap     = "gap"
)

// Record is one entry of a partition's output stream.
type Record struct {
	Offset      uint64 `json:"offset"`
	Type        string `json:"type"`
	SourceID    string `json:"source_id"`
	Seq         uint64 `json:"seq,omitempty"`
	MsgID       string `json:"msg_id,omitempty"`
	GroupKey    string `json:"group_key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	EventTime   string `json:"event_time,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`
	Payload     string `json:"payload,omitempty"`
	FromSeq     uint64 `json:"from_seq,omitempty"`
	ToSeq       uint64 `json:"to_seq,omitempty"`
	Epoch       uint64 `json:"epoch"`
	HLC         string `json:"hlc"`
	Node        string `json:"node"`
}

// StreamPage is the body of GET /v1/stream/{p}.
type StreamPage struct {
	Partition     int    `json:"partition"`
	Leader        string `json:"leader"`
	Epoch         uint64 `json:"epoch"`
	Next          uint64 `json:"next"`
	HighWatermark uint64 `json:"high_watermark"`
	// Earliest is the first offset still kept (older ones were removed by
	// retention).
	Earliest uint64   `json:"earliest"`
	Records  []Record `json:"records"`
}

// KeyState is the body of GET/PUT /v1/state/{key}.
type KeyState struct {
	Key     string `json:"key"`
	State   string `json:"state"`
	Version uint64 `json:"version"`
	Value   string `json:"value"`
	Epoch   uint64 `json:"epoch"`
	HLC     string `json:"hlc"`
}

// PutStateRequest is the body of PUT /v1/state/{key}.
type PutStateRequest struct {
	State           string  `json:"state"`
	ExpectedVersion *uint64 `json:"expected_version"`
	Value           string  `json:"value"`
}

// ClusterNode describes one node in GET /v1/cluster.
type ClusterNode struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	GRPC string `json:"grpc,omitempty"`
	Raft string `json:"raft"`
}

// ClusterPartition describes one partition in GET /v1/cluster.
type ClusterPartition struct {
	ID      int      `json:"id"`
	Leader  string   `json:"leader"`
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members"`
}

// ClusterInfo is the body of GET /v1/cluster.
type ClusterInfo struct {
	Node           string             `json:"node"`
	Partitioner    string             `json:"partitioner"`
	PartitionCount int                `json:"partition_count"`
	Defects        []string           `json:"defects"`
	Nodes          []ClusterNode      `json:"nodes"`
	Partitions     []ClusterPartition `json:"partitions"`
}

// ErrorBody is the body of every non-2xx answer that carries no results.
type ErrorBody struct {
	Error        string `json:"error"`
	Kind         string `json:"kind"`
	Path         string `json:"path,omitempty"`
	Hint         string `json:"hint,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
}

// Limits on input.
const (
	MaxBatch       = 1000
	MaxBodyBytes   = 4 << 20
	MaxFieldBytes  = 256
	MaxPayloadSize = 64 << 10
)

// InputError is malformed input: where (a JSON path or line:col) and a hint.
type InputError struct {
	Path    string
	Msg     string
	Hint    string
	TooBig  bool
	Unknown bool
}

func (e *InputError) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// DecodeMessages parses the body of POST /v1/messages: one message or
// {"messages":[...]}. Errors name the JSON path at fault.
func DecodeMessages(body []byte) ([]Message, error) {
	if len(body) > MaxBodyBytes {
		return nil, &InputError{TooBig: true, Msg: fmt.Sprintf("body is %d bytes, more than %d", len(body), MaxBodyBytes), Hint: "split the batch"}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, &InputError{Path: "$", Msg: "empty body", Hint: `send one message object or {"messages":[...]}`}
	}
	if msgs, ok := scanMessages(trimmed); ok && len(msgs) > 0 && len(msgs) <= MaxBatch && validAll(msgs) {
		return msgs, nil
	}
	if msgs, ok := decodeFast(trimmed); ok {
		return msgs, nil
	}
	return decodeSlow(trimmed)
}

// decodeSlow decodes field by field, to find and name a fault precisely.
func decodeSlow(trimmed []byte) ([]Message, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &top); err != nil {
		return nil, jsonError(trimmed, "$", err)
	}
	if raw, ok := top["messages"]; ok {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, jsonError(raw, "$.messages", err)
		}
		if len(items) > MaxBatch {
			return nil, &InputError{TooBig: true, Path: "$.messages", Msg: fmt.Sprintf("%d messages, more than %d", len(items), MaxBatch), Hint: "split the batch"}
		}
		if len(items) == 0 {
			return nil, &InputError{Path: "$.messages", Msg: "empty batch", Hint: "send at least one message"}
		}
		out := make([]Message, len(items))
		for i, it := range items {
			p := "$.messages[" + strconv.Itoa(i) + "]"
			if err := decodeOne(it, p, &out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	var m Message
	if err := decodeOne(trimmed, "$", &m); err != nil {
		return nil, err
	}
	return []Message{m}, nil
}

// envelope accepts either form in one pass.
type envelope struct {
	Message
	Messages []Message `json:"messages"`
}

// decodeFast decodes well-formed input in one pass; ok=false sends the
// caller to the precise (slower) path, which also reports the error.
func decodeFast(b []byte) ([]Message, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var env envelope
	if err := dec.Decode(&env); err != nil || dec.More() {
		return nil, false
	}
	msgs := env.Messages
	if msgs == nil {
		msgs = []Message{env.Message}
	} else if env.Message != (Message{}) || len(msgs) == 0 || len(msgs) > MaxBatch {
		return nil, false
	}
	for i := range msgs {
		if Validate(&msgs[i], "$") != nil {
			return nil, false
		}
	}
	return msgs, true
}

func validAll(msgs []Message) bool {
	for i := range msgs {
		if Validate(&msgs[i], "$") != nil {
			return false
		}
	}
	return true
}

var knownFields = map[string]bool{"source_id": true, "seq": true, "msg_id": true, "group_key": true, "fingerprint": true,
	"event_time": true, "trace_id": true, "payload": true, "epoch": true}

func decodeOne(raw []byte, path string, m *Message) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return jsonError(raw, path, err)
	}
	for k := range fields {
		if !knownFields[k] {
			return &InputError{Path: path + "." + k, Msg: "unknown field", Hint: "fields are source_id, seq, msg_id, group_key, fingerprint, event_time, trace_id, payload, epoch"}
		}
	}
	if err := json.Unmarshal(raw, m); err != nil {
		return jsonError(raw, path, err)
	}
	return Validate(m, path)
}

func jsonError(raw []byte, path string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		p := path
		if te.Field != "" {
			p += "." + te.Field
		}
		return &InputError{Path: p, Msg: fmt.Sprintf("wrong type: got JSON %s, want %s", te.Value, goTypeName(te.Type.String())),
			Hint: "seq and epoch are unsigned integers, every other field is a string (msg_id is a decimal string)"}
	case errors.As(err, &se):
		line, col := lineCol(raw, se.Offset)
		return &InputError{Path: fmt.Sprintf("%s (line %d, column %d)", path, line, col), Msg: "malformed JSON: " + se.Error(), Hint: "check quotes, commas and braces"}
	}
	return &InputError{Path: path, Msg: err.Error(), Hint: `send one message object or {"messages":[...]}`}
}

func goTypeName(t string) string {
	switch t {
	case "uint64":
		return "an unsigned integer"
	case "string":
		return "a string"
	case "map[string]json.RawMessage", "node.Message":
		return "an object"
	case "[]json.RawMessage":
		return "an array"
	}
	return t
}

func lineCol(b []byte, off int64) (int, int) {
	line, col := 1, 1
	for i := int64(0); i < off && i < int64(len(b)); i++ {
		if b[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// Validate checks one message's fields; path prefixes the field names in
// the error (e.g. "$.messages[3]").
func Validate(m *Message, path string) error {
	req := func(name, v string) error {
		if v == "" {
			return &InputError{Path: path + "." + name, Msg: "missing or empty", Hint: name + " is required"}
		}
		if len(v) > MaxFieldBytes {
			return &InputError{Path: path + "." + name, Msg: fmt.Sprintf("%d bytes, more than %d", len(v), MaxFieldBytes), Hint: "use a shorter identifier"}
		}
		return nil
	}
	for _, f := range []struct{ n, v string }{{"source_id", m.SourceID}, {"msg_id", m.MsgID}, {"group_key", m.GroupKey}, {"fingerprint", m.Fingerprint}} {
		if err := req(f.n, f.v); err != nil {
			return err
		}
	}
	if m.Seq == 0 {
		return &InputError{Path: path + ".seq", Msg: "missing or zero", Hint: "seq starts at 1 per (source_id, partition)"}
	}
	if _, err := strconv.ParseUint(m.MsgID, 10, 64); err != nil {
		return &InputError{Path: path + ".msg_id", Msg: fmt.Sprintf("%q is not a decimal snowflake id", m.MsgID), Hint: `send the id as a decimal string, e.g. "1859302761234567168"`}
	}
	if m.EventTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, m.EventTime); err != nil {
			return &InputError{Path: path + ".event_time", Msg: fmt.Sprintf("%q is not RFC 3339", m.EventTime), Hint: "e.g. 2026-11-22T10:00:00.123456789Z"}
		}
	}
	if len(m.TraceID) > MaxFieldBytes {
		return &InputError{Path: path + ".trace_id", Msg: "too long", Hint: "a W3C trace id is 32 hex digits"}
	}
	if len(m.Payload) > MaxPayloadSize {
		return &InputError{Path: path + ".payload", Msg: fmt.Sprintf("%d bytes, more than %d", len(m.Payload), MaxPayloadSize), Hint: "keep payloads small"}
	}
	return nil
}

// scanMessages decodes the common shape of an ingest body — one message
// object or {"messages":[...]} with lower-case field names, plain strings
// (no escapes, valid UTF-8) and plain unsigned integers — in one pass
// without reflection. Anything else returns ok=false and is decoded by
// encoding/json, so what it accepts is decoded exactly as encoding/json
// would (checked by a differential fuzz test).
func scanMessages(b []byte) (msgs []Message, ok bool) {
	// Every string field is a slice of one copy of the body: one
	// allocation per request instead of one per field (with 1 KiB payloads
	// the body is copied once either way).
	s := &scanner{jsonscan.New(b)}
	s.WS()
	if !s.Lit('{') {
		return nil, false
	}
	s.WS()
	if s.PeekKey("messages") {
		s.I += len(`"messages"`)
		s.WS()
		if !s.Lit(':') {
			return nil, false
		}
		s.WS()
		if !s.Lit('[') {
			return nil, false
		}
		s.WS()
		for !s.Lit(']') {
			if len(msgs) > 0 && (!s.Lit(',') || !s.SkipWS()) {
				return nil, false
			}
			var m Message
			if !s.Lit('{') || !s.fields(&m) {
				return nil, false
			}
			msgs = append(msgs, m)
			s.WS()
		}
		s.WS()
		if !s.Lit('}') {
			return nil, false
		}
	} else {
		var m Message
		if !s.fields(&m) {
			return nil, false
		}
		msgs = []Message{m}
	}
	s.WS()
	return msgs, s.I == len(b)
}

// scanner is the ingest body's jsonscan.Scanner, with the fields of a
// message.
type scanner struct{ *jsonscan.Scanner }

// fields reads the members of a message object after its '{'; each field
// at most once.
func (s *scanner) fields(m *Message) bool {
	s.WS()
	if s.Lit('}') {
		return true
	}
	var seen uint16
	for {
		key, ok := s.Str()
		if !ok {
			return false
		}
		s.WS()
		if !s.Lit(':') {
			return false
		}
		s.WS()
		var bit uint16
		switch key {
		case "seq", "epoch":
			v, ok := s.Uint()
			if !ok {
				return false
			}
			if key == "seq" {
				m.Seq, bit = v, 1
			} else {
				m.Epoch, bit = v, 2
			}
		default:
			v, ok := s.Str()
			if !ok {
				return false
			}
			switch key {
			case "source_id":
				m.SourceID, bit = v, 4
			case "msg_id":
				m.MsgID, bit = v, 8
			case "group_key":
				m.GroupKey, bit = v, 16
			case "fingerprint":
				m.Fingerprint, bit = v, 32
			case "event_time":
				m.EventTime, bit = v, 64
			case "trace_id":
				m.TraceID, bit = v, 128
			case "payload":
				m.Payload, bit = v, 256
			default:
				return false
			}
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		s.WS()
		if s.Lit('}') {
			return true
		}
		if !s.Lit(',') {
			return false
		}
		s.WS()
	}
}
