package web

import (
	"context"
	"fmt"

	"github.com/chaosgate/chaosgate/evidence"
)

// anchorView is what the explorer shows about the anchoring of an entry
// or of the whole ledger, from the ledger's local anchors record
// (evidence.AnchorsFile): no request goes to the witness.
type anchorView struct {
	// Anchor is the covering (entry) or latest (ledger) anchor; nil: not
	// anchored yet.
	Anchor *evidence.Anchor
	// Status is "recorded" when the anchored root matches the local tree
	// at the anchored size, else what is wrong.
	Status string
}

// entryAnchor is the first anchor that covers entry i.
func entryAnchor(ctx context.Context, l *evidence.Ledger, i uint64) anchorView {
	as, err := evidence.ReadAnchors(l.Dir())
	if err != nil {
		return anchorView{Status: "unknown: " + err.Error()}
	}
	a, ok := evidence.CoveringAnchor(as, i)
	if !ok {
		return anchorView{Status: "not anchored yet"}
	}
	return checkedAnchor(ctx, l, a)
}

// ledgerAnchor is the latest anchor of the ledger.
func ledgerAnchor(ctx context.Context, l *evidence.Ledger) anchorView {
	as, err := evidence.ReadAnchors(l.Dir())
	if err != nil {
		return anchorView{Status: "unknown: " + err.Error()}
	}
	a, ok := evidence.LatestAnchor(as)
	if !ok {
		return anchorView{Status: "not anchored yet"}
	}
	return checkedAnchor(ctx, l, a)
}

// checkedAnchor compares the anchored root with the local tree at the
// anchored size.
func checkedAnchor(ctx context.Context, l *evidence.Ledger, a evidence.Anchor) anchorView {
	v := anchorView{Anchor: &a, Status: "recorded"}
	switch root, err := l.TreeRoot(ctx, a.TreeSize); {
	case a.Origin != l.Origin():
		v.Status = fmt.Sprintf("FAILED: the anchor is of log %q, this ledger is %q", a.Origin, l.Origin())
	case err != nil:
		v.Status = "FAILED: " + err.Error()
	case root.String() != a.Root:
		v.Status = fmt.Sprintf("FAILED: the local root at tree size %d is %s, the anchored root %s (chaosgate ledger verify --anchors)", a.TreeSize, root, a.Root)
	}
	return v
}
