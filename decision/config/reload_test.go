package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/internal/consultest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func configWithWeight(w float64) []byte {
	return []byte(fmt.Sprintf("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\ndimensions:\n  error_rate:\n    weight: %g\n", w))
}

var badConfig = []byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\ndimensions:\n  error_rate:\n    wieght: 9\n")

func errorWeight(s *Store) float64 {
	d, _ := s.Current().Dimension(decision.ErrorRate)
	return d.Weight
}

// waitFor waits until cond holds, re-checking after every reload attempt.
func waitFor(t testing.TB, s *Store, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := s.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s (weight %g, last error %v)", what, errorWeight(s), s.LastError())
		}
	}
}

func newTestStore(t testing.TB) (*Store, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	s, err := NewStore(nil, "", reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// writeRenamed saves data the way editors do: a new file renamed over the old.
func writeRenamed(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decision.yaml")
	if err := os.WriteFile(path, configWithWeight(4), 0o644); err != nil {
		t.Fatal(err)
	}
	s, reg := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = WatchFile(ctx, path, s, 20*time.Millisecond) }()
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, s, "initial load", func() bool { return errorWeight(s) == 4 })
	// In-place write.
	if err := os.WriteFile(path, configWithWeight(5), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "in-place write", func() bool { return errorWeight(s) == 5 })
	// Editor-style rename.
	writeRenamed(t, path, configWithWeight(6))
	waitFor(t, s, "rename write", func() bool { return errorWeight(s) == 6 })
	good := s.Current().Hash
	// A bad config is rejected; the last good one stays.
	writeRenamed(t, path, badConfig)
	waitFor(t, s, "rejection", func() bool { return s.LastError() != nil })
	if s.Current().Hash != good || testutil.ToFloat64(s.success) != 0 {
		t.Fatalf("bad config replaced the good one or success metric not 0")
	}
	if got := s.LastError().Error(); got != path+`:5:5: dimensions.error_rate.wieght: unknown field (hint: did you mean "weight"?)` {
		t.Fatalf("rejection says %q", got)
	}
	// Fixed again.
	writeRenamed(t, path, configWithWeight(7))
	waitFor(t, s, "fix", func() bool { return errorWeight(s) == 7 && s.LastError() == nil })
	if testutil.ToFloat64(s.success) != 1 || testutil.ToFloat64(s.timestamp) <= 0 {
		t.Fatal("reload metrics not updated")
	}
	// Deleted: keep the last good config.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "deletion noticed", func() bool { return s.LastError() != nil })
	if errorWeight(s) != 7 {
		t.Fatal("deleting the file changed the config")
	}
	writeRenamed(t, path, configWithWeight(8))
	waitFor(t, s, "recreated", func() bool { return errorWeight(s) == 8 })
	// The metrics are on the caller's registry, with the hash.
	n, err := testutil.GatherAndCount(reg, "chaosgate_config_reload_success", "chaosgate_config_reload_timestamp_seconds", "chaosgate_config_info")
	if err != nil || n != 3 {
		t.Fatalf("metrics gathered %d: %v", n, err)
	}
	if v := testutil.ToFloat64(s.info.WithLabelValues(s.Current().Hash, path)); v != 1 {
		t.Fatalf("config info for the current hash = %g", v)
	}
}

// ---- Consul ---------------------------------------------------------------

func TestWatchConsul(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client(t)
	s, _ := newTestStore(t)
	const key = "chaosgate/decision.yaml"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = WatchConsul(ctx, client, key, s, ConsulOptions{WaitTime: 2 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	}()
	defer func() { cancel(); wg.Wait() }()

	def := errorWeight(s)
	time.Sleep(300 * time.Millisecond) // the watch is blocking on a key that does not exist yet
	if errorWeight(s) != def {
		t.Fatal("config changed before the key existed")
	}
	consultest.Put(t, client, key, configWithWeight(4)) // created after start
	waitFor(t, s, "key created", func() bool { return errorWeight(s) == 4 })
	consultest.Put(t, client, key, configWithWeight(5)) // changed
	waitFor(t, s, "key changed", func() bool { return errorWeight(s) == 5 })
	consultest.Put(t, client, key, badConfig) // invalid pushed
	waitFor(t, s, "invalid rejected", func() bool { return s.LastError() != nil })
	if errorWeight(s) != 5 || testutil.ToFloat64(s.success) != 0 {
		t.Fatal("an invalid config replaced the last good one")
	}
	consultest.Put(t, client, key, configWithWeight(6)) // then fixed
	waitFor(t, s, "fixed", func() bool { return errorWeight(s) == 6 && s.LastError() == nil })
	if s.Snapshot().Source != "consul:"+key {
		t.Fatalf("source %q", s.Snapshot().Source)
	}
	if _, err := client.KV().Delete(key, nil); err != nil { // deleted
		t.Fatal(err)
	}
	waitFor(t, s, "deletion noticed", func() bool { return s.LastError() != nil })
	if errorWeight(s) != 6 {
		t.Fatal("deleting the key changed the config")
	}
	// The agent restarts mid-watch (a -dev agent loses its data).
	agent.Stop()
	agent.Restart(t)
	consultest.Put(t, client, key, configWithWeight(7))
	waitFor(t, s, "after agent restart", func() bool { return errorWeight(s) == 7 })
}

// BenchmarkFileReloadLatency measures file change → the next evaluation
// uses the new weight (default 100 ms debounce).
func BenchmarkFileReloadLatency(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "decision.yaml")
	if err := os.WriteFile(path, configWithWeight(1), 0o644); err != nil {
		b.Fatal(err)
	}
	s, _ := newTestStore(b)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = WatchFile(ctx, path, s, 0) }()
	defer func() { cancel(); wg.Wait() }()
	waitFor(b, s, "initial", func() bool { return errorWeight(s) == 1 })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := float64(i%50 + 2)
		writeRenamed(b, path, configWithWeight(w))
		waitFor(b, s, "reload", func() bool { return usesWeight(s, w) })
	}
}

// BenchmarkConsulReloadLatency measures Consul KV put → the next evaluation
// uses the new weight.
func BenchmarkConsulReloadLatency(b *testing.B) {
	agent := consultest.Start(b)
	client := agent.Client(b)
	s, _ := newTestStore(b)
	const key = "chaosgate/bench.yaml"
	consultest.Put(b, client, key, configWithWeight(1))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = WatchConsul(ctx, client, key, s, ConsulOptions{}) }()
	defer func() { cancel(); wg.Wait() }()
	waitFor(b, s, "initial", func() bool { return errorWeight(s) == 1 })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := float64(i%50 + 2)
		consultest.Put(b, client, key, configWithWeight(w))
		waitFor(b, s, "reload", func() bool { return usesWeight(s, w) })
	}
}

// usesWeight judges once with the config in force and reports whether the
// error-rate dimension carried weight w.
func usesWeight(s *Store, w float64) bool {
	v := decision.Evaluate(s.Current(), decision.Input{})
	d, ok := v.Dimension(decision.ErrorRate)
	return ok && d.Weight == w
}
