package main

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
)

func TestReapLeftoversResumesAPausedProcess(t *testing.T) {
	victim := exec.Command("sleep", "300")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { victim.Process.Signal(syscall.SIGCONT); victim.Process.Kill(); victim.Wait() }()
	dir := t.TempDir()
	// A run that paused the victim and then "crashed": its journal holds
	// the applied fault and its lock is released.
	p, err := engine.ProcOf(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	j, err := engine.OpenJournal(dir, "crashed-run", "pod-pause", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	undo := []byte(`{"arm":"canary","node":"n1","proc":{"pid":` + itoa(p.Pid) + `,"start_time":` + utoa(p.StartTime) + `}}`)
	a := engine.Applied{ID: "f1", Kind: engine.PodPause, Backend: "local", Target: engine.Target{Arm: engine.ArmCanary, Nodes: []string{"n1"}, Node: "n1"},
		Fault: engine.Fault{ID: "f1", Kind: engine.PodPause}, Undo: undo}
	if err := j.Append(engine.Record{Type: engine.RecApplied, ID: "f1", Applied: &a}); err != nil {
		t.Fatal(err)
	}
	j.Close(false)
	var out bytes.Buffer
	if err := reapLeftovers(context.Background(), &out, dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "reaped: run crashed-run: fault podPause on canary/n1 (f1): recovered") {
		t.Fatalf("output %q", out.String())
	}
	if s, _, _ := engine.ProcStat(victim.Process.Pid); s == 'T' {
		t.Fatal("victim still paused")
	}
	out.Reset()
	if err := reapLeftovers(context.Background(), &out, dir, nil, nil); err != nil || out.Len() != 0 {
		t.Fatalf("second reap: %q %v", out.String(), err)
	}
}

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint64) string { return strconv.FormatUint(u, 10) }

// TestReapLeftoversRecoversUpstreamFaults: a crashed run that left a broker
// outage (broker killed), a consumer rebalance, a backlog and a slow
// dependency outstanding does not block the next start: the brokers, nodes
// and proxies those faults acted on went with the crashed run, so each is
// recovered from the journal alone and the journal is archived.
func TestReapLeftoversRecoversUpstreamFaults(t *testing.T) {
	dir := t.TempDir()
	j, err := engine.OpenJournal(dir, "crashed-upstreams", "upstreams", nil)
	if err != nil {
		t.Fatal(err)
	}
	target := engine.Target{Arm: engine.ArmCanary, Nodes: []string{"n1", "n2", "n3"}}
	for i, f := range []struct {
		kind engine.FaultKind
		undo string
	}{
		{engine.BrokerOutage, `{"arm":"canary","upstream":"nats","proc":{"pid":999999,"start_time":1}}`},
		{engine.ConsumerRebalance, `{"arm":"canary","upstream":"nats","nodes":["n2"]}`},
		{engine.Backlog, `{"arm":"canary","upstream":"nats","nodes":["n1","n2","n3"]}`},
		{engine.SlowDependency, `{"arm":"canary","toxics":[{"proxy":"canary/n1->n2/http","toxic":"f4-latency"}]}`},
	} {
		id := "f" + itoa(i+1)
		a := engine.Applied{ID: id, Kind: f.kind, Backend: "local", Target: target, Fault: engine.Fault{ID: id, Kind: f.kind}, Undo: []byte(f.undo)}
		if err := j.Append(engine.Record{Type: engine.RecApplied, ID: id, Applied: &a}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close(false)
	var out bytes.Buffer
	if err := reapLeftovers(context.Background(), &out, dir, nil, nil); err != nil {
		t.Fatalf("reap: %v\n%s", err, out.String())
	}
	for _, k := range []string{"brokerOutage", "consumerRebalance", "backlog", "slowDependency"} {
		if !strings.Contains(out.String(), "fault "+k) || strings.Count(out.String(), "recovered") != 4 {
			t.Fatalf("%s not recovered:\n%s", k, out.String())
		}
	}
	out.Reset()
	if err := reapLeftovers(context.Background(), &out, dir, nil, nil); err != nil || out.Len() != 0 {
		t.Fatalf("second reap: %q %v", out.String(), err)
	}
}
