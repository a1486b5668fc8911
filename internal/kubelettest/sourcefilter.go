package kubelettest

import (
	"io"
	"net"
	"sort"
	"sync"
	"time"
)

// sourceFilter is a TCP relay in front of one inbound fault proxy that
// refuses connections by their source address: the harness's stand-in
// for the packet filter Chaos Mesh's daemon installs for a NetworkChaos
// partition. Every node of the test cluster has its own loopback address
// and the aggregator's pods dial their peers from it (--dial-source), so
// the source of a connection names the node, and with it the pod of the
// arm, it came from.
type sourceFilter struct {
	ln       net.Listener
	upstream string

	mu sync.Mutex
	// deny holds, per source IP, the chaos objects that cut it off.
	deny  map[string]map[string]bool
	conns map[net.Conn]string // open client connection → its source IP
	wg    sync.WaitGroup
}

// newSourceFilter listens on a free loopback port and relays what it
// accepts to upstream.
func newSourceFilter(upstream string) (*sourceFilter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &sourceFilter{ln: ln, upstream: upstream, deny: map[string]map[string]bool{}, conns: map[net.Conn]string{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the address peers dial.
func (f *sourceFilter) Addr() string { return f.ln.Addr().String() }

func (f *sourceFilter) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		src := sourceIP(c.RemoteAddr())
		f.mu.Lock()
		if len(f.deny[src]) > 0 {
			f.mu.Unlock()
			// Dropped: the client sees its connection end at once (a
			// packet filter would let it time out; the effect on raft
			// is the same, no message gets through).
			_ = c.Close()
			continue
		}
		f.conns[c] = src
		f.wg.Add(1)
		f.mu.Unlock()
		go f.relay(c)
	}
}

func (f *sourceFilter) relay(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		_ = c.Close()
	}()
	up, err := net.DialTimeout("tcp", f.upstream, 2*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// One direction ended: end both, as a proxy that forwards a
		// close does.
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// Cut refuses connections from the source IPs for the chaos object obj
// and ends the open ones.
func (f *sourceFilter) Cut(obj string, ips []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ip := range ips {
		if f.deny[ip] == nil {
			f.deny[ip] = map[string]bool{}
		}
		f.deny[ip][obj] = true
	}
	for c, src := range f.conns {
		if len(f.deny[src]) > 0 {
			_ = c.Close()
		}
	}
}

// Heal lets the source IPs through again as far as obj is concerned.
func (f *sourceFilter) Heal(obj string, ips []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ip := range ips {
		delete(f.deny[ip], obj)
		if len(f.deny[ip]) == 0 {
			delete(f.deny, ip)
		}
	}
}

// Denied lists the source IPs refused now, sorted.
func (f *sourceFilter) Denied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ips []string
	for ip := range f.deny {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	return ips
}

// Close stops accepting, ends every relayed connection and waits.
func (f *sourceFilter) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

// sourceIP is the IP of a connection's remote address.
func sourceIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
