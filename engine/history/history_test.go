package history

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

func sampleEvents() []Line {
	return []Line{
		{Op: OpSend, T: t0, Client: "c1", Source: "s1", Seq: 17, MsgID: "1859302761234567168", Key: "k42", Fingerprint: "f", Node: "n2", Result: ResultOK, HLC: HLC{1763805600123456789, 2}, Partition: 0, HasPartition: true, Epoch: 5},
		{Op: OpSend, T: t0, Source: "s1", Seq: 18, MsgID: "2", Key: "k42", Result: ResultTimeout},
		{Op: OpRecv, T: t0, Client: "cons", Partition: 0, Offset: 0, Key: "k42", Source: "s1", Seq: 17, MsgID: "1859302761234567168", Epoch: 5, HLC: HLC{1763805600123456789, 2}, Node: "n1"},
		{Op: OpGap, Partition: 3, Offset: 121, Source: "s1", FromSeq: 18, ToSeq: 20},
		{Op: OpRead, Key: "k1", Value: "", Node: "n3", Result: ResultOK, Start: t0, End: t0.Add(time.Millisecond)},
		{Op: OpWrite, Key: "k1", Value: "DONE/1/x", Result: ResultTimeout, Start: t0, End: t0.Add(time.Second), State: "DONE", ExpectedVersion: 0},
		{Op: OpNode, T: t0, Node: "n2", NodeEvent: NodeKill, Detail: "SIGKILL pid 42"},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	in := sampleEvents()
	for _, ev := range in {
		if err := w.Write(ev); err != nil {
			t.Fatalf("write %s: %v", ev.Op, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := ReadAll(&buf)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d events, wrote %d", len(out), len(in))
	}
	for i := range in {
		want := in[i]
		want.Line = i + 1
		got := out[i]
		if !got.T.Equal(want.T) || !got.Start.Equal(want.Start) || !got.End.Equal(want.End) {
			t.Fatalf("event %d times differ: %+v vs %+v", i, got, want)
		}
		got.T, got.Start, got.End = want.T, want.Start, want.End
		if got != want {
			t.Fatalf("event %d:\n got  %+v\n want %+v", i, got, want)
		}
	}
}

func TestSpecExampleLinesParse(t *testing.T) {
	lines := []string{
		`{"op":"send","t":"2026-11-22T10:00:00.123456789Z","client":"c","source":"s1","seq":17,"msg_id":"1","key":"k42","fingerprint":"x","node":"n2","result":"ok","hlc":"1763805600123456789.2"}`,
		`{"op":"recv","partition":3,"offset":120,"key":"k42","source":"s1","seq":17,"msg_id":"1","epoch":5,"hlc":"1.0","node":"n1"}`,
		`{"op":"gap","partition":3,"offset":121,"source":"s1","from_seq":18,"to_seq":20}`,
		`{"op":"read","key":"k42","value":"d","node":"n3","result":"ok","start":"2026-11-22T10:00:00Z","end":"2026-11-22T10:00:01Z"}`,
		`{"op":"write","key":"k42","value":"d","node":"n3","result":"timeout","start":"2026-11-22T10:00:00Z","end":"2026-11-22T10:00:01Z"}`,
		`{"op":"node","node":"n2","event":"kill","detail":"x"}`,
	}
	evs, err := ReadAll(strings.NewReader(strings.Join(lines, "\n") + "\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(lines) {
		t.Fatalf("got %d events", len(evs))
	}
	if evs[0].HLC != (HLC{1763805600123456789, 2}) || evs[1].Partition != 3 || evs[1].Offset != 120 {
		t.Fatalf("fields not decoded: %+v %+v", evs[0], evs[1])
	}
}

func TestMalformedLinesNameLineFieldAndHint(t *testing.T) {
	good := `{"op":"node","node":"n1","event":"start"}`
	cases := []struct {
		name, line, field, msg string
	}{
		{"unknown op", `{"op":"sned","source":"s"}`, "op", "unknown op"},
		{"missing op", `{"source":"s"}`, "op", "missing op"},
		{"bad result", `{"op":"send","source":"s","seq":1,"msg_id":"1","key":"k","result":"okay"}`, "result", "bad result"},
		{"rejected read", `{"op":"read","key":"k","result":"rejected","start":"2026-11-22T10:00:00Z","end":"2026-11-22T10:00:00Z"}`, "result", "bad result"},
		{"bad time", `{"op":"node","t":"yesterday","node":"n1","event":"kill"}`, "t", "bad time"},
		{"bad start", `{"op":"read","key":"k","result":"ok","start":"2026-11-22 10:00","end":"2026-11-22T10:00:00Z"}`, "start", "bad time"},
		{"end before start", `{"op":"read","key":"k","result":"ok","start":"2026-11-22T10:00:01Z","end":"2026-11-22T10:00:00Z"}`, "end", "before start"},
		{"bad hlc", `{"op":"recv","partition":1,"offset":1,"source":"s","seq":1,"msg_id":"1","hlc":"12:3"}`, "hlc", "bad hlc"},
		{"bad hlc logical", `{"op":"recv","partition":1,"offset":1,"source":"s","seq":1,"msg_id":"1","hlc":"12.-3"}`, "hlc", "bad hlc"},
		{"wrong type", `{"op":"recv","partition":"1","offset":1,"source":"s","seq":1,"msg_id":"1"}`, "partition", "wrong type"},
		{"unknown field", `{"op":"node","node":"n1","event":"kill","colour":"red"}`, "colour", "unknown field"},
		{"field not allowed", `{"op":"node","node":"n1","event":"kill","seq":3}`, "seq", "not allowed"},
		{"missing field", `{"op":"send","source":"s","seq":1,"key":"k","result":"ok"}`, "msg_id", "missing field"},
		{"seq zero", `{"op":"send","source":"s","seq":0,"msg_id":"1","key":"k","result":"ok"}`, "seq", "seq 0"},
		{"bad gap", `{"op":"gap","partition":1,"offset":1,"source":"s","from_seq":5,"to_seq":4}`, "to_seq", "bad gap"},
		{"negative offset", `{"op":"gap","partition":1,"offset":-1,"source":"s","from_seq":5,"to_seq":6}`, "offset", "negative"},
		{"not json", `op=send`, "", "invalid JSON"},
		{"truncated", `{"op":"node","node":"n1"`, "", "JSON"},
		{"trailing", `{"op":"node","node":"n1","event":"kill"} {}`, "", "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadAll(strings.NewReader(good + "\n" + c.line + "\n" + good))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want *ParseError, got %v", err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error kind is not ErrMalformed: %v", err)
			}
			if pe.Line != 2 || pe.Field != c.field || !strings.Contains(pe.Msg, c.msg) || pe.Hint == "" {
				t.Fatalf("got line %d field %q msg %q hint %q; want line 2 field %q msg ~%q", pe.Line, pe.Field, pe.Msg, pe.Hint, c.field, c.msg)
			}
			if !strings.Contains(err.Error(), "line 2") {
				t.Fatalf("message does not name the line: %v", err)
			}
		})
	}
}

func TestTooLongLine(t *testing.T) {
	long := `{"op":"node","node":"n1","event":"kill","detail":"` + strings.Repeat("x", MaxLine) + `"}`
	_, err := ReadAll(strings.NewReader(long))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 1 {
		t.Fatalf("want a ParseError on line 1, got %v", err)
	}
}

func TestWriterConcurrentAndFsyncedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const writers, each = 8, 500
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 1; i <= each; i++ {
				ev := Line{Op: OpSend, T: t0, Source: fmt.Sprintf("s%d", g), Seq: uint64(i), MsgID: fmt.Sprintf("%d-%d", g, i), Key: "k", Result: ResultOK}
				if err := w.Write(ev); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := w.Write(sampleEvents()[0]); err == nil {
		t.Fatal("write after close succeeded")
	}
	evs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each || w.Lines() != writers*each {
		t.Fatalf("read %d lines, counted %d, want %d", len(evs), w.Lines(), writers*each)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.MsgID] {
			t.Fatalf("line for %s written twice", ev.MsgID)
		}
		seen[ev.MsgID] = true
	}
}

func TestWriterRefusesInvalidEvent(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.Write(Line{Op: OpSend, Source: "s"}); err == nil {
		t.Fatal("wrote a send without seq/msg_id")
	}
	if err := w.Write(Line{}); err == nil {
		t.Fatal("wrote an event without op")
	}
}

func TestReadFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(path, []byte("{\"op\":\"x\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl:line 1") {
		t.Fatalf("error does not name file and line: %v", err)
	}
}

func TestHLCParseAndOrder(t *testing.T) {
	for _, s := range []string{"", ".", "1.", ".1", "a.1", "1.b", "-1.0", "+1.0", "1.+2", "1.4294967296"} {
		if _, err := ParseHLC(s); err == nil {
			t.Errorf("ParseHLC(%q) accepted", s)
		}
	}
	a, _ := ParseHLC("10.2")
	b, _ := ParseHLC("10.3")
	c, _ := ParseHLC("11.0")
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.String() != "10.2" {
		t.Fatalf("bad order/format %v %v %v", a, b, c)
	}
}

func TestNodeStats(t *testing.T) {
	st, err := SortedNodeStats("rss_bytes=10 rss_bytes_cap=20")
	if err != nil || len(st) != 2 || st[0].Name != "rss_bytes" || st[1].Value != 20 {
		t.Fatalf("got %v %v", st, err)
	}
	if _, err := SortedNodeStats("rss=12abc"); err == nil {
		t.Fatal("accepted a non-number")
	}
}

func FuzzDecodeLine(f *testing.F) {
	for _, ev := range sampleEvents() {
		b, err := Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":"send","seq":-1}`))
	f.Add([]byte(`{"op":"recv","hlc":"1.2.3"}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"op":"gap","partition":1e99}`))
	f.Add([]byte(`{"op":"dlq","msg_id":"7","reason":"late","upstream":"kafka:in","upstream_partition":2,"upstream_offset":9,"attempts":3}`))
	f.Add([]byte(`{"op":"commit","upstream":"nats:IN","upstream_offset":0}`))
	f.Add([]byte(`{"op":"send","source":"s","seq":1,"msg_id":"1","key":"k","result":"ok","upstream":"mqtt","upstream_partition":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeLine(1, data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line != 1 {
				t.Fatalf("error is not a line-1 ParseError: %v", err)
			}
			return
		}
		// Whatever the reader accepts, the writer must reproduce and the
		// reader must accept again with the same meaning.
		b, err := Marshal(ev)
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode: %v", data, err)
		}
		ev2, err := DecodeLine(1, b)
		if err != nil {
			t.Fatalf("re-encoded %q rejected: %v", b, err)
		}
		if !ev.T.Equal(ev2.T) || !ev.Start.Equal(ev2.Start) || !ev.End.Equal(ev2.End) {
			t.Fatalf("times changed on round trip")
		}
		ev.T, ev.Start, ev.End = ev2.T, ev2.Start, ev2.End
		if ev != ev2 {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, ev2)
		}
	})
}

func BenchmarkDecodeLine(b *testing.B) {
	line, err := Marshal(sampleEvents()[2])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeLine(1, line); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUpstreamOps: dlq and commit lines and the upstream fields of a send
// round-trip, and their faults are named.
func TestUpstreamOps(t *testing.T) {
	good := []string{
		`{"op":"send","partition":1,"key":"k","source":"s1","seq":3,"msg_id":"9","result":"ok","upstream":"kafka:in","upstream_partition":0,"upstream_offset":0}`,
		`{"op":"dlq","key":"k","source":"s1","seq":3,"msg_id":"9","node":"n2","upstream":"kafka:in","upstream_partition":0,"upstream_offset":0,"reason":"retries exhausted after 5 attempts: no_leader","attempts":5}`,
		`{"op":"commit","node":"n1","upstream":"kafka:in","upstream_partition":0,"upstream_offset":1}`,
	}
	for i, l := range good {
		ev, err := DecodeLine(i+1, []byte(l))
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		b, err := Marshal(ev)
		if err != nil || string(b) != l {
			t.Errorf("round trip:\n got %s (%v)\nwant %s", b, err, l)
		}
	}
	bad := []struct{ line, want string }{
		{`{"op":"dlq","msg_id":"9"}`, `field "reason": missing field`},
		{`{"op":"commit","upstream":"k"}`, `field "upstream_offset": missing field`},
		{`{"op":"commit","upstream":"k","upstream_offset":-2}`, "negative upstream_offset"},
		{`{"op":"recv","partition":0,"offset":0,"source":"s","seq":1,"msg_id":"1","upstream":"k"}`, `field "upstream": field not allowed on op "recv"`},
		{`{"op":"dlq","msg_id":"9","reason":"r","attempts":-1}`, "negative attempts"},
		{`{"op":"send","source":"s","seq":1,"msg_id":"1","key":"k","result":"ok","upstream":""}`, "empty upstream"},
	}
	for _, b := range bad {
		_, err := DecodeLine(1, []byte(b.line))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want %q", b.line, err, b.want)
		}
	}
}
