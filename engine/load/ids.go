package load

import (
	"sync"

	"github.com/bwmarrin/snowflake"
	"github.com/cespare/xxhash/v2"
)

// JumpHash is Lamping & Veach's jump consistent hash of key into buckets.
func JumpHash(key uint64, buckets int) int {
	var b, j int64 = -1, 0
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// Partition is the aggregator's partitioner (API.md): jump(xxhash64(key), P).
func Partition(groupKey string, partitions int) int {
	return JumpHash(xxhash.Sum64String(groupKey), partitions)
}

// IDGen assigns snowflake msg_ids. snowflake persists nothing and a wall
// clock stepped back could repeat ids; IDGen never hands out an id that is
// not greater than the previous one.
type IDGen struct {
	mu   sync.Mutex
	node *snowflake.Node
	last int64
}

// NewIDGen returns a generator for snowflake node number node (0..1023).
func NewIDGen(node int64) (*IDGen, error) {
	n, err := snowflake.NewNode(node & 1023)
	if err != nil {
		return nil, err
	}
	return &IDGen{node: n}, nil
}

// Next returns the next id as a decimal string.
func (g *IDGen) Next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := g.node.Generate().Int64()
	if id <= g.last {
		id = g.last + 1
	}
	g.last = id
	return snowflake.ID(id).String()
}
