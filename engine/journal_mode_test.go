package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
)

// TestJournalIsPrivate: a journal names the processes and faults of a run;
// only its owner may read it.
func TestJournalIsPrivate(t *testing.T) {
	dir := t.TempDir()
	j, err := engine.OpenJournal(dir, "run-modes", "modes", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(true)
	for p, want := range map[string]os.FileMode{engine.JournalDir(dir): 0o700, filepath.Join(engine.JournalDir(dir), "run-modes.journal"): 0o600} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
}
