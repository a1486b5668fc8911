// Package reorder is the per-source reorder buffer of a partition: it
// releases each source's messages in sequence order, holds early arrivals
// bounded by count and sequence distance, and declares a hole that does not
// fill in time as an explicit GAP event — never a silent skip.
//
// The buffer is pure and deterministic: time is passed in by the caller (the
// replicated log's timestamps), so every replica makes the same decisions.
package reorder

import (
	"slices"
	"sort"
	"strings"
)

// Config bounds the buffer.
type Config struct {
	// MaxCount is the most messages held per source (default 1024).
	MaxCount int
	// MaxDistance is the largest distance between the next expected sequence
	// and a held one (default 4096).
	MaxDistance uint64
	// Timeout is how long (ns of the caller's clock) a hole may stay open
	// before it is declared a gap (default 2s).
	Timeout int64
	// RecentGaps is how many declared gaps per source are remembered to tell
	// a late arrival from a duplicate (default 16).
	RecentGaps int
}

func (c Config) withDefaults() Config {
	if c.MaxCount <= 0 {
		c.MaxCount = 1024
	}
	if c.MaxDistance == 0 {
		c.MaxDistance = 4096
	}
	if c.Timeout <= 0 {
		c.Timeout = 2e9
	}
	if c.RecentGaps <= 0 {
		c.RecentGaps = 16
	}
	return c
}

// OfferOutcome is what Offer did with a message.
type OfferOutcome int

// Offer outcomes.
const (
	// Accepted means the message was released or is held for release.
	Accepted OfferOutcome = 1 + iota
	// Duplicate means the sequence was already released or is already held.
	Duplicate
	// Late means the sequence was already declared part of a gap.
	Late
	// Forgotten means the sequence is below the release point and no older
	// than a gap that is no longer remembered (RecentGaps): whether it was
	// released or declared missing cannot be told, so it is neither.
	Forgotten
)

// ReleaseKind tells a released message from a declared gap.
type ReleaseKind int

// Event kinds.
const (
	// EventMessage releases one message.
	EventMessage ReleaseKind = 1 + iota
	// EventGap declares the sequences FromSeq..ToSeq missing.
	EventGap
)

// Release is one release from the buffer, in output order.
type Release[T any] struct {
	Kind    ReleaseKind
	Source  string
	Seq     uint64
	FromSeq uint64
	ToSeq   uint64
	Value   T
}

// Item is one held message.
type Item[T any] struct {
	Seq   uint64 `json:"seq"`
	At    int64  `json:"at"`
	Value T      `json:"value"`
}

// GapRange is a declared gap, kept to recognise late arrivals.
type GapRange struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// SourceState is the exported state of one source, for snapshots.
type SourceState[T any] struct {
	Next uint64     `json:"next"`
	Held []Item[T]  `json:"held,omitempty"`
	Gaps []GapRange `json:"gaps,omitempty"`
	// GapFloor is the end of the newest gap no longer in Gaps: a sequence
	// at or below it may lie in a forgotten gap.
	GapFloor uint64 `json:"gap_floor,omitempty"`
}

// Buffer holds every source of one partition. It is not safe for
// concurrent use; the replicated state machine applies to it serially.
type Buffer[T any] struct {
	cfg     Config
	sources map[string]*SourceState[T]
	depth   int
}

// New returns an empty buffer.
func New[T any](cfg Config) *Buffer[T] {
	return &Buffer[T]{cfg: cfg.withDefaults(), sources: map[string]*SourceState[T]{}}
}

// Depth is the number of messages currently held across all sources.
func (b *Buffer[T]) Depth() int { return b.depth }

// Next returns the next sequence expected from source (1 for a new source).
func (b *Buffer[T]) Next(source string) uint64 {
	if s := b.sources[source]; s != nil {
		return s.Next
	}
	return 1
}

func (b *Buffer[T]) source(name string) *SourceState[T] {
	s := b.sources[name]
	if s == nil {
		s = &SourceState[T]{Next: 1}
		b.sources[strings.Clone(name)] = s // the caller's string may pin a larger buffer
	}
	return s
}

// Offer adds message seq of source, arriving at time at, and returns what
// happened and the events it released, in order.
func (b *Buffer[T]) Offer(source string, seq uint64, at int64, v T) (OfferOutcome, []Release[T]) {
	s := b.source(source)
	if seq < s.Next {
		for _, g := range s.Gaps {
			if seq >= g.From && seq <= g.To {
				return Late, nil
			}
		}
		if seq <= s.GapFloor {
			return Forgotten, nil
		}
		return Duplicate, nil
	}
	i, found := slices.BinarySearchFunc(s.Held, seq, func(it Item[T], q uint64) int {
		switch {
		case it.Seq < q:
			return -1
		case it.Seq > q:
			return 1
		}
		return 0
	})
	if found {
		return Duplicate, nil
	}
	var out []Release[T]
	if seq == s.Next {
		out = append(out, Release[T]{Kind: EventMessage, Source: source, Seq: seq, Value: v})
		s.Next++
		out = b.drain(source, s, out)
		return Accepted, out
	}
	s.Held = slices.Insert(s.Held, i, Item[T]{Seq: seq, At: at, Value: v})
	b.depth++
	for len(s.Held) > b.cfg.MaxCount || (len(s.Held) > 0 && s.Held[len(s.Held)-1].Seq-s.Next > b.cfg.MaxDistance) {
		out = b.flushFront(source, s, out)
	}
	return Accepted, out
}

// drain releases held messages that are now contiguous.
func (b *Buffer[T]) drain(source string, s *SourceState[T], out []Release[T]) []Release[T] {
	n := 0
	for n < len(s.Held) && s.Held[n].Seq == s.Next {
		out = append(out, Release[T]{Kind: EventMessage, Source: source, Seq: s.Next, Value: s.Held[n].Value})
		s.Next++
		n++
	}
	if n > 0 {
		s.Held = slices.Delete(s.Held, 0, n)
		b.depth -= n
	}
	return out
}

// flushFront declares the hole before the first held message a gap and
// releases what follows it.
func (b *Buffer[T]) flushFront(source string, s *SourceState[T], out []Release[T]) []Release[T] {
	first := s.Held[0].Seq
	g := GapRange{From: s.Next, To: first - 1}
	out = append(out, Release[T]{Kind: EventGap, Source: source, FromSeq: g.From, ToSeq: g.To})
	s.Gaps = append(s.Gaps, g)
	if n := len(s.Gaps) - b.cfg.RecentGaps; n > 0 {
		for _, old := range s.Gaps[:n] {
			s.GapFloor = max(s.GapFloor, old.To)
		}
		s.Gaps = slices.Delete(s.Gaps, 0, n)
	}
	s.Next = first
	return b.drain(source, s, out)
}

// Expire declares as gaps the holes of every source whose oldest held
// message arrived at or before now-Timeout, in source-name order.
func (b *Buffer[T]) Expire(now int64) []Release[T] {
	names := make([]string, 0)
	for name, s := range b.sources {
		if len(s.Held) > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []Release[T]
	for _, name := range names {
		s := b.sources[name]
		for len(s.Held) > 0 && oldest(s.Held) <= now-b.cfg.Timeout {
			out = b.flushFront(name, s, out)
		}
	}
	return out
}

func oldest[T any](held []Item[T]) int64 {
	m := held[0].At
	for _, it := range held[1:] {
		m = min(m, it.At)
	}
	return m
}

// State exports the buffer for a snapshot.
func (b *Buffer[T]) State() map[string]SourceState[T] {
	out := make(map[string]SourceState[T], len(b.sources))
	for k, s := range b.sources {
		out[k] = SourceState[T]{Next: s.Next, Held: slices.Clone(s.Held), Gaps: slices.Clone(s.Gaps), GapFloor: s.GapFloor}
	}
	return out
}

// Restore replaces the buffer's contents with a snapshot.
func (b *Buffer[T]) Restore(st map[string]SourceState[T]) {
	b.sources = make(map[string]*SourceState[T], len(st))
	b.depth = 0
	for k, s := range st {
		s := s
		b.sources[k] = &s
		b.depth += len(s.Held)
	}
}
