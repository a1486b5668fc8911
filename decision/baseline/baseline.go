// Package baseline keeps the judge's baseline history in bbolt: A/A windows
// (two arms running the same build under the same faults) per service and
// arm, kept for a retention period (7 days by default), read back as the
// judge's history input, whole or by time-of-day bucket.
package baseline

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	bolt "go.etcd.io/bbolt"
)

// DefaultRetention is how long windows are kept.
const DefaultRetention = 7 * 24 * time.Hour

// Clock tells the time, for retention.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// ErrInvalid marks a window that cannot be recorded.
var ErrInvalid = errors.New("baseline: invalid window")

// Options configures a Store.
type Options struct {
	Retention time.Duration // DefaultRetention when zero
	Clock     Clock         // the wall clock when nil
}

// Store is a bbolt-backed history of A/A windows.
type Store struct {
	db        *bolt.DB
	retention time.Duration
	clock     Clock
}

var (
	rootBucket = []byte("baseline/v1")
	arms       = [2][]byte{[]byte("canary"), []byte("control")}
)

// Open opens (or creates) the store at path.
func Open(path string, opt Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("baseline: opening %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(rootBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if opt.Retention <= 0 {
		opt.Retention = DefaultRetention
	}
	if opt.Clock == nil {
		opt.Clock = systemClock{}
	}
	return &Store{db: db, retention: opt.Retention, clock: opt.Clock}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// record is one arm's window as stored: summaries only (latency quantiles,
// not samples). A nil field was missing and stays missing.
type record struct {
	Requests              *float64  `json:"requests,omitempty"`
	Errors                *float64  `json:"errors,omitempty"`
	P50                   *float64  `json:"p50,omitempty"`
	P99                   *float64  `json:"p99,omitempty"`
	LatencySamples        *float64  `json:"latency_samples,omitempty"`
	GCPausesMS            []float64 `json:"gc_pauses_ms,omitempty"`
	HasGC                 bool      `json:"has_gc,omitempty"`
	WindowS               *float64  `json:"window_s,omitempty"`
	Sessions              *float64  `json:"sessions,omitempty"`
	SessionInterruptions  *float64  `json:"session_interruptions,omitempty"`
	DependencyCalls       *float64  `json:"dependency_calls,omitempty"`
	DependencyFailures    *float64  `json:"dependency_failures,omitempty"`
	ConsistencyViolations *float64  `json:"consistency_violations,omitempty"`
	MemoryGrowth          *float64  `json:"memory_growth_mb_per_min,omitempty"`
	LogGuardMatches       *float64  `json:"log_guard_matches,omitempty"`
	// Context is the window's conditions (faults and intensity); it is
	// kept with the canary arm's record.
	Context *decision.Context `json:"context,omitempty"`
}

func opt(v decision.Value) *float64 {
	if !v.OK() {
		return nil
	}
	x := v.V
	return &x
}

func val(p *float64) decision.Value {
	if p == nil {
		return decision.Value{}
	}
	return decision.Num(*p)
}

func quantile(v []float64, q float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func toRecord(a decision.ArmInput) record {
	r := record{
		Requests: opt(a.Requests), Errors: opt(a.Errors), WindowS: opt(a.WindowS),
		Sessions: opt(a.Sessions), SessionInterruptions: opt(a.SessionInterruptions),
		DependencyCalls: opt(a.DependencyCalls), DependencyFailures: opt(a.DependencyFailures),
		ConsistencyViolations: opt(a.ConsistencyViolations), MemoryGrowth: opt(a.MemoryGrowthMBPerMin),
		LogGuardMatches: opt(a.LogGuardMatches),
		P50:             opt(a.LatencyP50), P99: opt(a.LatencyP99), LatencySamples: opt(a.LatencySamples),
	}
	if a.LatencyMS.OK() && len(a.LatencyMS.V) > 0 {
		p50, p99 := quantile(a.LatencyMS.V, 0.5), quantile(a.LatencyMS.V, 0.99)
		r.P50, r.P99 = &p50, &p99
		if r.LatencySamples == nil {
			n := float64(len(a.LatencyMS.V))
			r.LatencySamples = &n
		}
	}
	if a.GCPausesMS.OK() {
		r.GCPausesMS, r.HasGC = a.GCPausesMS.V, true
	}
	return r
}

func (r record) arm() decision.ArmInput {
	a := decision.ArmInput{
		Requests: val(r.Requests), Errors: val(r.Errors), WindowS: val(r.WindowS),
		Sessions: val(r.Sessions), SessionInterruptions: val(r.SessionInterruptions),
		DependencyCalls: val(r.DependencyCalls), DependencyFailures: val(r.DependencyFailures),
		ConsistencyViolations: val(r.ConsistencyViolations), MemoryGrowthMBPerMin: val(r.MemoryGrowth),
		LogGuardMatches: val(r.LogGuardMatches),
		LatencyP50:      val(r.P50), LatencyP99: val(r.P99), LatencySamples: val(r.LatencySamples),
	}
	if r.HasGC {
		a.GCPausesMS = decision.Series(r.GCPausesMS)
	}
	return a
}

func key(t time.Time) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(t.UnixNano()))
	return k[:]
}

// Record stores one A/A window of service (both arms ran the same build) and
// drops windows older than the retention.
func (s *Store) Record(service string, w decision.HistoryWindow) error {
	if service == "" || w.At.IsZero() || w.At.UnixNano() < 0 {
		return fmt.Errorf("%w: service and time are required", ErrInvalid)
	}
	vals := [2][]byte{}
	for i, a := range []decision.ArmInput{w.Canary, w.Control} {
		rec := toRecord(a)
		if i == 0 {
			rec.Context = w.Context
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		vals[i] = b
	}
	cutoff := s.clock.Now().Add(-s.retention)
	return s.db.Update(func(tx *bolt.Tx) error {
		sb, err := tx.Bucket(rootBucket).CreateBucketIfNotExists([]byte(service))
		if err != nil {
			return err
		}
		for i, name := range arms {
			ab, err := sb.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			if err := ab.Put(key(w.At), vals[i]); err != nil {
				return err
			}
			if _, err := pruneBucket(ab, cutoff); err != nil {
				return err
			}
		}
		return nil
	})
}

func pruneBucket(b *bolt.Bucket, cutoff time.Time) (int, error) {
	end := key(cutoff)
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && string(k) < string(end); k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// Prune drops every window older than the retention and returns how many
// windows (pairs) it removed.
func (s *Store) Prune() (int, error) {
	cutoff := s.clock.Now().Add(-s.retention)
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(rootBucket).ForEachBucket(func(name []byte) error {
			sb := tx.Bucket(rootBucket).Bucket(name)
			for i, arm := range arms {
				ab := sb.Bucket(arm)
				if ab == nil {
					continue
				}
				removed, err := pruneBucket(ab, cutoff)
				if err != nil {
					return err
				}
				if i == 1 {
					n += removed
				}
			}
			return nil
		})
	})
	return n, err
}

// History returns service's A/A windows in (at−window, at], oldest first,
// ready for decision.Input.History.
func (s *Store) History(service string, at time.Time, window time.Duration) ([]decision.HistoryWindow, error) {
	return s.query(service, at, window, 0)
}

// Bucket returns the windows of History whose time of day lies within
// width/2 of at's.
func (s *Store) Bucket(service string, at time.Time, window, width time.Duration) ([]decision.HistoryWindow, error) {
	return s.query(service, at, window, width)
}

func todDistance(a, b time.Time) time.Duration {
	day := 24 * time.Hour
	d := (a.UTC().Sub(a.UTC().Truncate(day)) - b.UTC().Sub(b.UTC().Truncate(day)))
	if d < 0 {
		d = -d
	}
	return min(d, day-d)
}

func (s *Store) query(service string, at time.Time, window, width time.Duration) ([]decision.HistoryWindow, error) {
	var out []decision.HistoryWindow
	from, to := key(at.Add(-window)), key(at)
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(rootBucket).Bucket([]byte(service))
		if sb == nil {
			return nil
		}
		cb, kb := sb.Bucket(arms[0]), sb.Bucket(arms[1])
		if cb == nil || kb == nil {
			return nil
		}
		c := cb.Cursor()
		for k, v := c.Seek(from); k != nil && string(k) <= string(to); k, v = c.Next() {
			if string(k) == string(from) {
				continue
			}
			t := time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
			if width > 0 && todDistance(t, at) > width/2 {
				continue
			}
			kv := kb.Get(k)
			if kv == nil {
				continue
			}
			var rc, rk record
			if err := json.Unmarshal(v, &rc); err != nil {
				return fmt.Errorf("baseline: corrupt canary window %s/%s: %w", service, t, err)
			}
			if err := json.Unmarshal(kv, &rk); err != nil {
				return fmt.Errorf("baseline: corrupt control window %s/%s: %w", service, t, err)
			}
			out = append(out, decision.HistoryWindow{At: t, Canary: rc.arm(), Control: rk.arm(), Context: rc.Context})
		}
		return nil
	})
	return out, err
}
