package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/chaosgate/chaosgate/aggregator/api/v1"
	"github.com/chaosgate/chaosgate/engine/load"
)

// UpstreamStream is the JetStream stream of the upstream cell: the
// aggregator nodes consume it (--upstream) and the producer publishes to it.
const UpstreamStream = "CGUP"

// upstreamArgs are the aggregator node flags of the upstream cell. The
// nodes share one JetStream consumer, so a source's messages reach the
// reorder buffer through three nodes that may lag each other by seconds
// under overload: the reorder timeout is raised above that skew, or a
// hole would be declared a gap and its message, arriving later, dead-
// lettered as late.
func upstreamArgs(urls []string) []string {
	var hosts []string
	for _, u := range urls {
		hosts = append(hosts, strings.TrimPrefix(u, "nats://"))
	}
	return []string{"--reorder-timeout", "30s",
		"--upstream", "nats://" + strings.Join(hosts, ",") + "/" + UpstreamStream + "?name=bench&subject=cgup.>&batch=256&ack_wait=30s"}
}

// createUpstreamStream makes the R3 stream the nodes consume, before they
// start (so their consumers attach at once).
func createUpstreamStream(ctx context.Context, urls []string) error {
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: UpstreamStream, Subjects: []string{"cgup.>"}, Replicas: 3,
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("create JetStream stream %s: %w", UpstreamStream, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runUpstream measures the upstream path end to end: a producer publishes
// messages of the aggregator's contract to JetStream (closed loop, w's
// concurrency and batch), the aggregator nodes consume them (acknowledging
// after their commit) into the output streams, and a reader follows every
// partition's output stream over gRPC. Latency is from the publish to the
// record's arrival at the reader; throughput is records read per second.
// The producer's own PubAck figures come back as the JetStream result.
func runUpstream(ctx context.Context, jsURLs, httpAddrs []string, grpcOf map[string]string, partitions int, w Workload) (e2e, pub WorkloadFigures, err error) {
	nc, err := nats.Connect(strings.Join(jsURLs, ","), nats.MaxReconnects(-1))
	if err != nil {
		return e2e, pub, fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		return e2e, pub, err
	}
	ids, err := load.NewIDGen(509)
	if err != nil {
		return e2e, pub, err
	}
	run := strconv.FormatUint(rand.Uint64()>>16, 36)
	sources := make([]string, max(1, w.Sources))
	for i := range sources {
		sources[i] = "up-" + run + "-" + strconv.Itoa(i+1)
	}
	seqs := make([]atomic.Uint64, len(sources)*partitions)
	payload := strings.Repeat("x", w.Payload)

	// The reader starts at every partition's high watermark.
	starts := make([]uint64, partitions)
	for p := 0; p < partitions; p++ {
		hw, err := highWatermark(ctx, httpAddrs, p)
		if err != nil {
			return e2e, pub, err
		}
		starts[p] = hw
	}
	var grpcAddr string
	for _, a := range grpcOf {
		grpcAddr = a
		break
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return e2e, pub, err
	}
	defer conn.Close()
	cl := pb.NewAggregatorClient(conn)
	rctx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	e2eHist := hdrhistogram.New(1, 60_000_000, 3)
	var histMu sync.Mutex
	var read atomic.Int64
	var lastRead atomic.Int64
	var rwg sync.WaitGroup
	prefix := "up-" + run + "-"
	for p := 0; p < partitions; p++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			from := starts[p]
			for rctx.Err() == nil {
				st, err := cl.Stream(rctx, &pb.StreamRequest{Partition: uint32(p), From: from, Follow: true})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for {
					r, err := st.Recv()
					if err != nil {
						break
					}
					from = r.GetOffset() + 1
					if r.GetType() != "message" || !strings.HasPrefix(r.GetSourceId(), prefix) {
						continue
					}
					now := time.Now()
					if t, err := time.Parse(time.RFC3339Nano, r.GetEventTime()); err == nil {
						histMu.Lock()
						_ = e2eHist.RecordValue(max(1, now.Sub(t).Microseconds()))
						histMu.Unlock()
					}
					read.Add(1)
					lastRead.Store(now.UnixNano())
				}
			}
		}()
	}

	var published atomic.Int64
	send := func(ctx context.Context, n int) (int, error) {
		futs := make([]jetstream.PubAckFuture, 0, n)
		for i := 0; i < n; i++ {
			src := rand.IntN(len(sources))
			key := "up-k" + strconv.Itoa(1+rand.IntN(max(1, w.Keys)))
			part := load.Partition(key, partitions)
			id := ids.Next()
			m := load.Message{SourceID: sources[src], Seq: seqs[src*partitions+part].Add(1), MsgID: id, GroupKey: key, Fingerprint: id,
				EventTime: time.Now().UTC().Format(time.RFC3339Nano), Payload: payload}
			b, _ := json.Marshal(&m)
			f, err := js.PublishAsync("cgup."+m.SourceID, b, jetstream.WithMsgID(id))
			if err != nil {
				break
			}
			futs = append(futs, f)
		}
		acked, err := awaitAcks(futs)
		published.Add(int64(acked))
		return acked, err
	}
	start := time.Now()
	acked, errs, h, el := drive(ctx, w, send)
	pub = WorkloadFigures{System: "NATS JetStream publish (upstream producer)", Workload: w.Name(), Acked: acked, Errors: errs, Throughput: float64(acked) / el.Seconds()}
	quantiles(&pub, h)
	// Wait until the output has everything published, or stops growing
	// for 15 s once it has begun; before the first record, up to 60 s (on
	// a loaded host the nodes' consumers may start late: a cell that read
	// nothing in 15 s was a slow start, not a measured rate).
	quiet := time.Now()
	last := read.Load()
	patience := func() time.Duration {
		if read.Load() == 0 {
			return 60 * time.Second
		}
		return 15 * time.Second
	}
	for read.Load() < published.Load() && time.Since(quiet) < patience() && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		if n := read.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	stopReaders()
	rwg.Wait()
	n := read.Load()
	span := time.Duration(lastRead.Load() - start.UnixNano())
	if span <= 0 {
		span = el
	}
	e2e = WorkloadFigures{System: "JetStream → aggregator → output stream", Workload: w.Name(), Acked: n, Errors: max(0, published.Load()-n), Throughput: float64(n) / span.Seconds()}
	quantiles(&e2e, e2eHist)
	return e2e, pub, nil
}

// highWatermark reads partition p's stream length from any node (asking
// for an offset past the end returns no record, only the length).
func highWatermark(ctx context.Context, httpAddrs []string, p int) (uint64, error) {
	last := errors.New("no node")
	for _, a := range httpAddrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/stream/%d?from=%d&limit=1", a, p, uint64(1)<<62), nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		var pg load.StreamPage
		err = json.NewDecoder(resp.Body).Decode(&pg)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("GET /v1/stream/%d on %s: HTTP %d %v", p, a, resp.StatusCode, err)
			continue
		}
		return uint64(pg.HighWatermark), nil
	}
	return 0, fmt.Errorf("partition %d: %w", p, last)
}
