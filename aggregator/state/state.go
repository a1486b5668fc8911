// Package state is the idempotent per-key state machine of the aggregator:
// INIT → PROCESSING → DONE | FAILED, every change a versioned
// compare-and-set. It is pure: the replicated log applies it on every replica.
package state

import "fmt"

// Phase is a key's lifecycle phase.
type Phase int

// Phases. A key never written is INIT at version 0.
const (
	// Init is the phase of a key never written (or reopened).
	Init Phase = 1 + iota
	// Processing is work in progress; it may be updated repeatedly.
	Processing
	// Done is a successful end.
	Done
	// Failed is an unsuccessful end.
	Failed
)

var names = map[Phase]string{Init: "INIT", Processing: "PROCESSING", Done: "DONE", Failed: "FAILED"}

// String returns the wire name (INIT, PROCESSING, DONE, FAILED).
func (p Phase) String() string {
	if n, ok := names[p]; ok {
		return n
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// ParsePhase reads a wire name.
func ParsePhase(s string) (Phase, bool) {
	for p, n := range names {
		if n == s {
			return p, true
		}
	}
	return 0, false
}

// Allowed reports whether from → to is a legal transition:
// INIT→PROCESSING, PROCESSING→PROCESSING (progress update),
// PROCESSING→DONE, PROCESSING→FAILED, and DONE|FAILED→INIT (reopen).
func Allowed(from, to Phase) bool {
	switch from {
	case Init:
		return to == Processing
	case Processing:
		return to == Processing || to == Done || to == Failed
	case Done, Failed:
		return to == Init
	}
	return false
}

// Value is the state of one key.
type Value struct {
	Phase   Phase  `json:"phase"`
	Version uint64 `json:"version"`
	Data    string `json:"data,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
	HLC     string `json:"hlc,omitempty"`
}

// PutOutcome is the result of a Put.
type PutOutcome int

// Put outcomes.
const (
	// Applied means the new state was written.
	Applied PutOutcome = 1 + iota
	// AlreadyApplied means an identical put was applied before (idempotent).
	AlreadyApplied
	// VersionMismatch means expected_version did not match.
	VersionMismatch
	// IllegalTransition means the phase change is not allowed.
	IllegalTransition
)

// Put computes the result of setting cur to (to, data) when the caller
// expects version expected. It returns the outcome and the resulting value
// (the current value unless Applied).
func Put(cur Value, to Phase, data string, expected uint64, epoch uint64, hlc string) (PutOutcome, Value) {
	if cur.Phase == 0 {
		cur.Phase = Init
	}
	if expected != cur.Version {
		if cur.Version == expected+1 && cur.Phase == to && cur.Data == data {
			return AlreadyApplied, cur
		}
		return VersionMismatch, cur
	}
	if !Allowed(cur.Phase, to) {
		return IllegalTransition, cur
	}
	return Applied, Value{Phase: to, Version: cur.Version + 1, Data: data, Epoch: epoch, HLC: hlc}
}
