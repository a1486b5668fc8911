// Package dedup is the second dedup level of a partition: a TTL set of
// (msg_id, fingerprint) pairs, bounded by count, evicted oldest first. (The
// first level, the per-source sequence high-water mark, lives in the reorder
// buffer.)
//
// The set is pure and deterministic: time is passed in by the caller (the
// replicated log's timestamps), so every replica holds the same entries and a
// snapshot plus the log tail rebuilds it exactly after a restart.
package dedup

import "strings"

// Entry is one remembered pair with its insertion time.
type Entry struct {
	MsgID       string `json:"m"`
	Fingerprint string `json:"f"`
	At          int64  `json:"t"`
}

// Set is a bounded TTL set. It is not safe for concurrent use.
type Set struct {
	ttl   int64
	max   int
	index map[pair]int64 // (msg_id, fingerprint) -> insertion time
	queue []Entry        // insertion order; queue[head:] is live
	head  int
}

// New returns a set that forgets entries older than ttl (ns) and holds at
// most max entries (oldest evicted first).
func New(ttl int64, max int) *Set {
	if max <= 0 {
		max = 1
	}
	return &Set{ttl: ttl, max: max, index: map[pair]int64{}}
}

// pair is a map key made of both strings, hashed without building a new
// string per lookup.
type pair struct{ msgID, fp string }

func key(msgID, fp string) pair { return pair{msgID, fp} }

// Len is the number of entries held.
func (s *Set) Len() int { return len(s.index) }

// Contains reports whether the pair was added and has not expired at now.
func (s *Set) Contains(msgID, fp string, now int64) bool {
	at, ok := s.index[key(msgID, fp)]
	return ok && (s.ttl <= 0 || at > now-s.ttl)
}

// Add remembers the pair at time now (a no-op if already present) and
// evicts expired entries and entries beyond the count bound.
func (s *Set) Add(msgID, fp string, now int64) {
	k := key(msgID, fp)
	if at, ok := s.index[k]; !ok || (s.ttl > 0 && at <= now-s.ttl) {
		// Own copies: the caller's strings may share memory with a larger
		// buffer that must not live as long as the entry.
		k = pair{strings.Clone(msgID), strings.Clone(fp)}
		s.index[k] = now
		s.queue = append(s.queue, Entry{MsgID: k.msgID, Fingerprint: k.fp, At: now})
	}
	s.evict(now)
}

// Insert records a pair the caller has just found absent (Contains false):
// one map write instead of Add's lookup and write.
func (s *Set) Insert(msgID, fp string, now int64) {
	k := pair{strings.Clone(msgID), strings.Clone(fp)}
	s.index[k] = now
	s.queue = append(s.queue, Entry{MsgID: k.msgID, Fingerprint: k.fp, At: now})
	s.evict(now)
}

func (s *Set) evict(now int64) {
	for s.head < len(s.queue) {
		e := s.queue[s.head]
		if len(s.index) <= s.max && (s.ttl <= 0 || e.At > now-s.ttl) {
			break
		}
		k := key(e.MsgID, e.Fingerprint)
		if s.index[k] == e.At {
			delete(s.index, k)
		}
		s.queue[s.head] = Entry{}
		s.head++
	}
	if s.head > 1024 && s.head*2 > len(s.queue) {
		s.queue = append([]Entry(nil), s.queue[s.head:]...)
		s.head = 0
	}
}

// Entries returns the live entries in insertion order, for a snapshot.
func (s *Set) Entries() []Entry {
	return append([]Entry(nil), s.queue[s.head:]...)
}

// Restore replaces the contents with entries in insertion order.
func (s *Set) Restore(entries []Entry) {
	s.index = make(map[pair]int64, len(entries))
	s.queue = append([]Entry(nil), entries...)
	s.head = 0
	for _, e := range entries {
		s.index[key(e.MsgID, e.Fingerprint)] = e.At
	}
}
