package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AnchorsFile is the file, inside a ledger directory, that records every
// anchoring of the ledger in an outside witness (a Hyperledger Fabric
// channel): one JSON object a line (anchors/v1, docs/anchors-v1.md). The
// explorer reads it to show which transaction covers an entry without
// asking the witness.
const AnchorsFile = "anchors.jsonl"

// AnchorsSchema is the v field of every anchor record.
const AnchorsSchema = 1

// maxAnchorsFile bounds the anchors file a reader accepts (64 MiB: about
// 200,000 anchors).
const maxAnchorsFile = 64 << 20

// Anchor records one committed anchoring transaction: the witness holds
// the signed checkpoint of TreeSize entries with Root, in transaction TxID
// of block Block.
type Anchor struct {
	// V is AnchorsSchema.
	V int `json:"v"`
	// Origin is the log's checkpoint origin.
	Origin string `json:"origin"`
	// TreeSize and Root are those of the anchored signed checkpoint; the
	// anchor covers entries 0 .. TreeSize-1.
	TreeSize uint64 `json:"tree_size"`
	Root     string `json:"root"`
	// TxID is the witness's transaction id and Block the number of the
	// block that committed it.
	TxID  string `json:"tx_id"`
	Block uint64 `json:"block"`
	// Backend names the witness ("fabric"); Channel and Chaincode say
	// where in it.
	Backend   string `json:"backend"`
	Channel   string `json:"channel,omitempty"`
	Chaincode string `json:"chaincode,omitempty"`
	// Recorded is how many entries' digests the anchoring recorded
	// individually besides the checkpoint.
	Recorded int `json:"entries_recorded"`
	// Time is when the commit was confirmed.
	Time time.Time `json:"time"`
}

// Check reports what is wrong with a, or nil.
func (a Anchor) Check() error {
	switch {
	case a.V != AnchorsSchema:
		return fmt.Errorf("v %d: want %d", a.V, AnchorsSchema)
	case a.Origin == "":
		return errors.New("origin is empty")
	case a.TreeSize == 0:
		return errors.New("tree_size must be at least 1: an empty tree anchors nothing")
	case a.TxID == "":
		return errors.New("tx_id is empty")
	case a.Backend == "":
		return errors.New("backend is empty")
	case a.Time.IsZero():
		return errors.New("time is missing")
	case a.Recorded < 0:
		return errors.New("entries_recorded is negative")
	}
	if r, err := base64.StdEncoding.DecodeString(a.Root); err != nil || len(r) != 32 {
		return fmt.Errorf("root %q is not a base64 SHA-256 hash", a.Root)
	}
	return nil
}

// Covers reports whether the anchor covers entry index.
func (a Anchor) Covers(index uint64) bool { return a.TreeSize > index }

// AppendAnchor appends a to the anchors file of the ledger in dir and
// syncs it to disk before returning. A record torn by a crash during an
// earlier append (a last line without its newline) is cut off first, so
// the file stays a sequence of whole records.
func AppendAnchor(dir string, a Anchor) error {
	if err := a.Check(); err != nil {
		return &Error{Kind: KindInvalid, Op: "record anchor", Err: err}
	}
	line, err := json.Marshal(a)
	if err != nil {
		return wrap(KindInternal, "record anchor", err)
	}
	line = append(line, '\n')
	path := filepath.Join(dir, AnchorsFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return wrap(KindUnavailable, "record anchor", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return wrap(KindUnavailable, "record anchor", err)
	}
	end := st.Size()
	if end > 0 {
		// Cut a torn last record: keep up to the last newline.
		tail := int64(4096)
		for {
			off := max(end-tail, 0)
			buf := make([]byte, end-off)
			if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				return wrap(KindUnavailable, "record anchor", err)
			}
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 || off == 0 {
				keep := off + int64(i) + 1 // i == -1 at off 0: keep nothing
				if keep != end {
					if err := f.Truncate(keep); err != nil {
						return wrap(KindUnavailable, "record anchor", err)
					}
					end = keep
				}
				break
			}
			tail *= 2
		}
	}
	if _, err := f.WriteAt(line, end); err != nil {
		return wrap(KindUnavailable, "record anchor", err)
	}
	if err := f.Sync(); err != nil {
		return wrap(KindUnavailable, "record anchor", err)
	}
	if end == 0 {
		// A new file: make its directory entry durable too.
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}

// ReadAnchors reads the anchors file of the ledger in dir, in the order
// the anchors were recorded; no file is no anchors.
func ReadAnchors(dir string) ([]Anchor, error) {
	path := filepath.Join(dir, AnchorsFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(KindUnavailable, "read anchors", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAnchorsFile+1))
	if err != nil {
		return nil, wrap(KindUnavailable, "read anchors", err)
	}
	if len(data) > maxAnchorsFile {
		return nil, &Error{Kind: KindInvalid, Op: "read anchors", Err: fmt.Errorf("%s is larger than %d MiB", path, maxAnchorsFile>>20), Hint: "this is not a chaosgate anchors file"}
	}
	return ParseAnchors(data, path)
}

// ParseAnchors decodes an anchors file (anchors/v1): one JSON object a
// line, unknown fields refused, every record checked. name is the file
// name errors carry, as name:line:col. A last line without its newline is
// a record torn by a crash and is ignored: AppendAnchor returns only once
// the newline is on disk.
func ParseAnchors(data []byte, name string) ([]Anchor, error) {
	var out []Anchor
	for ln := 1; len(data) > 0; ln++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break // torn last record
		}
		line := data[:i]
		data = data[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var a Anchor
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			return nil, anchorsErr(name, ln, jsonCol(line, err), err.Error())
		}
		if dec.More() {
			return nil, anchorsErr(name, ln, int(dec.InputOffset())+1, "more than one JSON value on the line")
		}
		if err := a.Check(); err != nil {
			return nil, anchorsErr(name, ln, 1, err.Error())
		}
		out = append(out, a)
	}
	return out, nil
}

func anchorsErr(name string, line, col int, msg string) error {
	return &Error{Kind: KindInvalid, Op: fmt.Sprintf("%s:%d:%d", name, line, col), Err: errors.New(msg),
		Hint: "each line is one anchors/v1 JSON object (docs/anchors-v1.md); `chaosgate ledger anchor` rewrites nothing, remove the damaged line and anchor again"}
}

// jsonCol is the 1-based column of a JSON decoding error within line.
func jsonCol(line []byte, err error) int {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(0)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	default:
		// json: unknown field "name": point at the key.
		if _, f, ok := strings.Cut(err.Error(), "unknown field "); ok {
			if j := bytes.Index(line, []byte(f)); j >= 0 {
				return j + 1
			}
		}
		return 1
	}
	// The decoder reports the offset after the byte at fault.
	return int(max(min(off, int64(len(line))), 1))
}

// CoveringAnchor returns the anchor that first covered entry index: the
// one of the smallest tree size above index (the earliest recorded among
// equals).
func CoveringAnchor(as []Anchor, index uint64) (Anchor, bool) {
	var best Anchor
	ok := false
	for _, a := range as {
		if a.Covers(index) && (!ok || a.TreeSize < best.TreeSize) {
			best, ok = a, true
		}
	}
	return best, ok
}

// LatestAnchor returns the anchor of the largest tree size (the last
// recorded among equals).
func LatestAnchor(as []Anchor) (Anchor, bool) {
	var best Anchor
	ok := false
	for _, a := range as {
		if !ok || a.TreeSize >= best.TreeSize {
			best, ok = a, true
		}
	}
	return best, ok
}
