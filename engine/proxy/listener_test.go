package proxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stuckUpstream is a listening socket with the smallest accept queue
// (backlog 0 holds one connection) and nobody accepting: once one
// connection fills the queue, the kernel drops every further SYN, so a
// dial to it hangs in the handshake (the SYN retried after 1 s, 3 s, …),
// as a node's does when its accept queue overflows under a burst.
type stuckUpstream struct {
	fd   int
	addr string
	fill net.Conn
}

func newStuckUpstream(t *testing.T) *stuckUpstream {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	u := &stuckUpstream{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)}
	// One connection fills the queue.
	u.fill, err = net.DialTimeout("tcp", u.addr, 2*time.Second)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	return u
}

// serve starts accepting: every connection echoes one line back.
func (u *stuckUpstream) serve(t *testing.T) (stop func()) {
	f := os.NewFile(uintptr(u.fd), "upstream")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return func() { ln.Close(); <-done; u.fill.Close() }
}

// acceptQueue is the number of connections waiting in the accept queue of
// the socket listening on addr (the rx_queue column of /proc/net/tcp for
// a socket in LISTEN state).
func acceptQueue(t *testing.T, addr string) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := fmt.Sprintf(":%04X", p)
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], want) || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		q := strings.SplitN(f[4], ":", 2)
		n, _ := strconv.ParseInt(q[1], 16, 64)
		return int(n)
	}
	t.Fatalf("no listening socket on %s in /proc/net/tcp", addr)
	return 0
}

// TestSlowUpstreamHandshakeDoesNotStallTheProxy: while the upstream drops
// SYNs, the proxy still takes every client off its accept queue (each
// waits for its own upstream dial), and once the upstream accepts again
// every client is served. An accept loop that dials the upstream inline
// (Toxiproxy's own) leaves all but one client in the kernel's queue, where
// under a burst the queue outgrows the clients' timeouts.
func TestSlowUpstreamHandshakeDoesNotStallTheProxy(t *testing.T) {
	u := newStuckUpstream(t)
	s := NewSet()
	defer s.Close()
	addr, err := s.Add("c/client->n1", u.addr)
	if err != nil {
		t.Fatal(err)
	}
	const clients = 12
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range clients {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "client %d\n", i)
	}
	queued := -1
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if queued = acceptQueue(t, addr); queued == 0 {
			break
		}
	}
	if queued != 0 {
		t.Fatalf("%d of %d clients still wait in the proxy's accept queue while the upstream drops SYNs", queued, clients)
	}
	stop := u.serve(t)
	defer stop()
	// The upstream's accept queue holds one connection, and the twelve
	// race for it: a handshake that met it full (its SYN dropped, or the
	// ACK after its SYN-ACK dropped) completes only at a retransmission,
	// which the kernel backs off (1, 3, 7, 15, 31 s after the first), so
	// on a loaded host a client can wait past 30 s and be served.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(75 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != fmt.Sprintf("client %d\n", i) {
			t.Fatalf("client %d: %q, %v", i, line, err)
		}
	}
	t.Logf("%d clients accepted while the upstream was stuck, all served once it accepted", clients)
}
