package pktloss

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// availableOrSkip: losing real packets needs root (CAP_NET_ADMIN); CI runs
// as root, so there a refusal is a failure.
func availableOrSkip(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nftables: %v", err)
		}
		t.Skipf("cannot program nftables here (%v): real packet loss needs root or CAP_NET_ADMIN", err)
	}
}

// echoServer answers every read with the same bytes until the test ends.
func echoServer(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go io.Copy(c, c) //nolint:errcheck // ends when the connection closes
		}
	}()
	return ln
}

// TestLosesTheShareItIsGiven drops 10 % of the packets to and from an echo
// server's port in the kernel: the counters read back a drop share within
// five binomial standard deviations of 10 %, small round trips stall on a
// retransmission timeout, every byte still arrives (TCP resends), and
// after Remove nothing of the table is left and no round trip stalls.
func TestLosesTheShareItIsGiven(t *testing.T) {
	availableOrSkip(t)
	ln := echoServer(t)
	port := ln.Addr().(*net.TCPAddr).Port
	name := TablePrefix + "test_" + strconv.Itoa(os.Getpid())
	if err := Apply(name, []int{port}, 0.10); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(name) }) //nolint:errcheck // the test checks Remove below
	if err := Apply(name, []int{port}, 0.10); err != nil {
		t.Fatalf("applying the same loss again: %v", err)
	}
	stalled := roundTrips(t, ln.Addr().String(), 150)
	n, err := Read(name)
	if err != nil {
		t.Fatal(err)
	}
	sd := math.Sqrt(float64(n.Seen) * 0.1 * 0.9)
	t.Logf("dropped %d of %d packets (%.1f%%); %d of 150 round trips stalled", n.Dropped, n.Seen, 100*n.Ratio(), stalled)
	if n.Seen < 300 || math.Abs(float64(n.Dropped)-0.1*float64(n.Seen)) > 5*sd {
		t.Fatalf("counts %+v: not 10 %% of the packets", n)
	}
	if stalled == 0 {
		t.Fatal("no round trip stalled although packets were dropped")
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := Remove(name); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
	if _, err := Read(name); !errors.Is(err, ErrNoTable) {
		t.Fatalf("read after remove: %v", err)
	}
	left, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l == name {
			t.Fatalf("table %s left after Remove", name)
		}
	}
	if s := roundTrips(t, ln.Addr().String(), 50); s != 0 {
		t.Fatalf("%d round trips stalled after Remove", s)
	}
}

// roundTrips sends n small echoes on one connection and counts those that
// took a retransmission timeout (≥ 150 ms).
func roundTrips(t *testing.T, addr string, n int) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // a net.Conn from Dial
	stalled := 0
	buf := make([]byte, 16)
	for i := 0; i < n; i++ {
		msg := []byte("round trip " + strconv.Itoa(i%10000))
		msg = append(msg, make([]byte, 16-len(msg))...)
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("round trip %d after %s: %v", i, time.Since(t0), err)
		}
		if string(buf) != string(msg) {
			t.Fatalf("echo %q, sent %q", buf, msg)
		}
		if time.Since(t0) >= 150*time.Millisecond {
			stalled++
		}
	}
	return stalled
}

// TestRefusesBadInput: a name without the prefix, a share outside (0, 1)
// and a port outside 1..65535 are refused before anything is created.
func TestRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		ports []int
		share float64
	}{
		{"other_table", []int{80}, 0.1},
		{TablePrefix + "x", []int{80}, 0},
		{TablePrefix + "x", []int{80}, 1},
		{TablePrefix + "x", nil, 0.1},
	} {
		if err := Apply(c.name, c.ports, c.share); err == nil {
			t.Errorf("Apply(%q, %v, %v) accepted", c.name, c.ports, c.share)
		}
	}
	availableOrSkip(t)
	name := TablePrefix + "bad_" + strconv.Itoa(os.Getpid())
	if err := Apply(name, []int{70000}, 0.1); err == nil {
		Remove(name) //nolint:errcheck // cleanup of a test that already failed
		t.Fatal("port 70000 accepted")
	}
	if _, err := Read(name); !errors.Is(err, ErrNoTable) {
		t.Fatalf("a refused loss left a table: %v", err)
	}
}
