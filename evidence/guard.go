package evidence

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// guard runs fn, which reads the bbolt file, and turns a panic or a memory
// fault inside it into a KindTampered error: a damaged database file makes
// bbolt index past its pages, and a damaged ledger must be reported as one,
// never crash the process that asked.
func guard(op string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &Error{Kind: KindTampered, Op: op, Err: fmt.Errorf("the database file is damaged: %v", r),
				Hint: "restore the ledger from a copy; `chaosgate ledger verify` names what it can still read"}
		}
	}()
	return fn()
}

// metaU64 reads an 8-byte big-endian number from the meta bucket.
func metaU64(m *bolt.Bucket, key []byte) (uint64, error) {
	v := m.Get(key)
	if len(v) != 8 {
		return 0, tampered("ledger metadata", "%q is missing or damaged", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

// copyValue copies a value bbolt returned (it points into the file's memory
// map) after checking that its length fits the file: a damaged page can
// claim any length, and other goroutines must only ever see copies made
// while guard is in effect.
func copyValue(tx *bolt.Tx, what string, v []byte) ([]byte, error) {
	if int64(len(v)) > tx.Size() {
		return nil, oversizedValue(what, len(v), tx.Size())
	}
	return append([]byte(nil), v...), nil
}

// oversizedValue reports a stored value of what that claims more bytes
// than the database file holds.
func oversizedValue(what string, n int, fileSize int64) error {
	return tampered(what, "a stored value of %d bytes in a database file of %d bytes", n, fileSize)
}
