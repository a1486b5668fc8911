// Package freeport hands out free 127.0.0.1 TCP addresses for processes
// that are told their listen address before they bind it: cluster nodes,
// fault proxies and the servers the benchmarks start.
//
// Ports are taken below the kernel's ephemeral range (32768 and up by
// default), where no listener on port 0 and no outgoing connection can be
// handed the same port between the choice and the bind. A port is handed
// out at most once per process, so two addresses asked for in a row can
// never be the same port even though neither is bound yet.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Low and High bound the ports handed out: [Low, High).
const (
	Low  = 20000
	High = 32000
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Ports is Addrs as port numbers, for servers configured by port.
func Ports(n int) ([]int, error) {
	addrs, err := Addrs(n)
	if err != nil {
		return nil, err
	}
	ports := make([]int, n)
	for i, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		ports[i], _ = strconv.Atoi(p) // Addrs formats every address itself
	}
	return ports, nil
}

// Addrs returns n distinct free 127.0.0.1 addresses ("127.0.0.1:PORT"),
// each checked by binding it (all are held until the last is found, then
// released) and none handed out before by this process.
func Addrs(n int) ([]string, error) {
	mu.Lock()
	defer mu.Unlock()
	out := make([]string, 0, n)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var last error
	for tries := 0; len(out) < n && tries < 200*n; tries++ {
		port := Low + rand.IntN(High-Low)
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			last = err
			continue
		}
		held = append(held, l)
		handed[port] = true
		out = append(out, l.Addr().String())
	}
	if len(out) < n {
		if last == nil {
			last = fmt.Errorf("every port tried was handed out already")
		}
		return nil, fmt.Errorf("freeport: no %d free ports in %d..%d: %w (hint: too many listeners on 127.0.0.1, or the range is in use by another program)", n, Low, High-1, last)
	}
	return out, nil
}
