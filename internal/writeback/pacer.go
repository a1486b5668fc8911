package writeback

import "os"

// Pacer starts a file's writeback once every Every bytes written to it, so
// that a large file reaches the disk in steps instead of all at its fsync.
type Pacer struct {
	F       *os.File
	Every   int
	pending int
}

// Wrote records n bytes written to F and starts its writeback when Every
// bytes have gathered since the last start.
func (p *Pacer) Wrote(n int) {
	if p.pending += n; p.pending >= p.Every {
		p.pending = 0
		Start(p.F)
	}
}
