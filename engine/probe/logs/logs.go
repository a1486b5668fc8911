// Package logs is the log-guard probe of the local target: regular
// expressions over the nodes' log files (DIR/nX/node.log) that catch silent
// drops and crashes which no metric shows. Each line is attributed to the
// time in its "time=" field (slog text or JSON), or to when it was read.
package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/textclip"
)

// Name is the probe's name.
const Name = "logs"

// DefaultPatterns are the guards used when a file names none: words that
// say a message was dropped or discarded, and Go crashes.
var DefaultPatterns = []string{
	`(?i)\b(dropp(ed|ing)|discard(ed|ing)|silently (skipp|ignor)ed)\b.*\b(message|record|msg_id|batch|write)s?\b`,
	`^panic: |fatal error: |DATA RACE`,
}

// Files returns, per arm, node id → log file path.
type Files func(arm engine.Arm) map[string]string

// Config wires the probe.
type Config struct {
	Arms     []engine.Arm
	Files    Files
	Patterns []string
}

// Match is one guarded line.
type Match struct {
	Arm     engine.Arm `json:"arm"`
	Node    string     `json:"node"`
	At      time.Time  `json:"at"`
	Pattern string     `json:"pattern"`
	Line    string     `json:"line"`
}

// Probe scans the logs incrementally.
type Probe struct {
	cfg  Config
	res  []*regexp.Regexp
	mu   sync.Mutex
	offs map[string]int64
	hits []Match
}

// New compiles the patterns.
func New(cfg Config) (*Probe, error) {
	if cfg.Files == nil {
		return nil, engine.E(engine.KindInvalid, "logs probe", errors.New("no log files"))
	}
	if len(cfg.Patterns) == 0 {
		cfg.Patterns = DefaultPatterns
	}
	p := &Probe{cfg: cfg, offs: map[string]int64{}}
	for i, s := range cfg.Patterns {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, engine.E(engine.KindInvalid, "logs probe", fmt.Errorf("pattern %d %q: %w (hint: Go RE2 syntax)", i+1, s, err))
		}
		p.res = append(p.res, re)
	}
	return p, nil
}

// Name is the probe's name.
func (p *Probe) Name() string { return Name }

var timeField = regexp.MustCompile(`(?:^|\s|")time"?[=:]"?([0-9T:.\-+Z]+)`)

// Scan reads what was appended to every log since the last scan.
func (p *Probe) Scan() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, arm := range p.cfg.Arms {
		for node, path := range p.cfg.Files(arm) {
			if err := p.scanFile(arm, node, path); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Probe) scanFile(arm engine.Arm, node, path string) error {
	lines, off, err := readNewLines(path, p.offs[path])
	if err != nil {
		return err
	}
	now := time.Now()
	for _, line := range lines {
		for i, re := range p.res {
			if !re.MatchString(line) {
				continue
			}
			p.hits = append(p.hits, Match{Arm: arm, Node: node, At: lineTime(line, now), Pattern: p.cfg.Patterns[i], Line: clip(line)})
		}
	}
	p.offs[path] = off
	return nil
}

// readNewLines returns the complete lines appended to path since offset
// off, and the offset after them. A missing file has no lines (its node has
// not started yet); a file shorter than off was truncated or replaced and
// is read from its start. A partial last line is left for the next read.
func readNewLines(path string, off int64) ([]string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, off, nil
		}
		return nil, off, engine.E(engine.KindUnavailable, "logs", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < off {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, engine.E(engine.KindUnavailable, "logs", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		off += int64(len(line))
		lines = append(lines, line)
	}
	return lines, off, nil
}

// lineTime is the time in a line's "time=" field, or now.
func lineTime(line string, now time.Time) time.Time {
	if m := timeField.FindStringSubmatch(line); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return t
		}
	}
	return now
}

// clip bounds a matched line kept as evidence.
func clip(line string) string { return textclip.String(line, 300) }

// Matches returns the guarded lines of arm between start and end.
func (p *Probe) Matches(arm engine.Arm, start, end time.Time) []Match {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Match
	for _, m := range p.hits {
		if m.Arm == arm && !m.At.Before(start) && !m.At.After(end) {
			out = append(out, m)
		}
	}
	return out
}

// MatchCount is how many guarded lines arm logged between start and end.
func (p *Probe) MatchCount(arm engine.Arm, start, end time.Time) int {
	return len(p.Matches(arm, start, end))
}

// Observe scans the logs and counts the guarded lines of each arm in w. A
// log that cannot be read makes it an error.
func (p *Probe) Observe(_ context.Context, w engine.Window) (engine.Observation, error) {
	o := engine.Observation{Probe: Name, Window: w, Arms: map[engine.Arm]engine.Metrics{}}
	if err := p.Scan(); err != nil {
		return o, err
	}
	var all []Match
	for _, arm := range p.cfg.Arms {
		ms := p.Matches(arm, w.Start, w.End)
		o.Arms[arm] = engine.Metrics{"matches": float64(len(ms))}
		all = append(all, ms...)
	}
	if len(all) > 0 {
		o.Detail = all
	}
	return o, nil
}

// Patterns returns the guards' regular expressions, in order (the
// Pattern of a Match is one of them).
func (p *Probe) Patterns() []string { return append([]string(nil), p.cfg.Patterns...) }
