package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	pb "github.com/chaosgate/chaosgate/aggregator/api/v1"
)

func TestBadInputClearErrorsServiceStaysHealthy(t *testing.T) {
	c := startCluster(t, 3, nil)
	url := "http://" + c.http["n1"]
	big := make([]Message, MaxBatch+1)
	for i := range big {
		big[i] = Message{SourceID: "s", Seq: uint64(i + 1), MsgID: fmt.Sprint(i + 1), GroupKey: "k", Fingerprint: "f"}
	}
	cases := []struct {
		name, method, path string
		body               any
		code               int
		want               []string
	}{
		{"malformed JSON", "POST", "/v1/messages", `{"source_id":"s1",`, 400, []string{"line 1", "malformed JSON", "hint"}},
		{"wrong type", "POST", "/v1/messages", `{"messages":[{"source_id":"s","seq":1,"msg_id":"1","group_key":"k","fingerprint":"f"},{"source_id":"s","seq":"two"}]}`, 400, []string{"$.messages[1].seq", "unsigned integer"}},
		{"missing field", "POST", "/v1/messages", `{"source_id":"s","seq":1,"msg_id":"1","fingerprint":"f"}`, 400, []string{"$.group_key", "required"}},
		{"unknown field", "POST", "/v1/messages", `{"source_id":"s","seq":1,"msg_id":"1","group_key":"k","fingerprint":"f","colour":"red"}`, 400, []string{"$.colour", "unknown field"}},
		{"bad snowflake", "POST", "/v1/messages", `{"source_id":"s","seq":1,"msg_id":"abc","group_key":"k","fingerprint":"f"}`, 400, []string{"$.msg_id", "decimal"}},
		{"oversized batch", "POST", "/v1/messages", map[string]any{"messages": big}, 413, []string{"1001 messages", "split"}},
		{"oversized body", "POST", "/v1/messages", `{"payload":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, []string{"bytes"}},
		{"unknown partition", "GET", "/v1/stream/99", nil, 404, []string{"unknown partition 99", "0..3"}},
		{"partition not a number", "GET", "/v1/stream/abc", nil, 404, []string{"not a number"}},
		{"bad offset", "GET", "/v1/stream/0?from=-1", nil, 400, []string{"from="}},
		{"bad state", "PUT", "/v1/state/k", `{"state":"RUNNING","expected_version":0}`, 400, []string{"RUNNING", "hint"}},
		{"state without version", "PUT", "/v1/state/k", `{"state":"PROCESSING"}`, 400, []string{"expected_version"}},
	}
	for _, tc := range cases {
		code, body, _ := doJSON(t, tc.method, url+tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%s: HTTP %d want %d: %s", tc.name, code, tc.code, body)
			continue
		}
		var eb ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || eb.Error == "" {
			t.Errorf("%s: body is not an error object: %s", tc.name, body)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: error %s lacks %q", tc.name, body, w)
			}
		}
	}
	// stale epoch: 409 with stale_epoch, not stored
	m := Message{SourceID: "s", Seq: 1, MsgID: "77", GroupKey: "k-epoch", Fingerprint: "f", Epoch: 1}
	code, res := c.send(t, "n1", m)
	for code == 503 { // wait out a leader change
		code, res = c.send(t, "n1", m)
	}
	if code != 409 || res[0].Status != StatusStaleEpoch || !strings.Contains(res[0].Error, "stale") {
		t.Fatalf("stale epoch: %d %+v", code, res)
	}
	p := partitionOf("k-epoch", 4)
	if recs := c.readAll(t, "n2", p); len(recs) != 0 {
		t.Fatalf("stale-epoch message stored: %+v", recs)
	}
	// the current epoch is accepted
	m.Epoch = res[0].Epoch
	if r := c.sendRetry(t, "n1", m); r[0].Status != StatusOK {
		t.Fatalf("current epoch: %+v", r[0])
	}
	// Still healthy: every node answers and is ready. Readiness is a
	// moment's view (a follower applying its last commit, a leader
	// change under a loaded host answer 503 for a beat), so each node has
	// a few seconds to report ready; one that never does fails with why.
	for _, id := range c.ids {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body, _ := doJSON(t, "GET", "http://"+c.http[id]+"/readyz", nil)
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready 10s after bad input: HTTP %d %s", id, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func FuzzDecodeMessages(f *testing.F) {
	for _, s := range []string{
		`{"source_id":"s1","seq":17,"msg_id":"1859302761234567168","group_key":"k42","fingerprint":"order-991","event_time":"2026-11-22T10:00:00.123456789Z","trace_id":"4bf9","payload":"x","epoch":0}`,
		`{"messages":[{"source_id":"s","seq":1,"msg_id":"1","group_key":"k","fingerprint":"f"}]}`,
		`{"messages":[]}`, `{"messages":{}}`, `[]`, `null`, `{"seq":-1}`, `{"seq":1e30}`, `{"source_id":"s",`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeMessages(b)
		if err != nil {
			var ie *InputError
			if !asInput(err, &ie) || ie.Error() == "" {
				t.Fatalf("error without kind: %v", err)
			}
			return
		}
		if fast, ok := decodeFast(bytes.TrimSpace(b)); ok {
			// (the precise path is stricter about field-name case)
			slow, err := decodeSlow(bytes.TrimSpace(b))
			if err == nil && len(slow) != len(fast) {
				t.Fatalf("paths disagree on the count: %d vs %d", len(fast), len(slow))
			}
			for i := range slow {
				if fast[i] != slow[i] {
					t.Fatalf("paths disagree: %+v vs %+v", fast[i], slow[i])
				}
			}
		}
		if len(msgs) == 0 || len(msgs) > MaxBatch {
			t.Fatalf("%d messages accepted", len(msgs))
		}
		for i := range msgs {
			if err := Validate(&msgs[i], "$"); err != nil {
				t.Fatalf("accepted an invalid message: %v", err)
			}
		}
	})
}

func FuzzFromProto(f *testing.F) {
	f.Add("s1", uint64(1), "1859302761234567168", "k", "f", "2026-11-22T10:00:00Z", "t", []byte("p"), uint64(0))
	f.Add("", uint64(0), "x", "", "", "yesterday", "", []byte(nil), uint64(3))
	f.Fuzz(func(t *testing.T, src string, seq uint64, id, key, fp, et, tr string, payload []byte, epoch uint64) {
		m, err := FromProto(&pb.Message{SourceId: src, Seq: seq, MsgId: id, GroupKey: key, Fingerprint: fp, EventTime: et, TraceId: tr, Payload: payload, Epoch: epoch}, "messages[0]")
		if err != nil {
			var ie *InputError
			if !asInput(err, &ie) || !strings.HasPrefix(ie.Path, "messages[0]") {
				t.Fatalf("error without path: %v", err)
			}
			return
		}
		if m.SourceID == "" || m.Seq == 0 || m.GroupKey == "" || m.Fingerprint == "" {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// jsonReference decodes b with encoding/json (unknown fields refused), the
// semantics the hand-written scanner must reproduce on what it accepts.
func jsonReference(b []byte) ([]Message, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if _, ok := probe["messages"]; ok {
		var env struct {
			Messages []Message `json:"messages"`
		}
		if err := dec.Decode(&env); err != nil {
			return nil, err
		}
		return env.Messages, nil
	}
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return []Message{m}, nil
}

func TestScanMessagesMatchesEncodingJSON(t *testing.T) {
	accepted := []string{
		`{"source_id":"s","seq":1,"msg_id":"1","group_key":"k","fingerprint":"f"}`,
		" {\n\t\"messages\" : [ {\"source_id\":\"s\",\"seq\":18446744073709551615,\"msg_id\":\"2\",\"group_key\":\"k\",\"fingerprint\":\"f\",\"payload\":\"héllo ✓\",\"epoch\":0} , {\"source_id\":\"s\",\"seq\":2,\"msg_id\":\"3\",\"group_key\":\"k\",\"fingerprint\":\"f\"} ] } ",
	}
	for _, in := range accepted {
		got, ok := scanMessages([]byte(strings.TrimSpace(in)))
		want, err := jsonReference([]byte(in))
		if !ok || err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: scanner ok=%v %+v, encoding/json %v %+v", in, ok, got, err, want)
		}
	}
	// Shapes the scanner leaves to encoding/json.
	for _, in := range []string{
		`{"source_id":"s\u0041","seq":1}`, `{"Source_ID":"s"}`, `{"seq":1.0}`, `{"seq":01}`, `{"seq":-1}`, `{"seq":18446744073709551616}`,
		`{"seq":null}`, `{"seq":1,"seq":2}`, `{"messages":[{"seq":1}],"source_id":"s"}`, `{"payload":"` + "\xff" + `"}`, `{"x":1}`, `{"seq":1}}`,
	} {
		if _, ok := scanMessages([]byte(in)); ok {
			t.Errorf("scanner accepted %s", in)
		}
	}
}

// FuzzScanMessages: whatever the scanner accepts, encoding/json decodes to
// the same messages.
func FuzzScanMessages(f *testing.F) {
	f.Add([]byte(`{"source_id":"s","seq":1,"msg_id":"1","group_key":"k","fingerprint":"f"}`))
	f.Add([]byte(`{"messages":[{"source_id":"s","seq":2,"msg_id":"2","group_key":"k","fingerprint":"f","epoch":3,"trace_id":"t","event_time":"e","payload":"p"}]}`))
	f.Add([]byte(`{"messages":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := scanMessages(b)
		if !ok {
			return
		}
		want, err := jsonReference(b)
		if err != nil {
			t.Fatalf("scanner accepted what encoding/json refuses (%v): %q", err, b)
		}
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: scanner %+v, encoding/json %+v", b, got, want)
		}
	})
}
