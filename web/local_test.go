package web

import "testing"

// TestSubjectOfAnUploadAnswersNoGate: a run of a reviewed file on a target
// records the workload's revision and keys; an uploaded document keeps its
// upload:<run id> subject and no gate key, on every target.
func TestSubjectOfAnUploadAnswersNoGate(t *testing.T) {
	tgt := RunTarget{Revision: "StatefulSet/shop/cart-canary@sha256:ab", GateKeys: []string{"sha256:ab", "v1.2.3"}}
	if rev, keys := subjectOf(RunRequest{ID: "serve-1", Revision: "v1.2.3"}, tgt); rev != tgt.Revision || len(keys) != 2 {
		t.Errorf("reviewed file: %q %v", rev, keys)
	}
	if rev, keys := subjectOf(RunRequest{ID: "serve-2", Revision: "upload:serve-2", Upload: true}, tgt); rev != "upload:serve-2" || keys != nil {
		t.Errorf("upload: %q %v, want upload:serve-2 and no gate key", rev, keys)
	}
	if rev, _ := subjectOf(RunRequest{Revision: "r"}, RunTarget{}); rev != "r" {
		t.Errorf("target without a revision: %q", rev)
	}
}
