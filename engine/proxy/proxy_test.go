package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

// echoServer echoes every byte; it also reports bytes it received.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	got  int
	conn []net.Conn
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conn = append(s.conn, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.mu.Lock()
						s.got += n
						s.mu.Unlock()
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conn {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) received() int { s.mu.Lock(); defer s.mu.Unlock(); return s.got }

func newSet(t *testing.T) *Set {
	s := NewSet()
	t.Cleanup(func() { s.Close() })
	return s
}

func roundTrip(c net.Conn, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

func TestLatencyShiftsRoundTrip(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	addr, err := s.Add(EdgeName("canary", "client", "n1"), echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := Measure(ctx, EchoRoundTrip(), addr, 7, time.Second)
	if err := s.AddLatency("canary/client->n1", "delay", 60*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLatency("canary/client->n1", "delay", 60*time.Millisecond, 0); err != nil {
		t.Fatalf("adding the same toxic twice: %v", err)
	}
	if got := s.Toxics(); len(got) != 1 || got[0].Type != "latency" || got[0].Name != "delay" {
		t.Fatalf("toxics = %+v", got)
	}
	after := Measure(ctx, EchoRoundTrip(), addr, 7, time.Second)
	if after.Median < 60*time.Millisecond {
		t.Fatalf("median with a 60ms latency toxic = %s", after.Median)
	}
	if c := ConfirmDelay(before, after, 60*time.Millisecond, 0); c.Outcome != engine.Confirmed {
		t.Fatalf("ConfirmDelay = %+v", c)
	}
	if err := s.Heal(ctx, "canary/client->n1", "delay"); err != nil {
		t.Fatal(err)
	}
	healed := Measure(ctx, EchoRoundTrip(), addr, 7, time.Second)
	if healed.Median > 30*time.Millisecond {
		t.Fatalf("median after heal = %s", healed.Median)
	}
	if c := ConfirmDelay(before, healed, 60*time.Millisecond, 0); c.Outcome != engine.Mismatch {
		t.Fatalf("ConfirmDelay without delay = %+v", c)
	}
	if len(s.Toxics()) != 0 {
		t.Fatalf("toxics left after heal: %+v", s.Toxics())
	}
}

func TestBlackHoleCutsBothWaysAndHealsCleanly(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	addr, err := s.Add("n1->n2", echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// An existing connection works before the cut.
	old, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := roundTrip(old, time.Second); err != nil {
		t.Fatalf("before the cut: %v", err)
	}
	if err := s.BlackHole("n1->n2", "cut"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Toxics()); n != 2 {
		t.Fatalf("black hole made %d toxics, want 2 (one per direction)", n)
	}
	// The connection that straddled the cut was reset.
	if err := roundTrip(old, 500*time.Millisecond); err == nil {
		t.Fatal("a connection opened before the cut still carries data")
	}
	// New connections are accepted but nothing flows, in either direction.
	receivedBefore := echo.received()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, 400*time.Millisecond); err == nil {
		t.Fatal("data crossed the black hole")
	}
	time.Sleep(100 * time.Millisecond)
	if got := echo.received(); got != receivedBefore {
		t.Fatalf("upstream received %d bytes through the black hole", got-receivedBefore)
	}
	cc := ConfirmCut(context.Background(), EchoRoundTrip(), addr, 2, 200*time.Millisecond)
	if cc.Outcome != engine.Confirmed {
		t.Fatalf("ConfirmCut = %+v", cc)
	}
	// Heal: toxics gone, the connection that lived through the cut is
	// reset, new connections work.
	if err := s.Heal(context.Background(), "n1->n2", "cut"); err != nil {
		t.Fatal(err)
	}
	if len(s.Toxics()) != 0 {
		t.Fatalf("toxics left: %+v", s.Toxics())
	}
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Fatal("the connection that lived through the cut was not reset")
	}
	n, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	defer n.Close()
	if err := roundTrip(n, time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	if cc := ConfirmCut(context.Background(), EchoRoundTrip(), addr, 2, 500*time.Millisecond); cc.Outcome != engine.Mismatch {
		t.Fatalf("ConfirmCut on a healed edge = %+v", cc)
	}
	// Healing again and healing a missing proxy are no-ops.
	if err := s.Heal(context.Background(), "n1->n2", "cut"); err != nil {
		t.Fatal(err)
	}
	if err := s.Heal(context.Background(), "nope", "cut"); err != nil {
		t.Fatal(err)
	}
}

func TestAddIsIdempotentAndUnknownProxyIsNotFound(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	a1, _ := s.Add("e", echo.ln.Addr().String())
	a2, _ := s.Add("e", echo.ln.Addr().String())
	if a1 != a2 {
		t.Fatalf("Add twice gave %s and %s", a1, a2)
	}
	if err := s.AddLatency("missing", "d", time.Millisecond, 0); engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("AddLatency on a missing proxy: %v", err)
	}
	if got := s.Names(); len(got) != 1 || got[0] != "e" {
		t.Fatalf("names = %v", got)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	s := NewSet()
	defer s.Close()
	paddr, _ := s.Add("bench", ln.Addr().String())
	for _, tc := range []struct{ name, addr string }{{"direct", ln.Addr().String()}, {"proxy", paddr}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for b.Loop() {
				if err := roundTrip(c, time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestMeshCreatesEveryEdge(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	addr := echo.ln.Addr().String()
	nodes := []MeshNode{{ID: "n1", HTTP: addr, Raft: addr}, {ID: "n2", HTTP: addr, Raft: addr}, {ID: "n3", HTTP: addr, Raft: addr}}
	m, err := s.Mesh("canary", nodes)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Names()); got != 3+3*2*2 {
		t.Fatalf("%d proxies, want 15", got)
	}
	if m.Raft["n1"]["n1"] != addr || m.Raft["n1"]["n2"] == addr || m.HTTP["n2"]["n3"] == "" || m.Client["n3"] == "" {
		t.Fatalf("mesh = %+v", m)
	}
	if a, _ := s.Addr(HTTPEdgeName("canary", "n2", "n3")); a != m.HTTP["n2"]["n3"] {
		t.Fatalf("http edge address mismatch")
	}
	// Every edge carries data.
	c, err := net.Dial("tcp", m.Raft["n3"]["n1"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, time.Second); err != nil {
		t.Fatal(err)
	}
	m2, err := s.Mesh("canary", nodes)
	if err != nil || m2.Client["n1"] != m.Client["n1"] || len(s.Names()) != 15 {
		t.Fatalf("mesh is not idempotent: %v", err)
	}
	if _, err := s.Mesh("bad", []MeshNode{{ID: "x"}}); err == nil {
		t.Fatal("mesh accepted a node without addresses")
	}
}

func TestCorrelatedLatencySequence(t *testing.T) {
	meanStep := func(rho float64) (float64, time.Duration, time.Duration) {
		tx := &CorrelatedLatency{Latency: 100, Jitter: 40, Correlation: rho}
		st := tx.NewState().(*correlationState)
		lo, hi := time.Hour, time.Duration(0)
		var prev time.Duration
		var sum float64
		for i := range 5000 {
			d := tx.next(st)
			lo, hi = min(lo, d), max(hi, d)
			if i > 0 {
				sum += float64((d - prev).Abs())
			}
			prev = d
		}
		return sum / 4999 / float64(time.Millisecond), lo, hi
	}
	free, lo, hi := meanStep(0)
	tied, _, _ := meanStep(0.9)
	if lo < 60*time.Millisecond || hi > 140*time.Millisecond {
		t.Fatalf("delays outside latency ± jitter: [%s, %s]", lo, hi)
	}
	if hi-lo < 60*time.Millisecond {
		t.Fatalf("uncorrelated jitter spans only [%s, %s]", lo, hi)
	}
	if tied > free/3 {
		t.Fatalf("mean step %.2fms with ρ=0.9 vs %.2fms with ρ=0: correlation has no effect", tied, free)
	}
	t.Logf("mean step between successive delays: %.2fms (ρ=0), %.2fms (ρ=0.9)", free, tied)
}

func TestCorrelatedDelayOnRealSockets(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	addr, _ := s.Add("e", echo.ln.Addr().String())
	if err := s.AddDelay("e", "d", Delay{Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Correlation: 0.5}); err != nil {
		t.Fatal(err)
	}
	if got := s.Toxics(); len(got) != 1 || got[0].Type != "chaosgate_latency" || got[0].Attributes["correlation"] != 0.5 {
		t.Fatalf("toxics = %+v", got)
	}
	m := Measure(context.Background(), EchoRoundTrip(), addr, 5, 2*time.Second)
	if m.Failed != 0 || m.Min < 40*time.Millisecond {
		t.Fatalf("round trips with a 50±10ms correlated delay: %+v", m)
	}
	if err := s.Heal(context.Background(), "e", "d"); err != nil {
		t.Fatal(err)
	}
	if m := Measure(context.Background(), EchoRoundTrip(), addr, 5, time.Second); m.Median > 30*time.Millisecond {
		t.Fatalf("after heal: %+v", m)
	}
}

// TestConfirmDelayOnABusyHost: a busy host inflates the median of a few
// round trips before the delay (142 ms here) so the median alone grows by
// less than the delay; the fastest round trip still shows it. Without a
// delay neither grows and the confirmation is a mismatch.
func TestConfirmDelayOnABusyHost(t *testing.T) {
	ms := time.Millisecond
	before := Sample{N: 5, Median: 142 * ms, Min: 2 * ms}
	after := Sample{N: 5, Median: 185 * ms, Min: 140 * ms}
	if c := ConfirmDelay(before, after, 150*ms, 20*ms); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "fastest 2ms → 140ms") {
		t.Fatalf("busy host: %+v", c)
	}
	same := Sample{N: 5, Median: 150 * ms, Min: 3 * ms}
	if c := ConfirmDelay(before, same, 150*ms, 20*ms); c.Outcome != engine.Mismatch {
		t.Fatalf("no delay on a busy host: %+v", c)
	}
}
