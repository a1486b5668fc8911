package node

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/chaosgate/chaosgate/aggregator/api/v1"
)

func TestGRPCAPI(t *testing.T) {
	c := startCluster(t, 3, nil)
	conn, err := grpc.NewClient(c.grpc["n2"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := pb.NewAggregatorClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	gen := newGen(4)
	var msgs []Message
	for i := range 120 {
		msgs = append(msgs, gen.next("g", fmt.Sprintf("k%d", i%9)))
	}
	acked := map[string]bool{}
	pending := msgs
	for attempt := 0; len(pending) > 0 && attempt < 50; attempt++ {
		st, err := cl.Ingest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(pending); i += 40 {
			req := &pb.IngestRequest{RequestId: uint64(i)}
			for _, m := range pending[i:min(i+40, len(pending))] {
				req.Messages = append(req.Messages, &pb.Message{SourceId: m.SourceID, Seq: m.Seq, MsgId: m.MsgID, GroupKey: m.GroupKey,
					Fingerprint: m.Fingerprint, EventTime: m.EventTime, TraceId: m.TraceID, Payload: []byte(m.Payload)})
			}
			if err := st.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetResults() {
				if r.GetStatus() == StatusOK || r.GetStatus() == StatusDuplicate {
					if r.GetEpoch() == 0 || r.GetHlc() == "" {
						t.Fatalf("ack without epoch/hlc: %v", r)
					}
					acked[r.GetMsgId()] = true
				}
			}
		}
		var again []Message
		for _, m := range pending {
			if !acked[m.MsgID] {
				again = append(again, m)
			}
		}
		pending = again
		if len(pending) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(pending) > 0 {
		t.Fatalf("%d messages never acknowledged", len(pending))
	}
	// read every partition back over gRPC (from a node that leads few)
	got := 0
	for p := range 4 {
		rs, err := cl.Stream(ctx, &pb.StreamRequest{Partition: uint32(p)})
		if err != nil {
			t.Fatal(err)
		}
		var next uint64
		for {
			r, err := rs.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.GetOffset() != next || r.GetPartition() != uint32(p) {
				t.Fatalf("record %v, want offset %d", r, next)
			}
			next++
			if r.GetType() == RecordMessage && acked[r.GetMsgId()] {
				got++
			}
		}
	}
	if got != len(msgs) {
		t.Fatalf("streams hold %d of %d acked messages", got, len(msgs))
	}
	// follow: a record sent after subscribing arrives
	fctx, fcancel := context.WithCancel(ctx)
	m := gen.next("g", "follow-key")
	p := partitionOf(m.GroupKey, 4)
	hwm := uint64(len(c.readAll(t, "n1", p)))
	fs, err := cl.Stream(fctx, &pb.StreamRequest{Partition: uint32(p), From: hwm, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	c.sendRetry(t, "n3", m)
	r, err := fs.Recv()
	if err != nil || r.GetMsgId() != m.MsgID {
		t.Fatalf("follow: %v %v", r, err)
	}
	fcancel()

	// state
	ks, err := cl.PutState(ctx, &pb.PutStateRequest{Key: "job-7", State: "PROCESSING", ExpectedVersion: 0, Value: "x"})
	if err != nil || ks.GetVersion() != 1 {
		t.Fatalf("put: %v %v", ks, err)
	}
	if _, err := cl.PutState(ctx, &pb.PutStateRequest{Key: "job-7", State: "DONE", ExpectedVersion: 0, Value: "y"}); status.Code(err) != codes.Aborted {
		t.Fatalf("CAS mismatch: %v", err)
	}
	if ks, err := cl.GetState(ctx, &pb.GetStateRequest{Key: "job-7"}); err != nil || ks.GetState() != "PROCESSING" {
		t.Fatalf("get: %v %v", ks, err)
	}
	ci, err := cl.Cluster(ctx, &pb.ClusterRequest{})
	if err != nil || ci.GetPartitionCount() != 4 || len(ci.GetNodes()) != 3 || ci.GetNodes()[0].GetGrpc() == "" {
		t.Fatalf("cluster: %v %v", ci, err)
	}
	// bad input: a clear InvalidArgument naming the field; unknown partition: NotFound
	st, _ := cl.Ingest(ctx)
	_ = st.Send(&pb.IngestRequest{Messages: []*pb.Message{{SourceId: "s", Seq: 1, MsgId: "not-a-number", GroupKey: "k", Fingerprint: "f"}}})
	_, err = st.Recv()
	if status.Code(err) != codes.InvalidArgument || !containsAll(err.Error(), "messages[0].msg_id", "hint") {
		t.Fatalf("invalid message: %v", err)
	}
	rs, _ := cl.Stream(ctx, &pb.StreamRequest{Partition: 99})
	if _, err := rs.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown partition: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
