// Package evidence records what a chaosgate run injected, observed and
// decided as signed in-toto statements in DSSE envelopes, stores raw material
// in a content-addressed blob store, and appends every record to a
// tamper-evident RFC 6962 Merkle log kept in bbolt, with signed C2SP
// checkpoints, block headers and inclusion and consistency proofs.
//
// The package imports nothing of the platform: the engine fills a Predicate
// and calls Recorder.Record; auditors use Ledger.Verify and the proofs.
package evidence

import (
	"errors"
	"fmt"
)

// Kind classifies an error so the CLI can map it to an exit code and the web
// layer to an HTTP status.
type Kind int

const (
	// KindInvalid is bad input: a malformed statement, envelope, proof or flag.
	KindInvalid Kind = 1 + iota
	// KindNotFound is a missing entry, block, blob or checkpoint.
	KindNotFound
	// KindUnavailable is a transient condition (closed ledger, I/O busy).
	KindUnavailable
	// KindTampered means stored data does not verify: a hash, signature or
	// chain link is wrong.
	KindTampered
	// KindPermission is a key file or directory with unsafe permissions, or
	// an attempt to overwrite existing keys.
	KindPermission
	// KindInternal is a bug or an unexpected storage failure.
	KindInternal
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindUnavailable:
		return "unavailable"
	case KindTampered:
		return "tampered"
	case KindPermission:
		return "permission"
	case KindInternal:
		return "internal"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the error type of this package: a kind, what was being done, the
// cause and an optional hint telling the user how to fix it.
type Error struct {
	Kind Kind
	Op   string // what failed, e.g. "open ledger", "entry 17"
	Err  error
	Hint string
}

// Error formats "op: cause (hint: ...)".
func (e *Error) Error() string {
	s := e.Op
	if e.Err != nil {
		if s != "" {
			s += ": "
		}
		s += e.Err.Error()
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err, KindInternal when err carries none, and 0
// for a nil error.
func KindOf(err error) Kind {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

func errorf(kind Kind, op, format string, args ...any) *Error {
	return &Error{Kind: kind, Op: op, Err: fmt.Errorf(format, args...)}
}

func wrap(kind Kind, op string, err error) *Error {
	return &Error{Kind: kind, Op: op, Err: err}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
