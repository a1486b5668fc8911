package partition

import (
	"fmt"
	"testing"
	"testing/quick"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// naiveJump is the linear-time form of the same recurrence: walk every bucket
// count from 1 to n and let the key jump with the seeded LCG draw.
func naiveJump(key uint64, n int) int {
	b := 0
	key = key*2862933555777941757 + 1
	next := float64(int64(1)<<31) / float64((key>>33)+1) // next bucket index the key jumps to
	for j := 1; j < n; j++ {
		if int64(j) < int64(next) {
			continue
		}
		b = j
		key = key*2862933555777941757 + 1
		next = float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1))
	}
	return b
}

func TestJumpMatchesNaive(t *testing.T) {
	for key := uint64(0); key < 3000; key++ {
		k := key * 0x9E3779B97F4A7C15
		for _, n := range []int{1, 2, 3, 7, 16, 100} {
			if got, want := Jump(k, n), naiveJump(k, n); got != want {
				t.Fatalf("Jump(%d,%d)=%d naive %d", k, n, got, want)
			}
		}
	}
	if Jump(5, 0) != -1 {
		t.Fatal("n=0 must be -1")
	}
}

// Property: the result is in range, and growing n to n+1 only moves keys to
// the new bucket n (minimal disruption).
func TestJumpProperties(t *testing.T) {
	f := func(key uint64, n uint8) bool {
		nn := int(n)%200 + 1
		a := Jump(key, nn)
		b := Jump(key, nn+1)
		if a < 0 || a >= nn || b < 0 || b > nn {
			return false
		}
		return a == b || b == nn
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Fatal(err)
	}
}

func TestOfBalanced(t *testing.T) {
	const n, keys = 16, 16000
	counts := make([]int, n)
	for i := range keys {
		counts[Of(fmt.Sprintf("k%d", i), n)]++
	}
	for p, c := range counts {
		if c < keys/n/2 || c > keys/n*2 {
			t.Fatalf("partition %d has %d of %d keys: unbalanced %v", p, c, keys, counts)
		}
	}
	if Of("k42", n) != Of("k42", n) {
		t.Fatal("not deterministic")
	}
}
