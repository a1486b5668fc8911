package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/chaosgate/chaosgate/aggregator/api/v1"
	"github.com/chaosgate/chaosgate/aggregator/partition"
)

// RetryAfterTrailer is the gRPC trailer carrying the retry delay of a
// RESOURCE_EXHAUSTED answer, in milliseconds.
const RetryAfterTrailer = "retry-after-ms"

type grpcServer struct {
	pb.UnimplementedAggregatorServer
	n *Node
}

// serveGRPC serves the gRPC API on ln and returns its stop function.
func (n *Node) serveGRPC(ln net.Listener) func() {
	s := grpc.NewServer(grpc.MaxRecvMsgSize(MaxBodyBytes*2), grpc.MaxConcurrentStreams(1024))
	pb.RegisterAggregatorServer(s, &grpcServer{n: n})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server", "err", err)
		}
	}()
	return func() {
		t := time.AfterFunc(3*time.Second, s.Stop)
		s.GracefulStop()
		t.Stop()
		<-done
	}
}

// FromProto converts and validates a gRPC message; path names it in errors
// (e.g. "messages[3]").
func FromProto(m *pb.Message, path string) (Message, error) {
	if m == nil {
		return Message{}, &InputError{Path: path, Msg: "missing message", Hint: "send a Message"}
	}
	out := Message{SourceID: m.GetSourceId(), Seq: m.GetSeq(), MsgID: m.GetMsgId(), GroupKey: m.GetGroupKey(), Fingerprint: m.GetFingerprint(),
		EventTime: m.GetEventTime(), TraceID: m.GetTraceId(), Payload: string(m.GetPayload()), Epoch: m.GetEpoch()}
	return out, Validate(&out, path)
}

func toProtoResult(r Result) *pb.Result {
	off := int64(-1)
	if r.Offset != nil {
		off = *r.Offset
	}
	return &pb.Result{MsgId: r.MsgID, Status: r.Status, Partition: uint32(r.Partition), Epoch: r.Epoch, Hlc: r.HLC, Node: r.Node,
		Offset: off, Error: r.Error, ErrorKind: r.ErrorKind, RetryAfterMs: r.RetryAfterMs}
}

func toProtoRecord(p int, r Record) *pb.Record {
	return &pb.Record{Offset: r.Offset, Type: r.Type, SourceId: r.SourceID, Seq: r.Seq, MsgId: r.MsgID, GroupKey: r.GroupKey,
		Fingerprint: r.Fingerprint, EventTime: r.EventTime, TraceId: r.TraceID, Payload: []byte(r.Payload), FromSeq: r.FromSeq,
		ToSeq: r.ToSeq, Epoch: r.Epoch, Hlc: r.HLC, Node: r.Node, Partition: uint32(p)}
}

func grpcErr(ctx context.Context, err error) error {
	var ie *InputError
	if errors.As(err, &ie) {
		return status.Error(codes.InvalidArgument, ie.Error())
	}
	switch KindOf(err) {
	case KindInvalid:
		return status.Error(codes.InvalidArgument, err.Error())
	case KindNotFound:
		return status.Error(codes.NotFound, err.Error())
	case KindUnavailable:
		return status.Error(codes.Unavailable, err.Error())
	case KindOverload:
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterTrailer, "100"))
		return status.Error(codes.ResourceExhausted, err.Error())
	case KindConflict:
		return status.Error(codes.Aborted, err.Error())
	case KindIllegal:
		return status.Error(codes.FailedPrecondition, err.Error())
	case KindGone:
		return status.Error(codes.OutOfRange, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// admit takes a worker slot for one gRPC call (the same pool as HTTP).
func (s *grpcServer) admit(ctx context.Context) (func(), error) {
	n := s.n
	if n.cfg.Defects.Has(DefectUnboundedQueue) {
		return func() {}, nil
	}
	select {
	case n.reqSem <- struct{}{}:
		n.inflightReq.Add(1)
		return func() { n.inflightReq.Add(-1); <-n.reqSem }, nil
	default:
		n.metrics.rejects.WithLabelValues("requests").Inc()
		return nil, grpcErr(ctx, errorf(KindOverload, "overloaded: %d requests in flight", n.cfg.MaxRequests))
	}
}

// Ingest handles a bidirectional stream: each request batch is processed
// as it arrives (up to 64 at once per stream) and answered with a response
// carrying the same request_id.
func (s *grpcServer) Ingest(stream pb.Aggregator_IngestServer) error {
	ctx := stream.Context()
	conn := "grpc"
	if p, ok := peer.FromContext(ctx); ok {
		conn = "grpc:" + p.Addr.String()
	}
	var sendMu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64)
	errc := make(chan error, 1)
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(req.GetMessages()) > MaxBatch {
			return status.Errorf(codes.InvalidArgument, "messages: %d messages, more than %d (hint: split the batch)", len(req.GetMessages()), MaxBatch)
		}
		msgs := make([]Message, len(req.GetMessages()))
		for i, m := range req.GetMessages() {
			if msgs[i], err = FromProto(m, "messages["+strconv.Itoa(i)+"]"); err != nil {
				return grpcErr(ctx, err)
			}
		}
		select {
		case sem <- struct{}{}:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			defer func() { <-sem }()
			res := s.n.Ingest(ctx, msgs, IngestOptions{Conn: conn})
			out := &pb.IngestResponse{RequestId: id, Results: make([]*pb.Result, len(res))}
			for i, r := range res {
				out.Results[i] = toProtoResult(r)
			}
			sendMu.Lock()
			err := stream.Send(out)
			sendMu.Unlock()
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}(req.GetRequestId())
	}
}

// Stream sends the records of a partition from an offset; with follow it
// keeps waiting for new records until the client cancels.
func (s *grpcServer) Stream(req *pb.StreamRequest, stream pb.Aggregator_StreamServer) error {
	ctx := stream.Context()
	p := int(req.GetPartition())
	if _, err := s.n.group(p); err != nil {
		return grpcErr(ctx, err)
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	from := req.GetFrom()
	for {
		page, err := s.n.readStreamRouted(ctx, p, from, limit)
		if err != nil {
			if !req.GetFollow() || KindOf(err) != KindUnavailable {
				return grpcErr(ctx, err)
			}
			// following through a leader change: wait for the next leader
			page = StreamPage{Next: from}
		}
		for _, r := range page.Records {
			if err := stream.Send(toProtoRecord(p, r)); err != nil {
				return err
			}
		}
		from = page.Next
		if len(page.Records) > 0 {
			continue
		}
		if !req.GetFollow() {
			return nil
		}
		g, _ := s.n.group(p)
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-g.fsm.waitChan():
		case <-t.C:
		}
		t.Stop()
	}
}

// GetState reads a key linearizably.
func (s *grpcServer) GetState(ctx context.Context, req *pb.GetStateRequest) (*pb.KeyState, error) {
	release, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	ks, err := s.n.getStateRouted(ctx, req.GetKey())
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return toProtoState(ks), nil
}

// PutState applies a versioned compare-and-set.
func (s *grpcServer) PutState(ctx context.Context, req *pb.PutStateRequest) (*pb.KeyState, error) {
	release, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	ev := req.GetExpectedVersion()
	ks, err := s.n.putStateRouted(ctx, req.GetKey(), PutStateRequest{State: req.GetState(), ExpectedVersion: &ev, Value: req.GetValue()})
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return toProtoState(ks), nil
}

// Cluster describes the cluster.
func (s *grpcServer) Cluster(ctx context.Context, _ *pb.ClusterRequest) (*pb.ClusterInfo, error) {
	ci := s.n.Cluster()
	out := &pb.ClusterInfo{Node: ci.Node, Partitioner: ci.Partitioner, PartitionCount: uint32(ci.PartitionCount), Defects: ci.Defects}
	for _, nd := range ci.Nodes {
		out.Nodes = append(out.Nodes, &pb.ClusterNode{Id: nd.ID, Http: nd.HTTP, Grpc: nd.GRPC, Raft: nd.Raft})
	}
	for _, p := range ci.Partitions {
		out.Partitions = append(out.Partitions, &pb.ClusterPartition{Id: uint32(p.ID), Leader: p.Leader, Epoch: p.Epoch, Members: p.Members})
	}
	return out, nil
}

func toProtoState(ks KeyState) *pb.KeyState {
	return &pb.KeyState{Key: ks.Key, State: ks.State, Version: ks.Version, Value: ks.Value, Epoch: ks.Epoch, Hlc: ks.HLC}
}

// routedLeader returns "" when this node should serve partition p itself,
// or the leader to forward to.
func (n *Node) routedLeader(p int) (string, error) {
	g, err := n.group(p)
	if err != nil {
		return "", err
	}
	if g.isLeader() || n.cfg.Defects.Has(DefectStaleRead) {
		return "", nil
	}
	leader := g.leader()
	if leader == "" || leader == n.cfg.ID || n.cfg.PeerHTTP[leader] == "" {
		return "", errorf(KindUnavailable, "partition %d: no leader reachable from %s; retry", p, n.cfg.ID)
	}
	return leader, nil
}

func (n *Node) readStreamRouted(ctx context.Context, p int, from uint64, limit int) (StreamPage, error) {
	leader, err := n.routedLeader(p)
	if err != nil || leader == "" {
		if err != nil {
			return StreamPage{}, err
		}
		return n.ReadStream(ctx, p, from, limit)
	}
	var page StreamPage
	err = n.forwardJSON(ctx, http.MethodGet, leader, fmt.Sprintf("/v1/stream/%d?from=%d&limit=%d", p, from, limit), nil, &page)
	return page, err
}

func (n *Node) getStateRouted(ctx context.Context, key string) (KeyState, error) {
	if key == "" {
		return KeyState{}, errorf(KindInvalid, "key: missing")
	}
	leader, err := n.routedLeader(partition.Of(key, n.cfg.Partitions))
	if err != nil || leader == "" {
		if err != nil {
			return KeyState{}, err
		}
		return n.GetState(ctx, key)
	}
	var ks KeyState
	err = n.forwardJSON(ctx, http.MethodGet, leader, "/v1/state/"+url.PathEscape(key), nil, &ks)
	return ks, err
}

func (n *Node) putStateRouted(ctx context.Context, key string, req PutStateRequest) (KeyState, error) {
	if err := validatePut(key, req); err != nil {
		return KeyState{}, err
	}
	g, _ := n.group(partition.Of(key, n.cfg.Partitions))
	if g.isLeader() {
		return n.PutState(ctx, key, req)
	}
	leader := g.leader()
	if leader == "" || leader == n.cfg.ID {
		return KeyState{}, errorf(KindUnavailable, "partition %d: no leader reachable from %s; retry", g.id, n.cfg.ID)
	}
	var ks KeyState
	err := n.forwardJSON(ctx, http.MethodPut, leader, "/v1/state/"+url.PathEscape(key), req, &ks)
	return ks, err
}

// forwardJSON sends one request to a leader's HTTP API and decodes the
// answer; a non-2xx answer becomes an error of the matching kind.
func (n *Node) forwardJSON(ctx context.Context, method, leader, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.cfg.PeerHTTP[leader]+path, rd)
	if err != nil {
		return errorf(KindInternal, "%v", err)
	}
	req.Header.Set(forwardHeader, "1")
	req.Header.Set(hlcHeader, n.now().String())
	req.Header.Set("Content-Type", "application/json")
	propagateTrace(ctx, req)
	n.metrics.forwards.Inc()
	resp, err := n.client.Do(req)
	if err != nil {
		n.metrics.forwardFailed(ctx)
		return errorf(KindUnavailable, "forward to leader %s: %v", leader, err)
	}
	defer resp.Body.Close()
	n.observeHeader(resp.Header.Get(hlcHeader))
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		_ = json.Unmarshal(data, &eb)
		k := map[int]ErrKind{400: KindInvalid, 404: KindNotFound, 409: KindConflict, 410: KindGone, 422: KindIllegal, 429: KindOverload, 503: KindUnavailable}[resp.StatusCode]
		if k == 0 {
			k = KindInternal
		}
		return errorf(k, "leader %s: %s", leader, eb.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return errorf(KindInternal, "leader %s answered undecodable JSON: %v", leader, err)
	}
	return nil
}
