package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchLedgerSmall(t *testing.T) {
	out, errs, code := cli(t, "ledger", "--single", "5", "--concurrent", "60", "--writers", "6", "--verify-sizes", "40,80", "--proofs", "5", "-o", "json")
	if code != 0 {
		t.Fatalf("bench ledger: exit %d: %s", code, errs)
	}
	var rep benchLedgerReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	want := []string{"durable appends/s, 1 writer", "durable appends/s, 6 writers (batched)", "verify 80 entries (wall / CPU)", "verify --from-scratch 80 entries (wall / CPU)", "inclusion proof at 80 entries (avg of 5)"}
	for _, w := range want {
		found := false
		for _, r := range rep.Rows {
			if r.Metric == w {
				found = true
				if r.Chaosgate == "" || strings.HasPrefix(r.Chaosgate, "error") || strings.HasPrefix(r.Tessera, "error") {
					t.Errorf("%s: %+v", w, r)
				}
			}
		}
		if !found {
			t.Errorf("row %q missing from %+v", w, rep.Rows)
		}
	}
	if rep.Rows[0].Tessera == "-" {
		t.Error("tessera did not run")
	}
}

func TestBenchLedgerBadFlags(t *testing.T) {
	if _, _, code := cli(t, "ledger", "--verify-sizes", "ten"); code != exitUsage {
		t.Fatalf("bad sizes: exit %d", code)
	}
}
