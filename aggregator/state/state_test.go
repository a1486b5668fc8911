package state

import (
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLifecycle(t *testing.T) {
	var v Value
	o, v := Put(v, Processing, "a", 0, 1, "")
	if o != Applied || v.Version != 1 || v.Phase != Processing {
		t.Fatal(o, v)
	}
	if o, _ := Put(v, Processing, "a", 0, 1, ""); o != AlreadyApplied {
		t.Fatalf("re-send must be idempotent: %v", o)
	}
	if o, _ := Put(v, Done, "a", 0, 1, ""); o != VersionMismatch {
		t.Fatalf("stale version: %v", o)
	}
	if o, _ := Put(v, Init, "a", 1, 1, ""); o != IllegalTransition {
		t.Fatalf("PROCESSING→INIT: %v", o)
	}
	o, v = Put(v, Done, "b", 1, 1, "")
	if o != Applied || v.Version != 2 {
		t.Fatal(o, v)
	}
	if o, _ := Put(v, Failed, "b", 2, 1, ""); o != IllegalTransition {
		t.Fatal("DONE→FAILED must be illegal")
	}
	if p, ok := ParsePhase("DONE"); !ok || p != Done || p.String() != "DONE" {
		t.Fatal("names")
	}
}

// Property against a naive model: versions only grow by one per applied
// put, illegal transitions never change the value, and a value's phase
// always follows an allowed edge from the previous one.
func TestPropertyVersionsAndEdges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var v Value
	applied := 0
	for range 10000 {
		to := Phase(1 + r.IntN(4))
		exp := v.Version
		if r.IntN(4) == 0 {
			exp = uint64(r.IntN(int(v.Version) + 2))
		}
		o, nv := Put(v, to, "d", exp, 1, "")
		switch o {
		case Applied:
			if nv.Version != v.Version+1 || !Allowed(max(v.Phase, Init), to) || exp != v.Version {
				t.Fatalf("bad apply %v -> %v", v, nv)
			}
			applied++
		default:
			if nv.Version != v.Version || nv.Phase != max(v.Phase, Init) {
				t.Fatalf("non-applied put changed value: %v -> %v (%v)", v, nv, o)
			}
		}
		v = nv
	}
	if uint64(applied) != v.Version {
		t.Fatalf("applied %d version %d", applied, v.Version)
	}
}
