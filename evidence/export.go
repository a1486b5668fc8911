package evidence

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

//go:embed export_readme.md
var exportReadme []byte

//go:embed export_verify.py
var exportVerifyScript []byte

// ExportSummary describes an offline audit bundle.
type ExportSummary struct {
	Dir      string `json:"dir"`
	TreeSize uint64 `json:"tree_size"`
	Entries  int    `json:"entries"`
	Blocks   int    `json:"blocks"`
	Blobs    int    `json:"blobs"`
}

// Export writes an offline audit bundle to dir (which must be empty or
// absent): the latest checkpoint, the public keys, every entry's leaf bytes,
// envelope and c2sp.org/tlog-proof against that checkpoint, the signed block
// headers, every referenced blob, and a README telling an auditor how to
// verify it all with standard tools.
func (l *Ledger) Export(ctx context.Context, dir string) (ExportSummary, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return ExportSummary{}, &Error{Kind: KindInvalid, Op: "export", Err: fmt.Errorf("%s is not empty", dir), Hint: "export into a new directory"}
	}
	for _, d := range []string{"entries", "blocks", filepath.Join("blobs", "sha256")} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return ExportSummary{}, wrap(KindInvalid, "export", err)
		}
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return ExportSummary{}, err
	}
	sum := ExportSummary{Dir: dir, TreeSize: cp.Size}
	write := func(rel string, data []byte) error {
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	}
	files := map[string][]byte{
		"checkpoint":      cp.Note,
		"checkpoint.vkey": []byte(l.pub.CheckpointVKey + "\n"),
		"evidence.pub":    l.pub.EvidencePEM(),
		"README.md":       exportReadme,
		"verify.py":       exportVerifyScript,
	}
	for name, data := range files {
		if err := write(name, data); err != nil {
			return sum, wrap(KindInvalid, "export", err)
		}
	}
	blobs := map[Digest]bool{}
	for i := uint64(0); i < cp.Size; i++ {
		if err := ctx.Err(); err != nil {
			return sum, wrap(KindUnavailable, "export", err)
		}
		e, err := l.Entry(ctx, i)
		if err != nil {
			return sum, err
		}
		p, err := l.TlogProof(ctx, i, cp.Size)
		if err != nil {
			return sum, err
		}
		base := fmt.Sprintf("entries/%d", i)
		for _, f := range []struct {
			ext  string
			data []byte
		}{{".leaf", e.Leaf}, {".envelope.json", e.Envelope}, {".tlog-proof", p.Marshal()}} {
			if err := write(base+f.ext, f.data); err != nil {
				return sum, wrap(KindInvalid, "export", err)
			}
		}
		for _, d := range e.Record.Blobs {
			blobs[d] = true
		}
		sum.Entries++
	}
	for d := range blobs {
		data, err := l.blobs.Get(d)
		if err != nil {
			return sum, err
		}
		if err := write(filepath.Join("blobs", "sha256", d.Hex()), data); err != nil {
			return sum, wrap(KindInvalid, "export", err)
		}
		sum.Blobs++
	}
	err = l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bBlocks).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := write(fmt.Sprintf("blocks/%d.note", binary.BigEndian.Uint64(k)), v); err != nil {
				return err
			}
			sum.Blocks++
		}
		return nil
	})
	if err != nil {
		return sum, wrap(KindInvalid, "export", err)
	}
	return sum, nil
}
