package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/chaosgate/chaosgate/aggregator/api/v1"
	"github.com/chaosgate/chaosgate/engine/load"
)

// grpcProducer is a partition-aware producer on the aggregator's gRPC
// Ingest streams, the counterpart of the JetStream client's async publish:
// one long-lived bidirectional stream per node, many batches in flight on
// it, each batch made of keys whose partitions that node leads (as a Kafka
// producer batches per partition), so no message is forwarded. It speaks the
// aggregator's published wire contract (aggregator/api/v1) and nothing else.
type grpcProducer struct {
	w          Workload
	partitions int
	payload    []byte
	ids        *load.IDGen
	sources    []string
	// seqs[s*partitions+p] is the last seq of source s on partition p.
	seqs   []atomic.Uint64
	rr     atomic.Uint64
	routes atomic.Pointer[[]route] // nodes that lead a partition, with their keys
	// leaders[p] is the stream of partition p's leader (nil: unknown).
	leaders atomic.Pointer[[]*ingestStream]

	streams map[string]*ingestStream // node id → stream
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// route is one node's share of the keys: those whose partition it leads.
type route struct {
	stream *ingestStream
	keys   []string
}

// ingestStream is one node's Ingest stream with its requests in flight.
type ingestStream struct {
	node   string
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[pb.IngestRequest, pb.IngestResponse]
	sendMu sync.Mutex
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan *pb.IngestResponse
	err     error // why the stream ended; set once
}

// newGRPCProducer dials every node's gRPC address (grpcOf maps node id to
// it), opens one Ingest stream per node and learns the partition leaders
// from GET /v1/cluster on httpAddrs, refreshing them every second.
func newGRPCProducer(ctx context.Context, httpAddrs []string, grpcOf map[string]string, partitions int, w Workload) (*grpcProducer, error) {
	ids, err := load.NewIDGen(511)
	if err != nil {
		return nil, err
	}
	p := &grpcProducer{w: w, partitions: partitions, ids: ids,
		payload: make([]byte, w.Payload), streams: map[string]*ingestStream{}}
	for i := range p.payload {
		p.payload[i] = 'x'
	}
	// Source ids are new for every producer: the cluster remembers each
	// source's seq per partition, and this producer starts at seq 1.
	run := strconv.FormatUint(rand.Uint64()>>16, 36)
	for i := 0; i < max(1, w.Sources); i++ {
		p.sources = append(p.sources, "bench-"+run+"-"+strconv.Itoa(i+1))
	}
	p.seqs = make([]atomic.Uint64, len(p.sources)*partitions)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	for id, addr := range grpcOf {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(4<<20), grpc.WithInitialConnWindowSize(16<<20))
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("node %s: dial gRPC %s: %w", id, addr, err)
		}
		st, err := pb.NewAggregatorClient(conn).Ingest(sctx)
		if err != nil {
			conn.Close()
			p.Close()
			return nil, fmt.Errorf("node %s: open Ingest stream on %s: %w", id, addr, err)
		}
		s := &ingestStream{node: id, conn: conn, stream: st, pending: map[uint64]chan *pb.IngestResponse{}}
		p.streams[id] = s
		p.wg.Add(1)
		go func() { defer p.wg.Done(); s.receive() }()
	}
	// Routes follow the cluster's view, read at once and every second.
	firstView := make(chan struct{})
	var once sync.Once
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		load.WatchCluster(sctx, load.StaticTargets(httpAddrs...), time.Second, func(ci load.ClusterInfo) {
			p.applyRoutes(ci)
			once.Do(func() { close(firstView) })
		})
	}()
	select {
	case <-firstView:
	case <-ctx.Done():
		p.Close()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		p.Close()
		return nil, fmt.Errorf("aggregator cluster: no node of %v answered GET /v1/cluster within 10s", httpAddrs)
	}
	return p, nil
}

// applyRoutes regroups the keys by the leaders of a cluster view.
func (p *grpcProducer) applyRoutes(ci load.ClusterInfo) {
	leader := map[int]string{}
	leaders := make([]*ingestStream, p.partitions)
	for _, part := range ci.Partitions {
		leader[part.ID] = part.Leader
		if part.ID >= 0 && part.ID < p.partitions {
			leaders[part.ID] = p.streams[part.Leader]
		}
	}
	p.leaders.Store(&leaders)
	byNode := map[string]*route{}
	var out []route
	add := func(s *ingestStream, key string) {
		r := byNode[s.node]
		if r == nil {
			r = &route{stream: s}
			byNode[s.node] = r
		}
		r.keys = append(r.keys, key)
	}
	for k := 1; k <= max(1, p.w.Keys); k++ {
		key := "bench-k" + strconv.Itoa(k)
		s := p.streams[leader[load.Partition(key, p.partitions)]]
		if !p.w.RouteToLeader {
			// Not partition-aware: every node gets every key and forwards.
			for _, st := range p.streams {
				add(st, key)
			}
			continue
		}
		if s == nil {
			// No known leader: any node forwards to it.
			for _, first := range p.streams {
				s = first
				break
			}
		}
		add(s, key)
	}
	for _, r := range byNode {
		out = append(out, *r)
	}
	p.routes.Store(&out)
}

// send is a sendFunc: n new messages to one leader in one request. As a
// real producer does, it retries what was definitely not stored or may not
// have been (no leader, a leadership transfer, overload, an unknown
// outcome) with the same msg_id and seq, for up to retryFor; a retried
// message the node already has comes back as a duplicate, which counts as
// acknowledged. Latency covers the retries.
func (p *grpcProducer) send(ctx context.Context, n int) (int, error) {
	routes := *p.routes.Load()
	i := p.rr.Add(1)
	r := routes[i%uint64(len(routes))]
	src := int(i % uint64(len(p.sources)))
	msgs := make([]*pb.Message, n)
	for j := range msgs {
		key := r.keys[rand.IntN(len(r.keys))]
		part := load.Partition(key, p.partitions)
		id := p.ids.Next()
		msgs[j] = &pb.Message{SourceId: p.sources[src], Seq: p.seqs[src*p.partitions+part].Add(1), MsgId: id,
			GroupKey: key, Fingerprint: id, Payload: p.payload}
	}
	deadline := time.Now().Add(retryFor)
	acked := 0
	for {
		resp, err := r.stream.call(ctx, &pb.IngestRequest{Messages: msgs})
		var retry []*pb.Message
		wait := 20 * time.Millisecond
		if err != nil {
			retry = msgs
		} else {
			for j, res := range resp.GetResults() {
				switch {
				case res.GetStatus() == "ok" || res.GetStatus() == "duplicate":
					acked++
				case retryable(res):
					retry = append(retry, msgs[j])
					wait = max(wait, time.Duration(res.GetRetryAfterMs())*time.Millisecond)
				default:
					err = fmt.Errorf("node %s: %s: %s", r.stream.node, res.GetStatus(), res.GetError())
				}
			}
			if err != nil {
				return acked, err
			}
		}
		if len(retry) == 0 {
			return acked, nil
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("node %s: %d messages not acknowledged within %s", r.stream.node, len(retry), retryFor)
			}
			return acked, err
		}
		select {
		case <-ctx.Done():
			return acked, ctx.Err()
		case <-time.After(wait):
		}
		msgs = retry
		// The partition may have a new leader: send where it is now.
		if s := p.leaderStream(load.Partition(msgs[0].GetGroupKey(), p.partitions)); s != nil {
			r.stream = s
		}
	}
}

// retryFor bounds how long one batch is retried.
const retryFor = 10 * time.Second

// retryable reports whether a result says the message was definitely not
// stored (no leader, overload) or may not have been (unknown outcome).
func retryable(res *pb.Result) bool {
	switch res.GetErrorKind() {
	case "no_leader", "not_leader", "overload", "unavailable", "unknown_outcome":
		return true
	}
	return res.GetStatus() == "rejected"
}

// leaderStream is the stream of partition part's leader, nil if unknown.
func (p *grpcProducer) leaderStream(part int) *ingestStream {
	if l := p.leaders.Load(); l != nil && part < len(*l) {
		return (*l)[part]
	}
	return nil
}

// call sends one request on the stream and waits for its response.
func (s *ingestStream) call(ctx context.Context, req *pb.IngestRequest) (*pb.IngestResponse, error) {
	req.RequestId = s.nextID.Add(1)
	ch := make(chan *pb.IngestResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	s.pending[req.RequestId] = ch
	s.mu.Unlock()
	s.sendMu.Lock()
	err := s.stream.Send(req)
	s.sendMu.Unlock()
	if err != nil {
		s.forget(req.RequestId)
		return nil, fmt.Errorf("node %s: send: %w", s.node, err)
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, s.ended()
		}
		return resp, nil
	case <-t.C:
		s.forget(req.RequestId)
		return nil, fmt.Errorf("node %s: no response in 10s", s.node)
	case <-ctx.Done():
		s.forget(req.RequestId)
		return nil, ctx.Err()
	}
}

func (s *ingestStream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *ingestStream) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// receive hands each response to its caller until the stream ends, then
// fails every request still waiting.
func (s *ingestStream) receive() {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.mu.Lock()
			s.err = fmt.Errorf("node %s: Ingest stream ended: %w", s.node, err)
			for id, ch := range s.pending {
				close(ch)
				delete(s.pending, id)
			}
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		ch := s.pending[resp.GetRequestId()]
		delete(s.pending, resp.GetRequestId())
		s.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// Close ends the streams, closes the connections and waits for the
// producer's goroutines.
func (p *grpcProducer) Close() {
	p.cancel()
	for _, s := range p.streams {
		s.sendMu.Lock()
		_ = s.stream.CloseSend()
		s.sendMu.Unlock()
		_ = s.conn.Close()
	}
	p.wg.Wait()
}
