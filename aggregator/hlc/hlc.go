// Package hlc is a hybrid logical clock (Kulkarni et al.) with an injectable
// physical clock, a maximum-offset check on receive and a persisted upper
// bound so the clock stays monotone across restarts.
package hlc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: wall nanoseconds since the
// Unix epoch plus a logical counter that orders events within one wall value.
type Timestamp struct {
	Wall    int64
	Logical uint32
}

// String formats t as "<wall>.<logical>", the form used on the wire.
func (t Timestamp) String() string {
	return strconv.FormatInt(t.Wall, 10) + "." + strconv.FormatUint(uint64(t.Logical), 10)
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t.Wall == 0 && t.Logical == 0 }

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is strictly before u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// ErrKind classifies clock errors.
type ErrKind int

// Error kinds of this package.
const (
	// KindInvalid is malformed input (a timestamp that does not parse).
	KindInvalid ErrKind = 1 + iota
	// KindOffset is a remote timestamp further ahead than the maximum offset.
	KindOffset
	// KindStorage is a failure to read or write the persisted bound.
	KindStorage
)

// Error is an hlc error with a kind.
type Error struct {
	Kind ErrKind
	Msg  string
}

func (e *Error) Error() string { return "hlc: " + e.Msg }

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k ErrKind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// Parse reads the "<wall>.<logical>" form.
func Parse(s string) (Timestamp, error) {
	w, l, ok := strings.Cut(s, ".")
	wall, err1 := strconv.ParseInt(w, 10, 64)
	var logical uint64
	var err2 error
	if ok {
		logical, err2 = strconv.ParseUint(l, 10, 32)
	}
	if err1 != nil || err2 != nil || wall < 0 {
		return Timestamp{}, &Error{Kind: KindInvalid, Msg: fmt.Sprintf("malformed timestamp %q: want <wall-ns>.<logical>, e.g. 1763805600123456789.2", s)}
	}
	return Timestamp{Wall: wall, Logical: uint32(logical)}, nil
}

// Persister stores the clock's upper bound so a restarted clock never reads
// below a value it may already have handed out.
type Persister interface {
	Load() (int64, error)
	Store(bound int64) error
}

// Options configure a Clock.
type Options struct {
	// Physical returns the physical time in Unix nanoseconds (default time.Now).
	Physical func() int64
	// MaxOffset bounds how far a received timestamp may run ahead of the
	// local physical clock (default 500ms). Zero disables the check.
	MaxOffset time.Duration
	// Persist, when set, keeps an upper bound of handed-out wall times.
	Persist Persister
	// Window is how far ahead of the current wall the persisted bound is
	// set, so the bound is written about once per Window (default 1s).
	Window time.Duration
	// IgnoreUpdates makes Update ignore received timestamps (a known-bad
	// behaviour used by the hlc-no-update defect).
	IgnoreUpdates bool
}

// Clock is a hybrid logical clock, safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	opts Options
	last Timestamp
	// bound is durable: every wall time handed out is below it. Once less
	// than half a Window of it is left, the next bound is stored in the
	// background (storing), so a reading waits for the fsync only when the
	// clock reaches bound before that store is done — never while the disk
	// is merely slow.
	bound    int64
	storing  bool
	storeErr error      // outcome of the last store
	stored   *sync.Cond // broadcast (on mu) when a store ends
	stores   sync.WaitGroup
}

// New returns a clock. When opts.Persist is set the clock starts at the
// persisted bound, so it stays monotone across restarts.
func New(opts Options) (*Clock, error) {
	if opts.Physical == nil {
		opts.Physical = func() int64 { return time.Now().UnixNano() }
	}
	if opts.Window <= 0 {
		opts.Window = time.Second
	}
	c := &Clock{opts: opts}
	c.stored = sync.NewCond(&c.mu)
	if opts.Persist != nil {
		b, err := opts.Persist.Load()
		if err != nil {
			return nil, &Error{Kind: KindStorage, Msg: "load bound: " + err.Error()}
		}
		c.last = Timestamp{Wall: b}
		c.bound = b
	}
	return c, nil
}

// Now returns a timestamp strictly after every timestamp this clock has
// returned or received.
func (c *Clock) Now() (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.opts.Physical()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else {
		c.last.Logical++
	}
	ts := c.last
	return ts, c.persistLocked(ts.Wall)
}

// Update merges a received timestamp and returns a timestamp after both it
// and the local clock. A remote timestamp more than MaxOffset ahead of the
// physical clock is refused with a KindOffset error and not merged.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.opts.Physical()
	if c.opts.MaxOffset > 0 && remote.Wall-pt > int64(c.opts.MaxOffset) {
		return c.last, &Error{Kind: KindOffset, Msg: fmt.Sprintf("remote timestamp %s is %s ahead of the physical clock (max offset %s)",
			remote, time.Duration(remote.Wall-pt), c.opts.MaxOffset)}
	}
	if c.opts.IgnoreUpdates {
		remote = Timestamp{}
	}
	switch {
	case pt > c.last.Wall && pt > remote.Wall:
		c.last = Timestamp{Wall: pt}
	case c.last.Wall == remote.Wall:
		c.last.Logical = max(c.last.Logical, remote.Logical) + 1
	case c.last.Wall > remote.Wall:
		c.last.Logical++
	default:
		c.last = Timestamp{Wall: remote.Wall, Logical: remote.Logical + 1}
	}
	ts := c.last
	return ts, c.persistLocked(ts.Wall)
}

// Last returns the latest timestamp without advancing the clock.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// persistLocked makes sure wall, just handed out, is below the durable
// bound: it starts storing the next bound when less than half a Window is
// left, and waits for that store only when wall has reached the bound.
// c.mu is held (and released while waiting).
func (c *Clock) persistLocked(wall int64) error {
	if c.opts.Persist == nil {
		return nil
	}
	for {
		if !c.storing && wall >= c.bound-int64(c.opts.Window)/2 {
			c.startStore(wall + int64(c.opts.Window))
		}
		if wall < c.bound {
			return nil
		}
		c.stored.Wait()
		if wall >= c.bound && c.storeErr != nil {
			return &Error{Kind: KindStorage, Msg: "store bound: " + c.storeErr.Error()}
		}
	}
}

// startStore stores bound nb in the background. c.mu is held.
func (c *Clock) startStore(nb int64) {
	c.storing = true
	c.stores.Add(1)
	go func() {
		defer c.stores.Done()
		err := c.opts.Persist.Store(nb)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.storing, c.storeErr = false, err
		if err == nil && nb > c.bound {
			c.bound = nb
		}
		c.stored.Broadcast()
	}()
}

// Close waits for a bound being stored in the background. The clock stays
// usable (a later reading may start another store).
func (c *Clock) Close() { c.stores.Wait() }

// FilePersister keeps the bound in a small file, replaced atomically and
// fsynced on every store.
type FilePersister struct {
	Path string
}

// Load returns the stored bound, or 0 when the file does not exist yet.
func (f FilePersister) Load() (int64, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: malformed hlc bound %q: delete the file to reset the clock bound", f.Path, b)
	}
	return v, nil
}

// Store writes bound durably.
func (f FilePersister) Store(bound int64) error {
	tmp := f.Path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(strconv.FormatInt(bound, 10) + "\n"); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(f.Path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
