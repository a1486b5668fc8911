// Package dedup is the second dedup level of a partition: a TTL set of
// (msg_id, fingerprint) pairs, bounded by count, evicted oldest first. (The
// first level, the per-source sequence high-water mark, lives in the reorder
// buffer.)
//
// The set is pure and deterministic: time is passed in by the caller (the
// replicated log's timestamps), so every replica holds the same entries and a
// snapshot plus the log tail rebuilds it exactly after a restart.
//
// A pair is held as two 64-bit xxhash digests, one of the msg_id and one of
// the fingerprint, so the set holds no pointers: the garbage collector never
// scans it and an entry takes 24 bytes. Two different pairs are confused only
// if both digests collide — about 2^-64 for the same msg_id with another
// fingerprint and 2^-128 otherwise.
package dedup

import "github.com/cespare/xxhash/v2"

// Entry is one remembered pair with its insertion time. A snapshot holds
// the digests (M64, F64); entries written with the strings (MsgID,
// Fingerprint) by earlier versions are still restored.
type Entry struct {
	MsgID       string `json:"m,omitempty"`
	Fingerprint string `json:"f,omitempty"`
	M64         uint64 `json:"mh,omitempty"`
	F64         uint64 `json:"fh,omitempty"`
	At          int64  `json:"t"`
}

// Set is a bounded TTL set. It is not safe for concurrent use.
type Set struct {
	ttl   int64
	max   int
	index map[digest]int64 // pair -> insertion time
	queue []queued         // insertion order; queue[head:] is live
	head  int
	// deleted counts map deletions since the index was last rebuilt: a
	// map under steady insert/delete churn fills with tombstones and its
	// probes grow long, so after a full turnover it is rebuilt.
	deleted int
}

// digest identifies a pair without pointers.
type digest struct{ m, f uint64 }

type queued struct {
	d  digest
	at int64
}

// New returns a set that forgets entries older than ttl (ns) and holds at
// most max entries (oldest evicted first).
func New(ttl int64, max int) *Set {
	if max <= 0 {
		max = 1
	}
	return &Set{ttl: ttl, max: max, index: map[digest]int64{}}
}

func key(msgID, fp string) digest {
	return digest{xxhash.Sum64String(msgID), xxhash.Sum64String(fp)}
}

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
		s.put(k, now)
	}
	s.evict(now)
}

// Insert records a pair the caller has just found absent (Contains false):
// one map write instead of Add's lookup and write.
func (s *Set) Insert(msgID, fp string, now int64) {
	s.put(key(msgID, fp), now)
	s.evict(now)
}

func (s *Set) put(k digest, now int64) {
	s.index[k] = now
	s.queue = append(s.queue, queued{k, now})
}

func (s *Set) evict(now int64) {
	for s.head < len(s.queue) {
		e := s.queue[s.head]
		if len(s.index) <= s.max && (s.ttl <= 0 || e.at > now-s.ttl) {
			break
		}
		if s.index[e.d] == e.at {
			delete(s.index, e.d)
			s.deleted++
		}
		s.head++
	}
	if s.deleted > 4096 && s.deleted >= len(s.index) {
		s.rebuild()
	}
	if s.head > 1024 && s.head*2 > len(s.queue) {
		s.queue = append([]queued(nil), s.queue[s.head:]...)
		s.head = 0
	}
}

// rebuild copies the live entries into a fresh index (later insertions of
// a pair override earlier ones, as in the index itself).
func (s *Set) rebuild() {
	idx := make(map[digest]int64, len(s.index))
	for _, e := range s.queue[s.head:] {
		idx[e.d] = e.at
	}
	s.index, s.deleted = idx, 0
}

// Entries returns the live entries in insertion order, for a snapshot.
func (s *Set) Entries() []Entry {
	out := make([]Entry, 0, len(s.queue)-s.head)
	for _, e := range s.queue[s.head:] {
		out = append(out, Entry{M64: e.d.m, F64: e.d.f, At: e.at})
	}
	return out
}

// Restore replaces the contents with entries in insertion order.
func (s *Set) Restore(entries []Entry) {
	s.index = make(map[digest]int64, len(entries))
	s.queue = make([]queued, 0, len(entries))
	s.head = 0
	for _, e := range entries {
		d := digest{e.M64, e.F64}
		if e.MsgID != "" || e.Fingerprint != "" || (e.M64 == 0 && e.F64 == 0) { // written with the strings
			d = key(e.MsgID, e.Fingerprint)
		}
		s.index[d] = e.At
		s.queue = append(s.queue, queued{d, e.At})
	}
}
