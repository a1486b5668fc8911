// Package partition maps group keys to partitions with Lamping & Veach jump
// consistent hashing over the 64-bit xxHash of the key ("jump-xxhash64").
package partition

import "github.com/cespare/xxhash/v2"

// Name is the partitioner name reported by GET /v1/cluster.
const Name = "jump-xxhash64"

// Jump returns the bucket in [0, n) of the 64-bit key (Lamping & Veach,
// "A Fast, Minimal Memory, Consistent Hash Algorithm"). n must be positive.
func Jump(key uint64, n int) int {
	if n <= 0 {
		return -1
	}
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// Of returns the partition of groupKey among n partitions.
func Of(groupKey string, n int) int {
	return Jump(xxhash.Sum64String(groupKey), n)
}
