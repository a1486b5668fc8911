package evidence

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of the C2SP tlog-tiles served by the ledger:
// 2^8 = 256 hashes or entries per full tile.
const TileHeight = 8

// TileData returns the hashes of tile t (levels ≥ 0) over the current tree,
// as served at /tile/<L>/<N>[.p/<W>]. A tile that reaches beyond the tree
// is not found.
func (l *Ledger) TileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if t.H != TileHeight || t.L < 0 || t.W < 1 || t.W > 1<<TileHeight {
		return nil, errorf(KindInvalid, "tile", "unsupported tile %+v", t)
	}
	size := l.Size()
	// The tile's last hash at level L*H covers entries up to
	// (N*256+W) << (L*H); computed without overflow.
	shift := uint(t.L) * TileHeight
	if t.N < 0 || shift >= 64 || uint64(t.N) > (math.MaxUint64>>TileHeight)-1 ||
		uint64(t.N)<<TileHeight+uint64(t.W) > size>>shift {
		return nil, errorf(KindNotFound, "tile", "tile %s reaches beyond the tree size %d", t.Path(), size)
	}
	var data []byte
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		data, err = tlog.ReadTileData(t, bucketHashReader(tx.Bucket(bHashes)))
		return err
	})
	if err != nil {
		return nil, wrap(KindTampered, "tile", err)
	}
	return data, nil
}

// EntryBundle returns the C2SP tlog-tiles entry bundle of entries
// [n*256, n*256+w): each leaf as a big-endian uint16 length and its bytes.
func (l *Ledger) EntryBundle(ctx context.Context, n int64, w int) ([]byte, error) {
	if n < 0 || w < 1 || w > 1<<TileHeight {
		return nil, errorf(KindInvalid, "entry bundle", "index %d width %d", n, w)
	}
	if uint64(n) > (math.MaxUint64>>TileHeight)-1 {
		return nil, errorf(KindNotFound, "entry bundle", "index %d is beyond the tree", n)
	}
	first := uint64(n) << TileHeight
	if first+uint64(w) > l.Size() {
		return nil, errorf(KindNotFound, "entry bundle", "entries [%d, %d) reach beyond the tree size %d", first, first+uint64(w), l.Size())
	}
	var out []byte
	err := l.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEntries)
		for i := first; i < first+uint64(w); i++ {
			v, err := getStored(b, i, "entry")
			if err != nil {
				return err
			}
			if v == nil {
				return errorf(KindTampered, fmt.Sprintf("entry %d", i), "missing")
			}
			if len(v) > 0xffff {
				return errorf(KindInternal, fmt.Sprintf("entry %d", i), "leaf of %d bytes does not fit an entry bundle", len(v))
			}
			out = binary.BigEndian.AppendUint16(out, uint16(len(v)))
			out = append(out, v...)
		}
		return nil
	})
	return out, err
}
