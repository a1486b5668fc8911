package replica

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if arg := os.Getenv(raftWALChildEnv); arg != "" {
		os.Exit(raftWALChild(arg))
	}
	goleak.VerifyTestMain(m)
}

func TestBoltStoreLogsAndStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if i, _ := s.FirstIndex(); i != 0 {
		t.Fatal("empty store first index")
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/5, Type: raft.LogCommand, Data: []byte{byte(i)}, Extensions: []byte("x"), AppendedAt: time.Unix(0, int64(i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key: %v", err)
	}
	s.Close()
	s, err = OpenBoltStore(path) // survives reopening
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 4 || last != 10 {
		t.Fatalf("first %d last %d", first, last)
	}
	var l raft.Log
	if err := s.GetLog(7, &l); err != nil || l.Term != 2 || !bytes.Equal(l.Data, []byte{7}) || string(l.Extensions) != "x" || l.AppendedAt.UnixNano() != 7 {
		t.Fatalf("log 7: %+v %v", l, err)
	}
	if err := s.GetLog(2, &l); err != raft.ErrLogNotFound {
		t.Fatalf("deleted log: %v", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("stable: %d %v", v, err)
	}
	if err := decodeLog([]byte{1, 2, 3}, &l); err == nil {
		t.Fatal("short entry must fail")
	}
}

// A mux told to dial from a local address connects from it: peers and
// network filters see that address as the connection's source.
func TestMuxDialsFromItsSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Close()
	m.DialFrom(net.ParseIP("127.0.0.7"))
	l := m.Layer(1, "n1")
	c, err := l.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.7" {
		t.Errorf("the peer saw the dial come from %s, want 127.0.0.7", got)
	}
}

func TestMuxRoutesGroups(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Close()
	a, b := m.Layer(1, "n1"), m.Layer(2, "n1")
	if a.Addr().String() != "n1" {
		t.Fatal(a.Addr())
	}
	for _, tc := range []struct {
		l    *Layer
		word string
	}{{a, "one"}, {b, "two"}} {
		c, err := tc.l.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.word)); err != nil {
			t.Fatal(err)
		}
		s, err := tc.l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(tc.word))
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != tc.word {
			t.Fatalf("group got %q %v", buf, err)
		}
		c.Close()
		s.Close()
	}
	// a connection without the header is dropped, the mux keeps serving
	raw, _ := net.Dial("tcp", ln.Addr().String())
	_, _ = raw.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("headerless connection not closed")
	}
	raw.Close()
	a.Close()
	if _, err := a.Accept(); err == nil {
		t.Fatal("closed layer accepts")
	}
}
