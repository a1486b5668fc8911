package logs

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// ShipperConfig wires a Shipper.
type ShipperConfig struct {
	Server *Server
	Arms   []engine.Arm
	Files  Files
	// Labels are the stream labels of one node's lines.
	Labels func(arm engine.Arm, node string) map[string]string
	// Interval between pushes (default 1 s).
	Interval time.Duration
	// MaxBatch bounds the lines of one push (default 5000).
	MaxBatch int
	// MaxPending bounds the lines held per file while the server is
	// unreachable; beyond it the oldest are dropped and counted (default
	// 100000).
	MaxPending int
}

// Shipper tails the nodes' log files and pushes their lines to a log
// server over Loki's push API, each line at the time in its "time=" field
// (else when it was read), as promtail or Vector would for a user's
// service. Lines that could not be pushed are kept and pushed again.
type Shipper struct {
	cfg     ShipperConfig
	mu      sync.Mutex
	offs    map[string]int64
	pending map[string]*Stream // by file path
	pushed  int64
	dropped int64
}

// NewShipper returns a shipper; Run or Flush move the lines.
func NewShipper(cfg ShipperConfig) *Shipper {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100000
	}
	return &Shipper{cfg: cfg, offs: map[string]int64{}, pending: map[string]*Stream{}}
}

// Run pushes every Interval until ctx ends, then pushes what is left
// (within 5 s).
func (s *Shipper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = s.Flush(fctx)
			cancel()
			return
		case <-t.C:
			_ = s.Flush(ctx)
		}
	}
}

// Flush reads what the files gained and pushes every pending line.
func (s *Shipper) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, arm := range s.cfg.Arms {
		for node, path := range s.cfg.Files(arm) {
			lines, off, err := readNewLines(path, s.offs[path])
			if err != nil {
				return err
			}
			s.offs[path] = off
			if len(lines) == 0 {
				continue
			}
			st := s.pending[path]
			if st == nil {
				st = &Stream{Labels: s.cfg.Labels(arm, node)}
				s.pending[path] = st
			}
			for _, l := range lines {
				st.Entries = append(st.Entries, Entry{Time: lineTime(l, now), Line: strings.TrimRight(l, "\r\n")})
			}
			if over := len(st.Entries) - s.cfg.MaxPending; over > 0 {
				st.Entries = st.Entries[over:]
				s.dropped += int64(over)
			}
		}
	}
	for len(s.pending) > 0 {
		var batch []Stream
		taken := map[string]int{}
		n := 0
		for path, st := range s.pending {
			take := min(len(st.Entries), s.cfg.MaxBatch-n)
			batch = append(batch, Stream{Labels: st.Labels, Entries: st.Entries[:take]})
			taken[path] = take
			if n += take; n >= s.cfg.MaxBatch {
				break
			}
		}
		if err := s.cfg.Server.Push(ctx, batch); err != nil {
			return err // kept in pending: pushed again next time
		}
		for path, take := range taken {
			st := s.pending[path]
			if st.Entries = st.Entries[take:]; len(st.Entries) == 0 {
				delete(s.pending, path)
			}
		}
		s.pushed += int64(n)
	}
	return nil
}

// Pushed is how many lines reached the server.
func (s *Shipper) Pushed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushed
}

// Dropped is how many lines were dropped because the server stayed
// unreachable longer than MaxPending lines.
func (s *Shipper) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
