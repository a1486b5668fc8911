package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/fsnotify/fsnotify"
)

// LoadFile reads and validates one decision.yaml file.
func LoadFile(path string) (*decision.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Kind: KindSource, File: path, Msg: err.Error(), Hint: "check the path of the decision config"}
	}
	return Load(b, path)
}

// WatchFile keeps store in step with the file at path until ctx ends. It
// watches the file's directory, so editors that save by writing a new file
// and renaming it over the old one are seen; bursts of events are debounced.
// The file is loaded once at the start; a bad or missing file is reported
// and the config in force stays.
func WatchFile(ctx context.Context, path string, store *Store, debounce time.Duration) error {
	if debounce <= 0 {
		debounce = 100 * time.Millisecond
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watching %s: %w", path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("config: watching %s: %w", filepath.Dir(abs), err)
	}
	reload := func() {
		b, err := os.ReadFile(abs)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				store.reject(&Error{Kind: KindSource, File: path, Msg: "file is gone", Hint: "the last good config stays until the file is back"})
				return
			}
			store.reject(&Error{Kind: KindSource, File: path, Msg: err.Error()})
			return
		}
		_ = store.Apply(b, path) // Apply records and logs a rejection
	}
	reload()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) != abs {
				continue
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			store.reject(&Error{Kind: KindSource, File: path, Msg: "watch error: " + err.Error()})
		case <-timer.C:
			reload()
		}
	}
}
