package logs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// Streams selects one arm's lines on a log server.
type Streams struct {
	// Labels must equal these values.
	Labels map[string]string
	// LabelRegex must match these RE2 expressions (e.g. the arm's pod
	// names, as a cluster's own log agent labels them).
	LabelRegex map[string]string
	// NodeLabel is the label naming the node (or pod) a line came from
	// (default "node").
	NodeLabel string
}

// ServerConfig wires a log guard that asks a log server instead of reading
// files: per arm, the streams that hold the arm's lines.
type ServerConfig struct {
	Server   *Server
	Arms     []engine.Arm
	Streams  func(arm engine.Arm) Streams
	Patterns []string
	// Sync, when set, is called before every query: it pushes what the
	// local shipper has not pushed yet.
	Sync func(ctx context.Context) error
	// Settle is how long a window's end must lie in the past before the
	// server is asked about it: a log server makes lines searchable a
	// moment after it accepted them (default 2 s).
	Settle time.Duration
	// MaxLines bounds the lines kept as evidence per arm and guard
	// (default 100).
	MaxLines int
}

// ServerProbe is the log guard of a run whose logs live in a log server:
// LogsQL (VictoriaLogs) or LogQL (Loki) count queries per arm and guard
// over the window. A query that fails makes the observation an error that
// names the guard and the resolved query — never zero matches.
type ServerProbe struct {
	cfg ServerConfig
	mu  sync.Mutex
	err error
}

// NewServerProbe checks the patterns (RE2, as both servers use) and the
// wiring.
func NewServerProbe(cfg ServerConfig) (*ServerProbe, error) {
	if cfg.Server == nil || cfg.Streams == nil {
		return nil, engine.E(engine.KindInvalid, "logs probe", errors.New("a log server and per-arm streams are required"))
	}
	if len(cfg.Patterns) == 0 {
		cfg.Patterns = DefaultPatterns
	}
	for i, s := range cfg.Patterns {
		if _, err := regexp.Compile(s); err != nil {
			return nil, engine.E(engine.KindInvalid, "logs probe", fmt.Errorf("pattern %d %q: %w (hint: Go RE2 syntax)", i+1, s, err))
		}
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = 100
	}
	return &ServerProbe{cfg: cfg}, nil
}

// Name is the probe's name (the same as the file guard's).
func (p *ServerProbe) Name() string { return Name }

// Patterns returns the guards' regular expressions, in order.
func (p *ServerProbe) Patterns() []string { return append([]string(nil), p.cfg.Patterns...) }

// Server is the log server the guards ask.
func (p *ServerProbe) Server() *Server { return p.cfg.Server }

func (p *ServerProbe) settle(ctx context.Context, end time.Time) error {
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return err
		}
	}
	if wait := time.Until(end.Add(p.cfg.Settle)); wait > 0 {
		return waitctx.Sleep(ctx, wait)
	}
	return nil
}

// guard is the query of pattern pat over arm's streams in [start, end].
func (p *ServerProbe) guard(arm engine.Arm, pat string, start, end time.Time) Guard {
	st := p.cfg.Streams(arm)
	return Guard{Labels: st.Labels, LabelRegex: st.LabelRegex, Pattern: pat, Start: start, End: end}
}

// guardCount is one guard's matches in one arm's window.
type guardCount struct {
	Arm     engine.Arm `json:"arm"`
	Pattern string     `json:"pattern"`
	Query   string     `json:"query"`
	Matches int        `json:"matches"`
}

// countArm asks the server, guard by guard, how many lines arm logged
// between start and end that match; counts lists the guards that matched.
// The first failed query ends it with an error naming the guard and the
// arm.
func (p *ServerProbe) countArm(ctx context.Context, arm engine.Arm, start, end time.Time) (total int, counts []guardCount, err error) {
	for _, pat := range p.cfg.Patterns {
		n, q, err := p.cfg.Server.Count(ctx, p.guard(arm, pat, start, end))
		if err != nil {
			return 0, nil, fmt.Errorf("log guard %q of the %s: %w", pat, arm, err)
		}
		total += n
		if n > 0 {
			counts = append(counts, guardCount{Arm: arm, Pattern: pat, Query: q, Matches: n})
		}
	}
	return total, counts, nil
}

// Observe counts, per arm, the lines in w that match any guard, as far as
// the server has them when it is asked.
func (p *ServerProbe) Observe(ctx context.Context, w engine.Window) (engine.Observation, error) {
	o := engine.Observation{Probe: Name, Window: w, Arms: map[engine.Arm]engine.Metrics{}}
	// A phase's observation counts the lines the server can search when
	// the phase ends (after the shipper's flush), without waiting Settle:
	// the fault runner observes every phase, and waiting there would
	// stretch each phase of the run. The judged log_guards dimension
	// (MatchCount) waits Settle, so a late line still counts there.
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return o, engine.E(engine.KindUnavailable, "logs", err)
		}
	}
	var detail []guardCount
	for _, arm := range p.cfg.Arms {
		total, counts, err := p.countArm(ctx, arm, w.Start, w.End)
		if err != nil {
			err = engine.E(engine.KindUnavailable, "logs", err)
			p.setErr(err)
			return o, err
		}
		detail = append(detail, counts...)
		o.Arms[arm] = engine.Metrics{"matches": float64(total)}
	}
	if len(detail) > 0 {
		o.Detail = detail
	}
	return o, nil
}

// Scan pushes what the shipper holds (the server does the matching).
func (p *ServerProbe) Scan() error {
	if p.cfg.Sync == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Server.timeout())
	defer cancel()
	return p.cfg.Sync(ctx)
}

// Matches asks the server for the guarded lines of arm between start and
// end (at most MaxLines per guard). A failed query is kept for Err and
// yields no lines.
func (p *ServerProbe) Matches(arm engine.Arm, start, end time.Time) []Match {
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.cfg.Server.timeout()+p.cfg.Settle)
	defer cancel()
	if err := p.settle(ctx, end); err != nil {
		p.setErr(err)
		return nil
	}
	var out []Match
	node := p.cfg.Streams(arm).NodeLabel
	if node == "" {
		node = "node"
	}
	for _, pat := range p.cfg.Patterns {
		es, _, err := p.cfg.Server.Lines(ctx, p.guard(arm, pat, start, end), p.cfg.MaxLines)
		if err != nil {
			p.setErr(fmt.Errorf("log guard %q of the %s: %w", pat, arm, err))
			continue
		}
		for _, e := range es {
			out = append(out, Match{Arm: arm, Node: e.Labels[node], At: e.Time, Pattern: pat, Line: clip(e.Line)})
		}
	}
	return out
}

// MatchCount asks the server how many guarded lines arm logged between
// start and end; a failed query is kept for Err and counts -1.
func (p *ServerProbe) MatchCount(arm engine.Arm, start, end time.Time) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.cfg.Server.timeout()+p.cfg.Settle)
	defer cancel()
	if err := p.settle(ctx, end); err != nil {
		p.setErr(err)
		return -1
	}
	total, _, err := p.countArm(ctx, arm, start, end)
	if err != nil {
		p.setErr(err)
		return -1
	}
	return total
}

func (p *ServerProbe) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// Err is the last query that failed, nil when none did.
func (p *ServerProbe) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
