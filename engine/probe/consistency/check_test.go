package consistency

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine/history"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/")

// expect pins what each planted history must show, so that a golden file
// rewritten with -update cannot silently accept a checker that misses it.
var expect = map[string]func(r Report) string{
	"clean": func(r Report) string {
		return want(r.OK && r.Counts.SentOK == 8 && r.Counts.Received == 7 && r.Counts.Linearizability == LinOK, "clean history must pass")
	},
	"lost":      func(r Report) string { return want(r.Counts.Lost == 1 && has(r, "I1"), "one lost") },
	"duplicate": func(r Report) string { return want(r.Counts.Duplicated == 1 && has(r, "I2"), "one duplicate") },
	"duplicate_msgid": func(r Report) string {
		return want(r.Counts.Duplicated == 1 && has(r, "I2"), "one duplicate by msg_id")
	},
	"unexpected": func(r Report) string { return want(r.Counts.Unexpected == 2 && has(r, "I3"), "two unexpected") },
	"reorder":    func(r Report) string { return want(r.Counts.OrderViolations == 1 && has(r, "I4"), "one reorder") },
	"readers_disagree": func(r Report) string {
		return want(r.Counts.OrderViolations == 1 && has(r, "I4"), "readers disagree on one offset")
	},
	"hlc_regression": func(r Report) string { return want(r.Counts.HLCViolations == 1 && has(r, "I5"), "one HLC regression") },
	"hlc_cross_node": func(r Report) string {
		return want(r.Counts.HLCViolations == 1 && has(r, "I5"), "cross-node regression beyond max offset")
	},
	"split_brain": func(r Report) string {
		return want(r.Counts.SplitBrain >= 2 && r.Counts.Lost == 1 && has(r, "I8"), "two epochs writing at once")
	},
	"ack_after_gap": func(r Report) string {
		return want(r.Counts.Lost == 1 && r.Counts.SplitBrain == 0 && has(r, "I1"), "retry acknowledged after its seq was declared a gap")
	},
	"gap_superseded": func(r Report) string {
		return want(r.Counts.Lost == 0 && r.Counts.SplitBrain == 1 && has(r, "I8"), "acked write of a deposed leader declared a gap")
	},
	"stale_epoch": func(r Report) string { return want(r.Counts.SplitBrain == 1 && has(r, "I8"), "stale epoch committed") },
	"nonlinearizable": func(r Report) string {
		return want(r.Counts.Linearizability == LinIllegal && has(r, "I9"), "stale read")
	},
	"caps": func(r Report) string {
		return want(!r.OK && has(r, "I6") && len(r.Violations) == 1, "rss above cap only")
	},
	"kill_lost": func(r Report) string {
		return want(r.Counts.Lost == 1 && r.Counts.Duplicated == 1 && has(r, "I7") && has(r, "I1") && has(r, "I2"), "lost and re-stored across a kill")
	},
}

func want(ok bool, what string) string {
	if ok {
		return ""
	}
	return what
}

func has(r Report, inv string) bool {
	for _, v := range r.Violations {
		if v.Invariant == inv {
			return true
		}
	}
	return false
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		t.Run(name, func(t *testing.T) {
			evs, err := history.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rep := Check(evs, Config{})
			got, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			exp, ok := expect[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			if msg := exp(rep); msg != "" {
				t.Fatalf("%s: %s\n%s", name, msg, got)
			}
			if name != "clean" && rep.OK {
				t.Fatalf("planted anomaly passed:\n%s", got)
			}
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantB, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, wantB) {
				t.Fatalf("report differs from %s (run go test -update after review):\n%s", golden, got)
			}
			// Deterministic: a second run gives the same bytes.
			again, _ := json.MarshalIndent(Check(evs, Config{}), "", "  ")
			if !bytes.Equal(append(again, '\n'), got) {
				t.Fatal("two runs over one history differ")
			}
		})
	}
}

func TestCheckFileNamesFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	if err := os.WriteFile(path, []byte("{\"op\":\"node\",\"node\":\"n1\",\"event\":\"kill\"}\n{\"op\":\"recv\",\"hlc\":\"x\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := CheckFile(path, Config{})
	if err == nil || !strings.Contains(err.Error(), "h.jsonl:line 2") {
		t.Fatalf("got %v", err)
	}
	rep, err := CheckFile(filepath.Join("testdata", "lost.jsonl"), Config{})
	if err != nil || rep.Counts.Lost != 1 {
		t.Fatalf("streamed check: %+v %v", rep.Counts, err)
	}
}

func TestReportShapeMatchesContract(t *testing.T) {
	b, err := json.Marshal(Check(nil, Config{}))
	if err != nil {
		t.Fatal(err)
	}
	const w = `{"ok":true,"counts":{"sent_ok":0,"received":0,"lost":0,"duplicated":0,"unexpected":0,"order_violations":0,"hlc_violations":0,"split_brain":0,"linearizability":"ok"},"violations":[]}`
	if string(b) != w {
		t.Fatalf("got %s\nwant %s", b, w)
	}
}

// naive is the reference implementation for the property test: quadratic
// loops straight from the invariant definitions, no indexes.
func naive(evs []history.Event) Counts {
	var c Counts
	var recs []history.Event
	for _, e := range evs {
		if e.Op == history.OpRecv {
			dupOffset := false
			for _, r := range recs {
				if r.Partition == e.Partition && r.Offset == e.Offset {
					dupOffset = true
				}
			}
			if !dupOffset {
				recs = append(recs, e)
			}
		}
	}
	// order by (partition, offset)
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && (recs[j].Partition < recs[j-1].Partition || recs[j].Partition == recs[j-1].Partition && recs[j].Offset < recs[j-1].Offset); j-- {
			recs[j], recs[j-1] = recs[j-1], recs[j]
		}
	}
	c.Received = len(recs)
	isDup := make([]bool, len(recs))
	for i, r := range recs {
		for j := 0; j < i; j++ {
			if !isDup[j] && (recs[j].MsgID == r.MsgID || recs[j].Partition == r.Partition && recs[j].Source == r.Source && recs[j].Seq == r.Seq) {
				isDup[i] = true
			}
		}
		if isDup[i] {
			c.Duplicated++
			continue
		}
		sent := false
		for _, e := range evs {
			if e.Op == history.OpSend && e.MsgID == r.MsgID && e.Source == r.Source && e.Seq == r.Seq && (e.Result == history.ResultOK || e.Result == history.ResultTimeout) {
				sent = true
			}
		}
		if !sent {
			c.Unexpected++
		}
		for j := i - 1; j >= 0; j-- {
			if !isDup[j] && recs[j].Partition == r.Partition && recs[j].Key == r.Key && recs[j].Source == r.Source {
				maxSeq := uint64(0)
				for k := 0; k < i; k++ {
					if !isDup[k] && recs[k].Partition == r.Partition && recs[k].Key == r.Key && recs[k].Source == r.Source && recs[k].Seq > maxSeq {
						maxSeq = recs[k].Seq
					}
				}
				if r.Seq <= maxSeq {
					c.OrderViolations++
				}
				break
			}
		}
	}
	counted := map[string]bool{}
	for _, e := range evs {
		if e.Op != history.OpSend || e.Result != history.ResultOK || counted[e.MsgID] {
			continue
		}
		counted[e.MsgID] = true
		c.SentOK++
		found := false
		for _, r := range recs {
			if r.MsgID == e.MsgID || (r.Partition == e.Partition && r.Source == e.Source && r.Seq == e.Seq) {
				found = true
			}
		}
		if !found {
			c.Lost++
		}
	}
	return c
}

// randomHistory simulates sources sending to one stream that loses,
// duplicates and reorders records at random.
func randomHistory(rng *rand.Rand) []history.Event {
	var evs []history.Event
	var out []history.Event
	t := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	id := 0
	for s := 0; s < 1+rng.Intn(4); s++ {
		src := fmt.Sprintf("s%d", s)
		seqs := map[int]uint64{}
		for i := 0; i < rng.Intn(30); i++ {
			part := rng.Intn(3)
			seqs[part]++
			id++
			key := fmt.Sprintf("k%d", part*10+rng.Intn(3))
			mid := fmt.Sprint(id)
			res := []history.Result{history.ResultOK, history.ResultOK, history.ResultOK, history.ResultTimeout, history.ResultRejected}[rng.Intn(5)]
			evs = append(evs, history.Event{Op: history.OpSend, T: t, Source: src, Seq: seqs[part], MsgID: mid, Key: key, Result: res, Partition: part, HasPartition: true})
			rec := history.Event{Op: history.OpRecv, Partition: part, Source: src, Seq: seqs[part], MsgID: mid, Key: key}
			if rng.Intn(10) > 0 || res == history.ResultTimeout {
				out = append(out, rec)
			}
			if rng.Intn(10) == 0 {
				out = append(out, rec) // duplicate
			}
			if rng.Intn(20) == 0 {
				rec.MsgID = "x" + mid // unexpected identity
				rec.Seq += 1000
				out = append(out, rec)
			}
		}
	}
	rng.Shuffle(len(out), func(i, j int) {
		if rng.Intn(8) == 0 {
			out[i], out[j] = out[j], out[i]
		}
	})
	offsets := map[int]int64{}
	for _, r := range out {
		r.Offset = offsets[r.Partition]
		offsets[r.Partition]++
		evs = append(evs, r)
		if rng.Intn(15) == 0 { // a second reader re-reads the same record
			r.Client = "cons2"
			evs = append(evs, r)
		}
	}
	return evs
}

func TestPropertyAgainstNaiveReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	anomalies := 0
	for i := 0; i < 2000; i++ {
		evs := randomHistory(rng)
		got := Check(evs, Config{}).Counts
		ref := naive(evs)
		got.Linearizability, got.HLCViolations, got.SplitBrain = "", 0, 0
		if got != ref {
			var b strings.Builder
			for _, e := range evs {
				line, _ := history.Marshal(e)
				b.Write(line)
				b.WriteByte('\n')
			}
			t.Fatalf("case %d: checker %+v, reference %+v\n%s", i, got, ref, b.String())
		}
		if ref.Lost+ref.Duplicated+ref.Unexpected+ref.OrderViolations > 0 {
			anomalies++
		}
	}
	if anomalies < 500 {
		t.Fatalf("generator planted anomalies in only %d of 2000 histories", anomalies)
	}
}

func TestTimeoutIsNotLossAndRejectedMustNotBeStored(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	evs := []history.Event{
		{Op: history.OpSend, T: t0, Source: "s", Seq: 1, MsgID: "1", Key: "k", Result: history.ResultTimeout},
		{Op: history.OpSend, T: t0, Source: "s", Seq: 2, MsgID: "2", Key: "k", Result: history.ResultRejected},
	}
	if r := Check(evs, Config{}); !r.OK || r.Counts.Lost != 0 {
		t.Fatalf("timeout counted as loss: %+v", r)
	}
	evs = append(evs, history.Event{Op: history.OpRecv, Partition: 0, Offset: 0, Source: "s", Seq: 2, MsgID: "2", Key: "k"})
	if r := Check(evs, Config{}); r.OK || r.Counts.Unexpected != 1 {
		t.Fatalf("stored rejected message not flagged: %+v", r)
	}
}

func TestLinearizabilityTimedOutWriteMayApplyLater(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	evs := []history.Event{
		{Op: history.OpWrite, Client: "a", Key: "k", Value: "v1", Result: history.ResultTimeout, Start: at(1), End: at(2)},
		{Op: history.OpRead, Client: "b", Key: "k", Value: "", Result: history.ResultOK, Start: at(3), End: at(4)},
		{Op: history.OpRead, Client: "b", Key: "k", Value: "v1", Result: history.ResultOK, Start: at(5), End: at(6)},
	}
	if r := Check(evs, Config{}); r.Counts.Linearizability != LinOK {
		t.Fatalf("timed-out write taking effect late flagged: %+v", r)
	}
	evs = append(evs, history.Event{Op: history.OpRead, Client: "b", Key: "k", Value: "", Result: history.ResultOK, Start: at(7), End: at(8)})
	if r := Check(evs, Config{}); r.Counts.Linearizability != LinIllegal {
		t.Fatalf("value going back to initial not flagged: %+v", r)
	}
}

// BenchmarkCheck1M measures checking a clean one-million-line history.
func BenchmarkCheck1M(b *testing.B) {
	evs := bigHistory(1_000_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := Check(evs, Config{}); !r.OK {
			b.Fatalf("clean history failed: %+v", r.Violations)
		}
	}
	b.ReportMetric(float64(len(evs)), "lines/op")
}

// BenchmarkReadAndCheck1M includes parsing the JSON lines.
func BenchmarkReadAndCheck1M(b *testing.B) {
	var buf bytes.Buffer
	w := history.NewWriter(&buf)
	for _, ev := range bigHistory(1_000_000) {
		if err := w.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := CheckReader(bytes.NewReader(buf.Bytes()), Config{})
		if err != nil {
			b.Fatal(err)
		}
		if !r.OK {
			b.Fatal("clean history failed")
		}
	}
}

func bigHistory(lines int) []history.Event {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const sources, parts = 8, 16
	evs := make([]history.Event, 0, lines)
	seq := map[[2]int]uint64{}
	offs := map[int]int64{}
	var recv []history.Event
	for i := 0; len(evs)+len(recv)+2 <= lines; i++ {
		s, p := i%sources, (i/sources)%parts
		seq[[2]int{s, p}]++
		q := seq[[2]int{s, p}]
		src, key, id := fmt.Sprintf("s%d", s), fmt.Sprintf("k%d", p*4+i%4), fmt.Sprint(1_000_000+i)
		h := history.HLC{Wall: t0.UnixNano() + int64(i), Logical: 0}
		evs = append(evs, history.Event{Op: history.OpSend, T: t0, Source: src, Seq: q, MsgID: id, Key: key, Node: "n1", Result: history.ResultOK, HLC: h, Partition: p, HasPartition: true, Epoch: 2})
		recv = append(recv, history.Event{Op: history.OpRecv, Partition: p, Offset: offs[p], Key: key, Source: src, Seq: q, MsgID: id, Epoch: 2, HLC: h, Node: "n1"})
		offs[p]++
	}
	return append(evs, recv...)
}

// FuzzCheck feeds arbitrary histories (whatever the strict reader accepts)
// to the checker: it must never panic and must stay deterministic.
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := history.ReadAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		cfg := Config{LinearizabilityTimeout: time.Second}
		a, _ := json.Marshal(Check(evs, cfg))
		b, _ := json.Marshal(Check(evs, cfg))
		if !bytes.Equal(a, b) && !bytes.Contains(a, []byte(`"unknown"`)) {
			t.Fatalf("two checks differ:\n%s\n%s", a, b)
		}
	})
}

type linOp struct {
	write     bool
	value     string
	call, ret int64
	okTimeout bool
}

// bruteLinearizable tries every order of ops that respects real time (a
// before b when a returns before b is called) on a register starting at "".
func bruteLinearizable(ops []linOp) bool {
	n := len(ops)
	used := make([]bool, n)
	var rec func(done int, state string) bool
	rec = func(done int, state string) bool {
		if done == n {
			return true
		}
		for i := 0; i < n; i++ {
			if used[i] {
				continue
			}
			// i may go next only if no unused op returned before i was called
			ok := true
			for j := 0; j < n; j++ {
				if j != i && !used[j] && ops[j].ret < ops[i].call {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			next := state
			if ops[i].write {
				next = ops[i].value
			} else if ops[i].value != state {
				continue
			}
			used[i] = true
			if rec(done+1, next) {
				used[i] = false
				return true
			}
			used[i] = false
		}
		return false
	}
	return rec(0, "")
}

func TestLinearizabilityAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	illegal := 0
	for c := 0; c < 3000; c++ {
		n := 2 + rng.Intn(5)
		var ops []linOp
		var evs []history.Event
		for i := 0; i < n; i++ {
			call := int64(rng.Intn(20))
			ret := call + int64(rng.Intn(6))
			op := linOp{write: rng.Intn(2) == 0, call: call, ret: ret}
			op.value = []string{"", "a", "b"}[rng.Intn(3)]
			ev := history.Event{Op: history.OpRead, Client: fmt.Sprint("c", i), Key: "k", Value: op.value, Result: history.ResultOK,
				Start: t0.Add(time.Duration(call)), End: t0.Add(time.Duration(ret))}
			if op.write {
				if op.value == "" {
					op.value = "a"
				}
				ev.Op, ev.Value = history.OpWrite, op.value
				if rng.Intn(4) == 0 { // timed out: may apply any time after its call
					ev.Result = history.ResultTimeout
					op.ret = math.MaxInt64
				}
			}
			ops = append(ops, op)
			evs = append(evs, ev)
		}
		want := bruteLinearizable(ops)
		got := Check(evs, Config{}).Counts.Linearizability
		if (got == LinOK) != want || got == LinUnknown {
			t.Fatalf("case %d: porcupine %s, brute force linearizable=%v: %+v", c, got, want, ops)
		}
		if !want {
			illegal++
		}
	}
	if illegal < 300 {
		t.Fatalf("only %d of 3000 random histories were non-linearizable", illegal)
	}
}
