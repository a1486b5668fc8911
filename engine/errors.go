package engine

import (
	"errors"
	"fmt"
)

// Kind classifies errors so the CLI maps them to exit codes and the API to
// HTTP statuses.
type Kind int

// Error kinds.
const (
	KindInvalid     Kind = 1 + iota // bad input: a usage or configuration error
	KindNotFound                    // a named thing does not exist
	KindUnavailable                 // a dependency is down or timed out; may be retried
	KindInternal                    // a bug or an unexpected state
	KindCanceled                    // the run was interrupted (signal, context) or aborted
)

var kindErrNames = map[Kind]string{KindInvalid: "invalid", KindNotFound: "not found", KindUnavailable: "unavailable", KindInternal: "internal", KindCanceled: "canceled"}

// String names the kind.
func (k Kind) String() string { return enumString(kindErrNames, k) }

// Error is an error with a kind and the operation that failed.
type Error struct {
	Kind Kind
	Op   string
	Err  error
}

// Error formats the operation and the cause.
func (e *Error) Error() string {
	if e.Op == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// E wraps err with a kind and an operation.
func E(kind Kind, op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Op: op, Err: err}
}

// KindOf returns the kind of the outermost kinded error in err's chain
// (KindInternal for an error without a kind, 0 for nil).
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
