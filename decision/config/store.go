package config

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock tells the time; the store uses it only to stamp reloads.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// Snapshot is one loaded configuration and where it came from.
type Snapshot struct {
	Config   *decision.Config
	Source   string
	LoadedAt time.Time
}

// Store holds the configuration in force. Readers get it lock-free; Apply
// validates a new document fully and swaps it in atomically, or keeps the
// last good one and reports why.
type Store struct {
	cur     atomic.Pointer[Snapshot]
	clock   Clock
	log     *slog.Logger
	mu      sync.Mutex // serialises Apply
	lastErr error
	changed chan struct{}

	success   prometheus.Gauge
	timestamp prometheus.Gauge
	info      *prometheus.GaugeVec
}

// NewStore returns a store holding initial (Default() when nil) and
// registers its metrics on reg (nil: not registered).
func NewStore(initial *decision.Config, source string, reg prometheus.Registerer, clock Clock, log *slog.Logger) (*Store, error) {
	if initial == nil {
		initial = decision.Default()
		source = "defaults"
	}
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		clock:   clock,
		log:     log,
		changed: make(chan struct{}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chaosgate_config_reload_success",
			Help: "Whether the last decision config reload succeeded (1) or was rejected (0).",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chaosgate_config_reload_timestamp_seconds",
			Help: "Unix time of the last successful decision config reload.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chaosgate_config_info",
			Help: "The decision config in force: its hash and source (value 1).",
		}, []string{"hash", "source"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.success, s.timestamp, s.info} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("config: registering metrics: %w", err)
			}
		}
	}
	if initial.Hash == "" {
		initial.Hash = initial.ComputeHash()
	}
	s.swap(&Snapshot{Config: initial, Source: source, LoadedAt: clock.Now()})
	return s, nil
}

func (s *Store) swap(snap *Snapshot) {
	s.cur.Store(snap)
	s.success.Set(1)
	s.timestamp.Set(float64(snap.LoadedAt.UnixNano()) / 1e9)
	s.info.Reset()
	s.info.WithLabelValues(snap.Config.Hash, snap.Source).Set(1)
}

// Current returns the configuration in force.
func (s *Store) Current() *decision.Config { return s.cur.Load().Config }

// Snapshot returns the configuration in force with its source.
func (s *Store) Snapshot() Snapshot { return *s.cur.Load() }

// LastError returns why the last reload was rejected (nil after a success).
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Changed returns a channel closed after the next reload attempt (accepted
// or rejected).
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Apply validates data and, when it is good, makes it the configuration in
// force. A bad document is rejected with its errors; the last good config
// stays.
func (s *Store) Apply(data []byte, source string) error {
	cfg, err := Load(data, source)
	s.mu.Lock()
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}()
	if err != nil {
		s.lastErr = err
		s.success.Set(0)
		s.log.Error("decision config rejected; keeping the last good config", "source", source, "keeping", s.cur.Load().Config.Hash, "err", err)
		return err
	}
	s.lastErr = nil
	prev := s.cur.Load()
	s.swap(&Snapshot{Config: cfg, Source: source, LoadedAt: s.clock.Now()})
	if prev.Config.Hash != cfg.Hash {
		s.log.Info("decision config reloaded", "source", source, "hash", cfg.Hash, "previous", prev.Config.Hash)
	}
	return nil
}

// reject records a source-level problem (unreadable file, deleted key)
// without touching the config in force.
func (s *Store) reject(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	s.log.Warn("decision config source problem; keeping the last good config", "keeping", s.cur.Load().Config.Hash, "err", err)
	close(s.changed)
	s.changed = make(chan struct{})
}
