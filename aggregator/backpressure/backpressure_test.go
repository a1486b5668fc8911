package backpressure

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeyedBucket(t *testing.T) {
	k := NewKeyed(10, 10, 100)
	now := time.Unix(0, 0)
	if ok, _ := k.Allow("s1", 10, now); !ok {
		t.Fatal("burst refused")
	}
	ok, wait := k.Allow("s1", 5, now)
	if ok || wait < 400*time.Millisecond {
		t.Fatalf("over budget admitted: %v %v", ok, wait)
	}
	if ok, _ := k.Allow("s2", 1, now); !ok {
		t.Fatal("keys must be independent")
	}
	if ok, _ := k.Allow("s1", 5, now.Add(time.Second)); !ok {
		t.Fatal("refill")
	}
}

func TestAIMD(t *testing.T) {
	a := NewAIMD(100, 10, 1000, 10*time.Millisecond)
	if !a.Acquire(60) || a.Acquire(60) {
		t.Fatal("limit not enforced")
	}
	now := time.Unix(0, 0)
	a.Release(60, time.Second, true, now) // slow: shrink
	if a.Limit() != 80 {
		t.Fatalf("limit %d", a.Limit())
	}
	for range 100 {
		a.Acquire(10)
		a.Release(10, time.Millisecond, true, now)
	}
	if a.Limit() <= 80 || a.Inflight() != 0 {
		t.Fatalf("limit %d inflight %d", a.Limit(), a.Inflight())
	}
}
