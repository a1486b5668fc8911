package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// muxMagic opens every multiplexed connection, followed by a 4-byte group id.
var muxMagic = [4]byte{'C', 'G', 'R', '1'}

// Mux shares one TCP listener among the raft groups of a node: a dialer
// writes a group-id header, the accept loop reads it and hands the
// connection to that group's stream layer.
type Mux struct {
	ln     net.Listener
	log    *slog.Logger
	mu     sync.Mutex
	groups map[uint32]*Layer
	dialer net.Dialer // every group's dials (its local address, if set)
	closed chan struct{}
	wg     sync.WaitGroup
}

// NewMux starts demultiplexing connections accepted on ln.
func NewMux(ln net.Listener, log *slog.Logger) *Mux {
	m := &Mux{ln: ln, log: log, groups: map[uint32]*Layer{}, closed: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// DialFrom makes every group dial its peers from the local IP address ip
// (nil: the system's choice). Call it before the first dial.
func (m *Mux) DialFrom(ip net.IP) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dialer.LocalAddr = nil
	if ip != nil {
		m.dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
}

// Layer returns the raft.StreamLayer of group id. advertise is the address
// peers dial to reach this node (reported to raft as the local address).
func (m *Mux) Layer(id uint32, advertise string) *Layer {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := &Layer{mux: m, id: id, advertise: advertise, ch: make(chan net.Conn, 16), done: make(chan struct{})}
	m.groups[id] = l
	return l
}

// Close stops the listener and every layer.
func (m *Mux) Close() error {
	select {
	case <-m.closed:
		return nil
	default:
	}
	close(m.closed)
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Warn("raft mux accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *Mux) route(c net.Conn) {
	var hdr [8]byte
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if [4]byte(hdr[:4]) != muxMagic {
		m.log.Warn("raft mux: connection without header, closed", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	id := binary.BigEndian.Uint32(hdr[4:])
	m.mu.Lock()
	l := m.groups[id]
	m.mu.Unlock()
	if l == nil {
		m.log.Warn("raft mux: unknown group", "group", id, "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	case <-m.closed:
		c.Close()
	}
}

// Layer is the raft.StreamLayer of one group.
type Layer struct {
	mux       *Mux
	id        uint32
	advertise string
	ch        chan net.Conn
	done      chan struct{}
	once      sync.Once
}

var _ raft.StreamLayer = (*Layer)(nil)

// Accept returns the next connection for this group.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.mux.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this group's layer (the shared listener stays up).
func (l *Layer) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the advertised address of this node.
func (l *Layer) Addr() net.Addr { return advAddr(l.advertise) }

// Dial connects to a peer and selects this group on it.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	l.mux.mu.Lock()
	d := l.mux.dialer
	l.mux.mu.Unlock()
	d.Timeout = timeout
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	var hdr [8]byte
	copy(hdr[:4], muxMagic[:])
	binary.BigEndian.PutUint32(hdr[4:], l.id)
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(hdr[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft mux header to %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

type advAddr string

func (a advAddr) Network() string { return "tcp" }
func (a advAddr) String() string  { return string(a) }
