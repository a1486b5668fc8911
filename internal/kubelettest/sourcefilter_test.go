package kubelettest

import (
	"bufio"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// The partition filter refuses connections by their source address: a cut
// ends the open connections from that source and refuses new ones, other
// sources pass, and a heal lets the source through again. Each source is
// a loopback address of its own, as the test cluster's nodes are.
func TestSourceFilterCutsBySource(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	f, err := newSourceFilter(echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dial := func(source string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		c, err := d.Dial("tcp", f.Addr())
		if err != nil {
			t.Fatalf("dial from %s: %v", source, err)
		}
		return c
	}
	// echoes reports whether a line sent on c comes back.
	echoes := func(c net.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "ping\n"
	}
	open := dial("127.0.0.2")
	defer open.Close()
	if !echoes(open) {
		t.Fatal("before any cut, 127.0.0.2 is not relayed")
	}
	f.Cut("cut-a", []string{"127.0.0.2"})
	if echoes(open) {
		t.Error("the open connection from 127.0.0.2 survived the cut")
	}
	cutOff := dial("127.0.0.2")
	defer cutOff.Close()
	if echoes(cutOff) {
		t.Error("a new connection from 127.0.0.2 was relayed during the cut")
	}
	other := dial("127.0.0.3")
	defer other.Close()
	if !echoes(other) {
		t.Error("127.0.0.3 is not relayed during a cut of 127.0.0.2")
	}
	// Two objects cut the same source: it stays cut until both heal.
	f.Cut("cut-b", []string{"127.0.0.2"})
	f.Heal("cut-a", []string{"127.0.0.2"})
	if got := f.Denied(); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Errorf("with cut-b in force, refused %v", got)
	}
	f.Heal("cut-b", []string{"127.0.0.2"})
	if got := f.Denied(); len(got) != 0 {
		t.Errorf("after both heals, refused %v", got)
	}
	healed := dial("127.0.0.2")
	defer healed.Close()
	if !echoes(healed) {
		t.Error("after the heal, 127.0.0.2 is not relayed")
	}
}
