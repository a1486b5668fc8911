package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Digest is a content address "sha256:<64 lowercase hex>".
type Digest string

// DigestOf returns the SHA-256 digest of data.
func DigestOf(data []byte) Digest {
	sum := sha256.Sum256(data)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// ParseDigest checks that s is "sha256:" followed by 64 lowercase hex digits.
func ParseDigest(s string) (Digest, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return "", errorf(KindInvalid, "digest", "%q is not sha256:<64 lowercase hex digits>", s)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", errorf(KindInvalid, "digest", "%q is not sha256:<64 lowercase hex digits>", s)
	}
	return Digest(s), nil
}

// Hex returns the hex part of the digest.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

// BlobStore is a content-addressed store of raw evidence (samples, trace ids,
// log fragments): files named by their SHA-256 under a directory, written
// atomically (temp file, fsync, rename, directory fsync). Storing the same
// bytes twice keeps one file. A blob that zstd shrinks by at least an
// eighth is stored compressed, as its name plus ".zst" (compressed with
// the ledger's storage dictionary); Get returns the original bytes either
// way and checks them against the digest.
type BlobStore struct {
	dir string
}

// NewBlobStore returns a blob store rooted at dir (created when missing).
func NewBlobStore(dir string) (*BlobStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o700); err != nil {
		return nil, wrap(KindUnavailable, "blob store", err)
	}
	return &BlobStore{dir: dir}, nil
}

// Dir returns the root directory.
func (s *BlobStore) Dir() string { return s.dir }

// Path returns the file that holds the blob with digest d when it is
// stored uncompressed; File finds the file that holds it.
func (s *BlobStore) Path(d Digest) string {
	h := d.Hex()
	if len(h) < 2 {
		return filepath.Join(s.dir, "sha256", "invalid")
	}
	return filepath.Join(s.dir, "sha256", h[:2], h)
}

// compressedSuffix marks a blob file stored zstd-compressed.
const compressedSuffix = ".zst"

// File returns the file that holds the blob with digest d (compressed or
// not), or "" when the store has none.
func (s *BlobStore) File(d Digest) string {
	for _, p := range []string{s.Path(d), s.Path(d) + compressedSuffix} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Put stores data and returns its digest. Storing the same bytes twice is a
// no-op.
func (s *BlobStore) Put(data []byte) (Digest, error) {
	d := DigestOf(data)
	if existing, err := s.Get(d); err == nil && bytes.Equal(existing, data) {
		return d, nil
	}
	p, body, other := s.Path(d), data, s.Path(d)+compressedSuffix
	if z := blobEncoder().EncodeAll(data, nil); len(z) <= len(data)-len(data)/8 {
		p, body, other = other, z, p
	}
	if err := writeFileAtomic(p, body); err != nil {
		return "", wrap(KindUnavailable, "put blob "+string(d), err)
	}
	if err := os.Remove(other); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", wrap(KindUnavailable, "put blob "+string(d), err)
	}
	return d, nil
}

// maxBlob bounds a decompressed blob (a damaged file cannot make the reader
// allocate more).
const maxBlob = 1 << 30

var blobDecoder = sync.OnceValue(func() *zstd.Decoder {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderDictRaw(storageDictID, storageDictV1),
		zstd.WithDecoderMaxMemory(maxBlob))
	if err != nil {
		panic(fmt.Sprintf("evidence: blob decoder: %v", err)) // a constant dictionary: cannot fail
	}
	return dec
})

// Get returns the blob with digest d after checking its content hashes to d.
func (s *BlobStore) Get(d Digest) ([]byte, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		var z []byte
		z, err = os.ReadFile(s.Path(d) + compressedSuffix)
		if err == nil {
			if data, err = blobDecoder().DecodeAll(z, nil); err != nil {
				return nil, errorf(KindTampered, "blob "+string(d), "its compressed file does not decompress: %v", err)
			}
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errorf(KindNotFound, "blob "+string(d), "not in the blob store")
		}
		return nil, wrap(KindUnavailable, "blob "+string(d), err)
	}
	if got := DigestOf(data); got != d {
		return nil, errorf(KindTampered, "blob "+string(d), "content hashes to %s", got)
	}
	return data, nil
}

// writeFileAtomic writes data to p through a temp file in the same directory,
// fsyncs it, renames it into place and fsyncs the directory.
func writeFileAtomic(p string, data []byte) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename into place: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	return errors.Join(serr, d.Close())
}
