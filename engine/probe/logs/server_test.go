package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/logstest"
)

// nodeLogs writes slog-style lines stamped at t0+seconds into dir/ARM-NODE.log.
type nodeLogs struct {
	t   *testing.T
	dir string
	t0  time.Time
}

func (n nodeLogs) path(arm engine.Arm, node string) string {
	return filepath.Join(n.dir, arm.String()+"-"+node+".log")
}

func (n nodeLogs) write(arm engine.Arm, node string, sec int, msg string) {
	n.t.Helper()
	f, err := os.OpenFile(n.path(arm, node), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	at := n.t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano)
	if _, err := fmt.Fprintf(f, "time=%s level=INFO msg=%q node=%s\n", at, msg, node); err != nil {
		n.t.Fatal(err)
	}
}

func TestShippedLinesAreGuardedByTheLogServer(t *testing.T) {
	vl := logstest.Start(t)
	srv := &Server{Kind: VictoriaLogs, URL: vl.URL}
	run := fmt.Sprintf("run-%d", time.Now().UnixNano())
	arms := []engine.Arm{engine.ArmCanary, engine.ArmControl}
	nl := nodeLogs{t: t, dir: t.TempDir(), t0: time.Now().UTC().Add(-time.Minute).Truncate(time.Second)}
	files := func(arm engine.Arm) map[string]string {
		return map[string]string{"n1": nl.path(arm, "n1"), "n2": nl.path(arm, "n2")}
	}
	ship := NewShipper(ShipperConfig{Server: srv, Arms: arms, Files: files, Labels: func(arm engine.Arm, node string) map[string]string {
		return map[string]string{"app": "aggregator-test", "run_id": run, "arm": arm.String(), "node": node}
	}})
	probe, err := NewServerProbe(ServerConfig{Server: srv, Arms: arms, Sync: ship.Flush, Settle: time.Millisecond,
		// The nodes by regex, as a cluster's agent labels pods.
		Streams: func(arm engine.Arm) Streams {
			return Streams{Labels: map[string]string{"app": "aggregator-test", "run_id": run, "arm": arm.String()},
				LabelRegex: map[string]string{"node": "^(n1|n2)$"}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, arm := range arms {
		nl.write(arm, "n1", 0, "aggregator node started")
		nl.write(arm, "n2", 1, "leader elected partition=3")
	}
	nl.write(engine.ArmCanary, "n2", 10, "dropped message batch after ack msg_id=42")
	nl.write(engine.ArmCanary, "n1", 20, "silently skipped record writes for partition 3")
	nl.write(engine.ArmCanary, "n1", 40, "dropping message msg_id=77 (outside the window)")
	nl.write(engine.ArmControl, "n1", 12, "request took 120ms")

	w := engine.Window{Start: nl.t0.Add(5 * time.Second), End: nl.t0.Add(30 * time.Second)}
	o := observeUntil(t, probe, w, 2)
	if got := o.Arms[engine.ArmControl]["matches"]; got != 0 {
		t.Fatalf("control matches = %v, want 0: %+v", got, o)
	}
	if ship.Pushed() != 8 || ship.Dropped() != 0 {
		t.Fatalf("shipper pushed %d lines, dropped %d; want 8 and 0", ship.Pushed(), ship.Dropped())
	}
	ms := probe.Matches(engine.ArmCanary, w.Start, w.End)
	if len(ms) != 2 {
		t.Fatalf("canary lines = %+v, want the two drops inside the window", ms)
	}
	if ms[0].Node != "n2" || !ms[0].At.Equal(nl.t0.Add(10*time.Second)) || !strings.Contains(ms[0].Line, "msg_id=42") {
		t.Fatalf("first match %+v: want n2 at t0+10s with msg_id=42 (the line's own time)", ms[0])
	}
	if ms[1].Node != "n1" || !strings.Contains(ms[1].Line, "silently skipped") {
		t.Fatalf("second match %+v", ms[1])
	}
	if err := probe.Err(); err != nil {
		t.Fatal(err)
	}
	// A wider window takes the later drop in too, read from the server.
	o = observeUntil(t, probe, engine.Window{Start: w.Start, End: nl.t0.Add(50 * time.Second)}, 3)
	if o.Detail == nil {
		t.Fatal("observation names no guard and query")
	}
}

// observeUntil observes w until the canary's matches reach want: the
// server makes lines searchable a moment after it accepted them.
func observeUntil(t *testing.T, p *ServerProbe, w engine.Window, want float64) engine.Observation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := p.Observe(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		got := o.Arms[engine.ArmCanary]["matches"]
		if got == want {
			return o
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("canary matches = %v, want %v: %+v", got, want, o)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestShipperKeepsLinesWhileTheServerIsDown(t *testing.T) {
	vl := logstest.Start(t)
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Kind: VictoriaLogs, URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Timeout: 2 * time.Second}
	nl := nodeLogs{t: t, dir: t.TempDir(), t0: time.Now().UTC().Add(-time.Minute).Truncate(time.Second)}
	run := fmt.Sprintf("run-%d", time.Now().UnixNano())
	ship := NewShipper(ShipperConfig{Server: srv, Arms: []engine.Arm{engine.ArmCanary},
		Files:  func(engine.Arm) map[string]string { return map[string]string{"n1": nl.path(engine.ArmCanary, "n1")} },
		Labels: func(engine.Arm, string) map[string]string { return map[string]string{"app": "t", "run_id": run} }})
	nl.write(engine.ArmCanary, "n1", 1, "discarded message msg_id=1")
	if err := ship.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "log push") {
		t.Fatalf("push to a closed port: err = %v, want a log push error", err)
	}
	nl.write(engine.ArmCanary, "n1", 2, "discarded message msg_id=2")
	srv.URL = vl.URL // the server is back
	if err := ship.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ship.Pushed() != 2 {
		t.Fatalf("pushed %d lines after the server came back, want both", ship.Pushed())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, q, err := srv.Count(context.Background(), Guard{Labels: map[string]string{"run_id": run}, Pattern: "discarded",
			Start: nl.t0, End: nl.t0.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s counted %d, want 2", q, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestLogServerErrorsNameTheGuardAndTheQuery(t *testing.T) {
	vl := logstest.Start(t)
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	down := &Server{Kind: VictoriaLogs, URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Timeout: 2 * time.Second}
	p, err := NewServerProbe(ServerConfig{Server: down, Arms: []engine.Arm{engine.ArmCanary}, Settle: time.Millisecond,
		Streams: func(engine.Arm) Streams { return Streams{Labels: map[string]string{"app": "x"}} }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, err = p.Observe(context.Background(), engine.Window{Start: now.Add(-time.Minute), End: now})
	var qe *QueryError
	if err == nil || !errors.As(err, &qe) || !strings.Contains(err.Error(), "unreachable") ||
		!strings.Contains(err.Error(), `{app="x"}`) || !strings.Contains(err.Error(), "log guard") || engine.KindOf(err) != engine.KindUnavailable {
		t.Fatalf("unreachable server: err = %v (kind %v), want an unavailable error naming the guard and the query", err, engine.KindOf(err))
	}

	srv := &Server{Kind: VictoriaLogs, URL: vl.URL}
	_, err = srv.Query(context.Background(), `{app="x"} | stats count( n`, 10)
	if err == nil || !errors.As(err, &qe) || !strings.Contains(err.Error(), "HTTP 400") || engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("LogsQL syntax error: err = %v (kind %v), want HTTP 400 as invalid input with the query", err, engine.KindOf(err))
	}
	// Several rows where one count is expected.
	if _, err := DecodeLogsQLCount([]byte("{\"matches\":\"1\"}\n{\"matches\":\"2\"}\n"), "matches"); err == nil || !strings.Contains(err.Error(), "2 rows") {
		t.Fatalf("two count rows: err = %v", err)
	}
	if _, err := NewServerProbe(ServerConfig{Server: srv, Streams: func(engine.Arm) Streams { return Streams{} }, Patterns: []string{"("}}); err == nil ||
		!strings.Contains(err.Error(), "RE2") {
		t.Fatalf("bad pattern: err = %v", err)
	}
}

func TestParseServer(t *testing.T) {
	s, err := ParseServer("victorialogs=http://user:pw@127.0.0.1:9428/")
	if err != nil || s.Kind != VictoriaLogs || s.URL != "http://user:pw@127.0.0.1:9428" || strings.Contains(s.String(), "pw") {
		t.Fatalf("ParseServer = %+v (%s), %v", s, s, err)
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:9428":     "not KIND=URL",
		"elastic=http://h:9200":     "not victorialogs or loki",
		"loki=ftp://h:3100":         "not an http(s) URL",
		"loki=http://":              "not an http(s) URL",
		"victorialogs=::not a url:": "not an http(s) URL",
	} {
		if _, err := ParseServer(in); err == nil || !strings.Contains(err.Error(), want) || engine.KindOf(err) != engine.KindInvalid {
			t.Errorf("ParseServer(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestQueriesAreResolvedWithLabelsWindowAndPattern(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	g := Guard{Labels: map[string]string{"run_id": "r1", "arm": "canary"}, Pattern: `dropp(ed|ing) "msg"`, Start: t0, End: t0.Add(90 * time.Second)}
	vl := &Server{Kind: VictoriaLogs}
	if got, want := vl.CountQuery(g), `{arm="canary",run_id="r1"} _time:[2026-12-05T12:00:00Z, 2026-12-05T12:01:30Z] ~"dropp(ed|ing) \"msg\"" | stats count() matches`; got != want {
		t.Errorf("LogsQL count query\n got %s\nwant %s", got, want)
	}
	loki := &Server{Kind: Loki}
	if got, want := loki.CountQuery(g), `sum(count_over_time({arm="canary",run_id="r1"} |~ "dropp(ed|ing) \"msg\"" [90s]))`; got != want {
		t.Errorf("LogQL count query\n got %s\nwant %s", got, want)
	}
	// An arm's pods as a cluster's log agent labels them: by namespace and
	// a regex of pod names.
	pods := Guard{Labels: map[string]string{"namespace": "shop"}, LabelRegex: map[string]string{"pod": "^(cart-canary-0|cart-canary-1)$"},
		Pattern: "panic", Start: t0, End: t0.Add(time.Minute)}
	if got, want := loki.CountQuery(pods), `sum(count_over_time({namespace="shop",pod=~"^(cart-canary-0|cart-canary-1)$"} |~ "panic" [60s]))`; got != want {
		t.Errorf("LogQL count query by pod regex\n got %s\nwant %s", got, want)
	}
	if got, want := vl.LinesQuery(pods), `{namespace="shop",pod=~"^(cart-canary-0|cart-canary-1)$"} _time:[2026-12-05T12:00:00Z, 2026-12-05T12:01:00Z] ~"panic"`; got != want {
		t.Errorf("LogsQL lines query by pod regex\n got %s\nwant %s", got, want)
	}
	if PushPath(Loki) != "/loki/api/v1/push" || PushPath(VictoriaLogs) != "/insert/loki/api/v1/push" {
		t.Error("push paths")
	}
}

// Loki's answers as its HTTP API reference documents them
// (grafana.com/docs/loki/latest/reference/loki-http-api): no Loki runs
// here (it is AGPL), so the LogQL client is checked against these shapes.
func TestLokiAnswersAsDocumented(t *testing.T) {
	vector := `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733400000.123,"7"]}],"stats":{}}}`
	if n, err := DecodeLokiCount([]byte(vector)); err != nil || n != 7 {
		t.Fatalf("vector: %d, %v", n, err)
	}
	if n, err := DecodeLokiCount([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`)); err != nil || n != 0 {
		t.Fatalf("empty vector (no line matched): %d, %v", n, err)
	}
	two := `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"arm":"a"},"value":[1,"1"]},{"metric":{"arm":"b"},"value":[1,"2"]}]}}`
	if _, err := DecodeLokiCount([]byte(two)); err == nil || !strings.Contains(err.Error(), "2 series") || !strings.Contains(err.Error(), "sum(") {
		t.Fatalf("two series: %v", err)
	}
	if _, err := DecodeLokiCount([]byte(`{"status":"error","errorType":"bad_data","error":"parse error at line 1, col 5"}`)); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("error status: %v", err)
	}
	if _, err := DecodeLokiCount([]byte(`{"status":"success","data":{"resultType":"streams","result":[]}}`)); err == nil || !strings.Contains(err.Error(), "want \"vector\"") {
		t.Fatalf("wrong result type: %v", err)
	}
	streams := `{"status":"success","data":{"resultType":"streams","result":[
	  {"stream":{"arm":"canary","node":"n1"},"values":[["1733400000000000000","dropped message 1"],["1733400001000000000","dropped message 2"]]},
	  {"stream":{"arm":"canary","node":"n2"},"values":[["1733400000500000000","discarded batch"]]}]}}`
	es, err := DecodeLokiStreams([]byte(streams))
	if err != nil || len(es) != 3 || es[2].Labels["node"] != "n2" || es[0].Time.UnixNano() != 1733400000000000000 {
		t.Fatalf("streams: %+v, %v", es, err)
	}
	if _, err := DecodeLokiStreams([]byte(`{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["x","l"]]}]}}`)); err == nil {
		t.Fatal("a bad timestamp decoded")
	}
}
