package node

import (
	"fmt"
	"testing"
)

// The same replication and restart guarantees with one shared raft log per
// node (--raft-log shared) and with hashicorp/raft-wal (--raft-log
// raft-wal, which also holds term and vote).
func TestSharedRaftLogReplicatesAndRestarts(t *testing.T) {
	for _, raftLog := range []string{RaftLogShared, RaftLogRaftWAL} {
		t.Run(raftLog, func(t *testing.T) { testRaftLogReplicatesAndRestarts(t, raftLog) })
	}
}

func testRaftLogReplicatesAndRestarts(t *testing.T, raftLog string) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.RaftLog = raftLog })
	gen := newGen(4)
	var msgs []Message
	for i := range 120 {
		msgs = append(msgs, gen.next("sh", fmt.Sprint("k", i%10)))
	}
	acked := map[string]Message{}
	for i := 0; i < len(msgs); i += 30 {
		for j, r := range c.sendRetry(t, c.ids[i/30%3], msgs[i:i+30]...) {
			acked[r.MsgID] = msgs[i+j]
		}
	}
	c.stop("n2")
	c.start("n2")
	c.waitReady()
	for _, r := range c.sendRetry(t, "n2", msgs[:30]...) {
		if r.Status != StatusDuplicate {
			t.Fatalf("retry after restart: %+v", r)
		}
	}
	if lost := c.lost(t, "n2", acked); len(lost) > 0 {
		t.Fatalf("%d acked lost", len(lost))
	}
}
