package evidence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/chaosgate/chaosgate/evidence"
)

// The engine's view: open the embedded default under a data dir (keys are
// created on first use), store raw material as blobs, record a run.
func ExampleOpenDataDir() {
	ctx := context.Background()
	dataDir, _ := os.MkdirTemp("", "chaosgate-example-")
	defer os.RemoveAll(dataDir)

	l, err := evidence.OpenDataDir(ctx, dataDir, evidence.SystemClock{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	samples, _ := l.PutBlob("canary latency samples", "application/json", []byte(`[12.5,13.1,40.2]`))
	receipt, err := l.Record(ctx, "sha256:"+fmt.Sprintf("%064x", 42), &evidence.Predicate{
		RunID:      "run-1",
		Experiment: evidence.Experiment{Name: "default-gameday", Kind: "gameday"},
		Injections: []evidence.Injection{{Kind: "podKill", Arm: "canary", Target: "n2", Confirmed: "confirmed"}},
		Decision:   &evidence.Decision{Verdict: "promote", Score: 0.97, Coverage: 0.92},
		Blobs:      []evidence.BlobRef{samples},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ref, _ := json.Marshal(struct {
		LedgerIndex uint64 `json:"ledger_index"`
		TreeSize    uint64 `json:"tree_size"`
		SHA256Len   int    `json:"envelope_sha256_hex_len"`
	}{receipt.Ref().LedgerIndex, receipt.Ref().TreeSize, len(receipt.Ref().EnvelopeSHA256)})
	fmt.Println(string(ref))
	rep, err := l.Verify(ctx, true)
	fmt.Println(rep.OK, rep.Blobs, err)
	// Output:
	// {"ledger_index":0,"tree_size":1,"envelope_sha256_hex_len":64}
	// true 1 <nil>
}
