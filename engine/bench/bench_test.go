package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/nats-io/nats.go.(*Conn).doReconnect"))
}

func natsServer(t *testing.T) string {
	t.Helper()
	if p := CachedNATSServer(); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr == nil {
			return "/usr/sbin/nats-server"
		}
		if os.Getenv("CI") == "true" {
			t.Fatal("nats-server not installed (make test-deps installs it)")
		}
		t.Skip("nats-server not installed (apt-get install -y nats-server)")
	}
	return bin
}

// TestJetStreamClusterDeduplicates starts the real 3-server R3 cluster the
// benchmark uses and checks that a re-publish with the same Nats-Msg-Id is
// reported as a duplicate, so both systems are measured with dedup on.
func TestJetStreamClusterDeduplicates(t *testing.T) {
	bin := natsServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := StartJetStream(ctx, bin, t.TempDir(), 3, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	w := Workload{Payload: 128, Keys: 4, Batch: 4, Concurrency: 2, Duration: 500 * time.Millisecond}
	send, closeFn, err := jetStreamSender(ctx, c.URLs, "T", w)
	if err != nil {
		t.Fatal(err)
	}
	acked, errs, h, _ := drive(ctx, w, send)
	closeFn()
	if acked == 0 || errs != 0 || h.TotalCount() == 0 {
		t.Fatalf("drive: %d acked, %d errors, %d samples", acked, errs, h.TotalCount())
	}
	nc, err := nats.Connect(strings.Join(c.URLs, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Config.Duplicates <= 0 || int64(info.State.Msgs) != acked {
		t.Fatalf("stream: replicas %d, duplicate window %s, %d messages for %d acked", info.Config.Replicas, info.Config.Duplicates, info.State.Msgs, acked)
	}
	a1, err := js.Publish(ctx, "T.x", []byte("p"), jetstream.WithMsgID("same"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := js.Publish(ctx, "T.x", []byte("p"), jetstream.WithMsgID("same"))
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a1.Sequence != a2.Sequence {
		t.Fatalf("dedup: first %+v, second %+v", a1, a2)
	}
}

// TestRunBothSystems runs one short cell against the real aggregator
// cluster (the chaosgate binary, its nodes on hashicorp/raft-wal: --raft-log
// reaches them) and JetStream.
func TestRunBothSystems(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	bin := natsServer(t)
	cg, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tiers := []Durability{TierReplicated, TierFsync}
	version, err := NATSServerVersion(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !SupportsSyncInterval(version) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nats-server %s cannot fsync every write; make test-deps builds %s", version, NATSBuildVersion)
		}
		t.Logf("nats-server %s: fsync tier not run (scripts/build-nats-server.sh builds %s)", version, NATSBuildVersion)
		tiers = tiers[:1]
	}
	pairs, err := Run(ctx, Config{Binary: cg, NATSServer: bin, Dir: t.TempDir(), Tiers: tiers, Warmup: 500 * time.Millisecond, RaftLog: "raft-wal",
		Workloads: []Workload{
			{Payload: 128, Sources: 2, Keys: 8, Batch: 4, Concurrency: 4, Duration: 2 * time.Second, RouteToLeader: true, Client: ClientGRPC},
			{Payload: 128, Sources: 2, Keys: 8, Batch: 4, Concurrency: 4, Duration: 2 * time.Second, RouteToLeader: true, Client: ClientHTTP},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 2*len(tiers) {
		t.Fatalf("%d results for %d tiers x 2 clients", len(pairs), len(tiers))
	}
	for i, p := range pairs {
		t.Logf("%+v", p)
		if p.Tier != tiers[i/2].Name || p.Aggregator.Acked == 0 || p.JetStream.Acked == 0 || p.Ratio <= 0 || p.Aggregator.P99 < p.Aggregator.P50 || p.JetStream.P50 <= 0 {
			t.Fatalf("implausible figures: %+v", p)
		}
		if wantSystem := []string{"chaosgate aggregator (gRPC)", "chaosgate aggregator (HTTP/JSON)"}[i%2]; p.Aggregator.System != wantSystem {
			t.Fatalf("cell %d driven by %q, want %q", i, p.Aggregator.System, wantSystem)
		}
		if !strings.Contains(p.JetStream.Tier, "sync_interval "+tiers[i/2].JetStreamSync) || !strings.Contains(p.Aggregator.Tier, "--sync-interval "+tiers[i/2].AggregatorSync) {
			t.Fatalf("tier %s not applied: aggregator %q, JetStream %q", tiers[i/2].Name, p.Aggregator.Tier, p.JetStream.Tier)
		}
		if !strings.Contains(p.Aggregator.Tier, "--raft-log raft-wal") {
			t.Fatalf("--raft-log not applied: aggregator %q", p.Aggregator.Tier)
		}
	}
}

// TestSyncIntervalNeedsNATS210 pins the version gate of the fsync tier.
func TestSyncIntervalNeedsNATS210(t *testing.T) {
	for v, want := range map[string]bool{"2.9.10": false, "2.10.0": true, "2.15.2": true, "3.0.1": true, "garbage": false, "": false} {
		if got := SupportsSyncInterval(v); got != want {
			t.Errorf("SupportsSyncInterval(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestGRPCProducerLandsEveryAck drives a real 3-node aggregator cluster with
// the gRPC producer, first while the nodes move leaders after start, then
// once they are spread, and reads every partition's stream back: each
// message the producer counted as acknowledged is there exactly once, in
// per-source seq order with no gap, nothing failed, and once the leaders
// are spread none was forwarded.
func TestGRPCProducerLandsEveryAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	cg, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	specs, err := local.Plan(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := local.Start(ctx, local.Config{Binary: cg, Dir: t.TempDir(), Nodes: specs, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sup.Stop(); sup.Wait() }()
	var addrs []string
	grpcOf := map[string]string{}
	for _, s := range specs {
		addrs = append(addrs, s.HTTP)
		grpcOf[s.ID] = s.GRPC
	}
	run := func(w Workload) int64 {
		t.Helper()
		p, err := newGRPCProducer(ctx, addrs, grpcOf, 3, w)
		if err != nil {
			t.Fatal(err)
		}
		acked, errs, _, _ := drive(ctx, w, p.send)
		p.Close()
		if acked == 0 || errs != 0 {
			t.Fatalf("drive: %d acked, %d errors", acked, errs)
		}
		return acked
	}
	w := Workload{Payload: 64, Sources: 3, Keys: 16, Batch: 5, Concurrency: 6, Duration: 3 * time.Second, RouteToLeader: true}
	// Right after start the nodes move partition leaders to spread them;
	// a batch refused during a transfer is retried, so nothing fails.
	acked := run(w)
	// Once every node leads one partition, every batch goes straight to
	// its leader: no node forwards.
	for spread := false; !spread; {
		if ctx.Err() != nil {
			t.Fatal("partition leaders never spread over the nodes")
		}
		time.Sleep(200 * time.Millisecond)
		ci, err := load.FetchCluster(ctx, load.StaticTargets(addrs...))
		leaders := map[string]bool{}
		for _, part := range ci.Partitions {
			leaders[part.Leader] = part.Leader != ""
		}
		spread = err == nil && len(leaders) == 3 && !slices.Contains(slices.Collect(maps.Values(leaders)), false)
	}
	forwards := map[string]float64{}
	for _, s := range specs {
		forwards[s.ID] = metricValue(t, s.HTTP, "chaosgate_aggregator_forwards_total")
	}
	w.Duration = time.Second
	acked += run(w)
	for _, s := range specs {
		if n := metricValue(t, s.HTTP, "chaosgate_aggregator_forwards_total") - forwards[s.ID]; n != 0 {
			t.Errorf("node %s forwarded %v requests; the producer routes to leaders", s.ID, n)
		}
	}
	ci, err := load.FetchCluster(ctx, load.StaticTargets(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	httpOf := map[string]string{}
	for _, n := range ci.Nodes {
		httpOf[n.ID] = n.HTTP
	}
	// Records are released in seq order once the reorder buffer has them
	// all; wait until every acknowledged message is out.
	var got int64
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = 0
		clear(seen)
		for _, part := range ci.Partitions {
			lastSeq := map[string]uint64{}
			for from := int64(0); ; {
				page := fetchStreamPage(t, httpOf[part.Leader], part.ID, from)
				for _, r := range page.Records {
					if r.Type != "message" {
						t.Fatalf("partition %d offset %d: %s record (no seq should be missing)", part.ID, r.Offset, r.Type)
					}
					if seen[r.MsgID] {
						t.Fatalf("partition %d: msg_id %s twice", part.ID, r.MsgID)
					}
					seen[r.MsgID] = true
					if r.Seq <= lastSeq[r.SourceID] {
						t.Fatalf("partition %d: source %s seq %d after %d", part.ID, r.SourceID, r.Seq, lastSeq[r.SourceID])
					}
					lastSeq[r.SourceID] = r.Seq
					got++
				}
				if len(page.Records) == 0 || page.Next >= page.HighWatermark {
					break
				}
				from = page.Next
			}
		}
		if got >= acked || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got != acked {
		t.Fatalf("%d messages in the streams, %d acknowledged", got, acked)
	}
}

func fetchStreamPage(t *testing.T, addr string, partition int, from int64) load.StreamPage {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/stream/%d?from=%d&limit=1000", addr, partition, from))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page load.StreamPage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream %d from %d: HTTP %d, %v", partition, from, resp.StatusCode, err)
	}
	return page
}

// metricValue sums the samples of one metric family on a node's /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", addr, err)
	}
	sum := 0.0
	for _, m := range families[name].GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// TestUpstreamCell: the upstream cell publishes to JetStream, the nodes
// consume it into the output streams and the reader sees every message
// published: end-to-end figures beside the producer's publish figures.
func TestUpstreamCell(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	bin := natsServer(t)
	cg, err := local.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pairs, err := Run(ctx, Config{Binary: cg, NATSServer: bin, Dir: t.TempDir(), Tiers: []Durability{TierReplicated}, Warmup: -1, Upstream: true,
		Workloads: []Workload{{Payload: 128, Sources: 2, Keys: 8, Batch: 4, Concurrency: 4, Duration: 2 * time.Second, RouteToLeader: true, Client: ClientGRPC}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 2 {
		t.Fatalf("%d cells, want the workload and its upstream cell", len(pairs))
	}
	up := pairs[1]
	t.Logf("%+v", up)
	if !strings.HasPrefix(up.Workload, "upstream ") || up.Aggregator.System != "JetStream → aggregator → output stream" ||
		up.Aggregator.Acked == 0 || up.Aggregator.Errors != 0 || up.Aggregator.Acked != up.JetStream.Acked || up.Aggregator.P99 < up.Aggregator.P50 || up.Ratio <= 0 {
		t.Fatalf("implausible upstream cell: %+v", up)
	}
}
