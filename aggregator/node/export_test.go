package node

import (
	"errors"

	"github.com/chaosgate/chaosgate/aggregator/hlc"
	"github.com/chaosgate/chaosgate/aggregator/partition"
)

func partitionOf(key string, n int) int { return partition.Of(key, n) }

func asInput(err error, target **InputError) bool { return errors.As(err, target) }

func hlcLess(a, b string) bool {
	ta, _ := hlc.Parse(a)
	tb, _ := hlc.Parse(b)
	return ta.Less(tb)
}
