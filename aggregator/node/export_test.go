package node

import "github.com/chaosgate/chaosgate/aggregator/partition"

func partitionOf(key string, n int) int { return partition.Of(key, n) }
