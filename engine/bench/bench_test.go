package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
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
// cluster (the chaosgate binary) and JetStream.
func TestRunBothSystems(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	bin := natsServer(t)
	cg := os.Getenv("CHAOSGATE_BIN")
	if cg == "" {
		cg = filepath.Join(t.TempDir(), "chaosgate")
		if out, err := exec.Command("go", "build", "-o", cg, "../../cmd/chaosgate").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
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
	pairs, err := Run(ctx, Config{Binary: cg, NATSServer: bin, Dir: t.TempDir(), Tiers: tiers, Warmup: 500 * time.Millisecond,
		Workloads: []Workload{{Payload: 128, Sources: 2, Keys: 8, Batch: 4, Concurrency: 4, Duration: 2 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != len(tiers) {
		t.Fatalf("%d results for %d tiers", len(pairs), len(tiers))
	}
	for i, p := range pairs {
		t.Logf("%+v", p)
		if p.Tier != tiers[i].Name || p.Aggregator.Acked == 0 || p.JetStream.Acked == 0 || p.Ratio <= 0 || p.Aggregator.P99 < p.Aggregator.P50 || p.JetStream.P50 <= 0 {
			t.Fatalf("implausible figures: %+v", p)
		}
		if !strings.Contains(p.JetStream.Tier, "sync_interval "+tiers[i].JetStreamSync) || !strings.Contains(p.Aggregator.Tier, "--sync-interval "+tiers[i].AggregatorSync) {
			t.Fatalf("tier %s not applied: aggregator %q, JetStream %q", tiers[i].Name, p.Aggregator.Tier, p.JetStream.Tier)
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
