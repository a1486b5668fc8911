package writeback

import (
	"os"
	"path/filepath"
	"testing"
)

// Start is a hint on a real file: the data written before it is intact
// after the fsync, and a closed file does not make it panic.
func TestStartThenSyncKeepsTheData(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seg")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	Start(f)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	Start(f) // closed: ignored
	got, err := os.ReadFile(p)
	if err != nil || len(got) != len(data) || got[12345] != data[12345] || got[len(got)-1] != data[len(data)-1] {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}
