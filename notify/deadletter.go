package notify

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetterFile is where, under the data directory, notifications that
// could not be delivered are kept.
const DeadLetterFile = "notify/dead-letter.jsonl"

// DeadLetter is one line of the dead-letter file.
type DeadLetter struct {
	Time time.Time `json:"time"`
	Sink string    `json:"sink"`
	// Endpoint is the sink's URL without its secret parts.
	Endpoint   string `json:"endpoint"`
	DeliveryID string `json:"delivery_id"`
	Attempts   int    `json:"attempts"`
	Error      string `json:"error"`
	// Notification is what was not delivered, as a webhook would have
	// received it.
	Notification Notification `json:"notification"`
}

// DeadLetters appends dead letters, one JSON line each, to a file of mode
// 0600 in a directory of mode 0700. Safe for concurrent use.
type DeadLetters struct {
	path string
	mu   sync.Mutex
}

// NewDeadLetters keeps dead letters in DATA/notify/dead-letter.jsonl.
func NewDeadLetters(dataDir string) *DeadLetters {
	return &DeadLetters{path: filepath.Join(dataDir, filepath.FromSlash(DeadLetterFile))}
}

// Path is the dead-letter file.
func (d *DeadLetters) Path() string { return d.path }

// Append writes rec as one line and syncs the file.
func (d *DeadLetters) Append(rec DeadLetter) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	line = append(line, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	// A file created by hand, or under another umask, is narrowed.
	if st, err := f.Stat(); err == nil && st.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("dead letter: %w", err)
		}
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("dead letter: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("dead letter: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return nil
}
