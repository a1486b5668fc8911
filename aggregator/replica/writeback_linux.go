//go:build linux && (amd64 || arm64)

package replica

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start writing the dirty
// pages of the range, without waiting for them.
const syncFileRangeWrite = 2

// startWriteback starts writing f's dirty pages to disk and returns at
// once. It is a hint: errors are ignored (the fsync that follows reports
// them).
func startWriteback(f *os.File) {
	_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), 0, 0, syncFileRangeWrite, 0, 0)
}
