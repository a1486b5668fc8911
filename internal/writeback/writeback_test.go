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

// A pacer starts writeback only once its step is full, then starts over.
func TestPacerStartsEveryStep(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &Pacer{F: f, Every: 100}
	p.Wrote(60)
	if p.pending != 60 {
		t.Fatalf("pending %d after 60 bytes", p.pending)
	}
	p.Wrote(50)
	if p.pending != 0 {
		t.Fatalf("pending %d after a full step", p.pending)
	}
	p.Wrote(99)
	if p.pending != 99 {
		t.Fatalf("pending %d", p.pending)
	}
}
