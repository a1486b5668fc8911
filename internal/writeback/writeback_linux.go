//go:build linux

// Package writeback asks the kernel to start writing a file's dirty pages
// to disk without waiting for them, so that the fsync that follows has
// little left to do and a burst of writeback does not stall every other
// fsync on the disk behind one journal commit.
package writeback

import (
	"os"

	"golang.org/x/sys/unix"
)

// Start starts writing f's dirty pages to disk and returns at once
// (sync_file_range with SYNC_FILE_RANGE_WRITE). It is a hint: errors are
// ignored, the fsync that follows reports them.
func Start(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
