// Package waitctx waits for a duration unless a context ends first: the
// one "sleep, but give up when cancelled" that retry loops, pacing and
// settling waits across chaosgate share.
package waitctx

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done; it returns ctx.Err() in that case
// (and at once when d <= 0 and ctx is already done), nil otherwise.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
