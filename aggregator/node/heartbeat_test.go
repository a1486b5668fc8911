package node

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatsReachRaftsMainLoop: with the transport chaosgate gives
// raft, a heartbeat is delivered to the consumer channel that raft's main
// loop reads, never to raft's fast-path handler (which would run
// appendEntries beside the leader loop; see mainLoopHeartbeats). Real TCP
// transports on loopback; the plain transport takes the fast path, which
// shows the test can tell them apart.
func TestHeartbeatsReachRaftsMainLoop(t *testing.T) {
	for _, c := range []struct {
		name     string
		wrap     bool
		fastPath bool
	}{{"chaosgate's transport", true, false}, {"raft's transport alone", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			recv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer recv.Close()
			send, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer send.Close()
			var tr raft.Transport = recv
			if c.wrap {
				tr = mainLoopHeartbeats{recv}
			}
			fast := make(chan struct{}, 1)
			tr.SetHeartbeatHandler(func(rpc raft.RPC) {
				fast <- struct{}{}
				rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
			})
			done := make(chan error, 1)
			go func() {
				var resp raft.AppendEntriesResponse
				done <- send.AppendEntries("n1", recv.LocalAddr(), &raft.AppendEntriesRequest{
					RPCHeader: raft.RPCHeader{ID: []byte("n2"), Addr: []byte(send.LocalAddr())}, Term: 7}, &resp)
			}()
			select {
			case rpc := <-tr.Consumer():
				if c.fastPath {
					t.Fatal("the heartbeat reached the main loop, want raft's fast path")
				}
				if _, ok := rpc.Command.(*raft.AppendEntriesRequest); !ok {
					t.Fatalf("main loop got %T", rpc.Command)
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
			case <-fast:
				if !c.fastPath {
					t.Fatal("the heartbeat took raft's fast path (appendEntries beside the leader loop)")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no heartbeat arrived")
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			send.CloseStreams() // the pooled connection, so recv's reader ends
		})
	}
}
