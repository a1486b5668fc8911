// Package replica holds the consensus plumbing of the aggregator: the raft
// log store (an append-only WAL with one fsync per batch), a raft stable
// store on bbolt, and a TCP stream layer that multiplexes every raft group of
// a node over one listener.
package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// The log store is written here on go.etcd.io/bbolt rather than taken from
// github.com/hashicorp/raft-boltdb/v2: v2.3.1 does not build against
// hashicorp/raft v1.8.0 (it imports go-metrics/compat, which go-metrics
// v0.7.0 removed).

var (
	bucketLogs   = []byte("logs")
	bucketStable = []byte("stable")
	errNotFound  = errors.New("not found") // raft compares the text "not found"
)

// BoltStore is a raft.LogStore and raft.StableStore in one bbolt file. Every
// write is one fsynced bbolt transaction, so a batch of log entries costs one
// fsync (raft hands the leader's batched appends to StoreLogs at once).
type BoltStore struct {
	db *bolt.DB
}

// OpenBoltStore opens or creates the store at path.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketLogs); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketStable)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &BoltStore{db: db}, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// FirstIndex returns the first stored index, 0 when empty.
func (s *BoltStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last stored index, 0 when empty.
func (s *BoltStore) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads entry index into log.
func (s *BoltStore) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(u64(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(v, log)
	})
}

// StoreLog stores one entry.
func (s *BoltStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one fsynced transaction.
func (s *BoltStore) StoreLogs(logs []*raft.Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := b.Put(u64(l.Index), encodeLog(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange deletes entries min..max inclusive.
func (s *BoltStore) DeleteRange(min, max uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(u64(min)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > max {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Set stores a stable value.
func (s *BoltStore) Set(key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketStable).Put(key, val) })
}

// Get reads a stable value; a missing key is the error "not found".
func (s *BoltStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketStable).Get(key)
		if v == nil {
			return errNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// SetUint64 stores a stable integer.
func (s *BoltStore) SetUint64(key []byte, val uint64) error { return s.Set(key, u64(val)) }

// GetUint64 reads a stable integer.
func (s *BoltStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stable key %q: %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// encodeLog: index, term, type, appendedAt, then length-prefixed data and
// extensions.
func encodeLog(l *raft.Log) []byte {
	return appendLog(make([]byte, 0, logSize(l)), l)
}

// logSize bounds the length of l's encoding.
func logSize(l *raft.Log) int { return 45 + len(l.Data) + len(l.Extensions) }

// appendLog appends l's encoding to b.
func appendLog(b []byte, l *raft.Log) []byte {
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64 // 0 stands for "not set": the zero time has no UnixNano
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

// minLogEntry is the size of an encoded entry's fixed fields: index,
// term, type and append time.
const minLogEntry = 25

func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < minLogEntry {
		return fmt.Errorf("raft log entry: %d bytes, too short", len(b))
	}
	l.Index = binary.BigEndian.Uint64(b)
	l.Term = binary.BigEndian.Uint64(b[8:])
	l.Type = raft.LogType(b[16])
	if ns := int64(binary.BigEndian.Uint64(b[17:])); ns != 0 {
		l.AppendedAt = time.Unix(0, ns)
	} else {
		l.AppendedAt = time.Time{}
	}
	rest := b[25:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return fmt.Errorf("raft log entry %d: corrupt data length", l.Index)
	}
	l.Data = append([]byte(nil), rest[k:k+int(n)]...)
	rest = rest[k+int(n):]
	n, k = binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return fmt.Errorf("raft log entry %d: corrupt extensions length", l.Index)
	}
	l.Extensions = nil
	if n > 0 {
		l.Extensions = append([]byte(nil), rest[k:k+int(n)]...)
	}
	return nil
}
