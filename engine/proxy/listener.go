package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
)

// upstreamDialTimeout bounds the connection a proxy opens to its upstream
// for each accepted client. A client whose upstream does not answer in
// time is closed, as a real network path that cannot be set up would be.
const upstreamDialTimeout = 5 * time.Second

// listener accepts the clients of one proxy and links each to the upstream
// through the proxy's toxic chain. It replaces Toxiproxy's own accept
// loop, which dials the upstream inline: one slow handshake with the
// upstream there (a node whose accept queue is full drops the SYN, and the
// kernel retries it after a second) stalls every later client of the
// edge, its accept queue grows past the clients' timeouts, and every
// request then times out even after the overload that started it ended.
// Here the accept loop only accepts; each client is dialled and linked on
// its own goroutine.
type listener struct {
	p   *toxiproxy.Proxy
	srv *toxiproxy.ApiServer
	ln  net.Listener

	mu sync.Mutex
	// conns are the client and upstream connections of the links started
	// since the last reset; swept of closed ones as it grows.
	conns   map[*net.TCPConn]*net.TCPConn
	sweepAt int
	gen     uint64 // bumped by reset: a link set up across it is closed
	closed  bool
	wg      sync.WaitGroup
	// stop cancels the upstream dials in progress when the proxy closes.
	ctx  context.Context
	stop context.CancelFunc
}

// listen opens p's listening socket on p.Listen (127.0.0.1:0 for a free
// port), records the address it got in p.Listen and starts accepting.
func listen(srv *toxiproxy.ApiServer, p *toxiproxy.Proxy) (*listener, error) {
	ln, err := net.Listen("tcp", p.Listen)
	if err != nil {
		return nil, err
	}
	p.Listen = ln.Addr().String()
	l := &listener{p: p, srv: srv, ln: ln, conns: map[*net.TCPConn]*net.TCPConn{}, sweepAt: 64}
	l.ctx, l.stop = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// accept takes clients off the socket's queue as fast as they come.
func (l *listener) accept() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or a similar passing error: wait
			// a little, as net/http's server does, and go on.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		l.mu.Lock()
		gen, closed := l.gen, l.closed
		if !closed {
			l.wg.Add(1)
		}
		l.mu.Unlock()
		if closed {
			c.Close()
			return
		}
		go l.link(c.(*net.TCPConn), gen)
	}
}

// link dials the upstream for client and starts the two toxic links
// between them (the connections must stay *net.TCPConn: Toxiproxy's reset
// toxic sets their linger).
func (l *listener) link(client *net.TCPConn, gen uint64) {
	defer l.wg.Done()
	d := net.Dialer{Timeout: upstreamDialTimeout}
	c, err := d.DialContext(l.ctx, "tcp", l.p.Upstream)
	if err != nil {
		client.Close()
		return
	}
	up := c.(*net.TCPConn)
	l.mu.Lock()
	if l.closed || l.gen != gen {
		// Stopped or reset while dialling: this connection would
		// straddle the reset.
		l.mu.Unlock()
		client.Close()
		up.Close()
		return
	}
	if len(l.conns) >= l.sweepAt {
		l.sweepLocked()
	}
	l.conns[client] = up
	name := client.RemoteAddr().String()
	// Started under l.mu so that a reset cannot miss a link set up now.
	l.p.Toxics.StartLink(l.srv, name+"upstream", client, up, stream.Upstream)
	l.p.Toxics.StartLink(l.srv, name+"downstream", up, client, stream.Downstream)
	l.mu.Unlock()
}

// sweepLocked forgets the pairs whose links ended (Toxiproxy closes both
// connections then) and sets the next sweep at twice what is left, so that
// sweeping costs O(1) per connection.
func (l *listener) sweepLocked() {
	for c, up := range l.conns {
		if isClosed(c) && isClosed(up) {
			delete(l.conns, c)
		}
	}
	l.sweepAt = max(64, 2*len(l.conns))
}

// isClosed reports whether c was closed (its descriptor is gone).
func isClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

// reset closes every connection through the proxy; the listener keeps
// accepting on the same address.
func (l *listener) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	for c, up := range l.conns {
		c.Close()
		up.Close()
	}
	clear(l.conns)
	l.sweepAt = 64
}

// close stops accepting, closes every connection and waits for the
// goroutines that set links up.
func (l *listener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.stop()
	l.ln.Close()
	l.reset()
	l.wg.Wait()
}
