package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/traceparent"
	"github.com/chaosgate/chaosgate/web"
)

// runBlobNames are the raw evidence blobs every game day binds.
var runBlobNames = []string{gameday.BlobWindows, gameday.BlobVerdicts, "traces-canary.json", "traces-control.json",
	gameday.BlobLogMatches, gameday.BlobMetrics, gameday.BlobFaults, "history-canary.jsonl", "history-control.jsonl"}

// checkRunBlobs checks the raw evidence of the game day recorded at ledger
// index idx in dir: every blob is bound by the signed statement, non-empty
// and well-formed (windows.json is windows/v1 that `chaosgate decide`
// accepts; every trace id is 32 lowercase hex and in a node's request log;
// faults.json has a recovery time per fault that carried load), the
// explorer lists and serves each, the export bundle's verify.py passes,
// and tampering with any blob is named by verify.py and by `chaosgate
// ledger verify`. It returns the blob sizes.
func checkRunBlobs(t *testing.T, bin, dir, runID string, idx uint64) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Entry(ctx, idx)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	env, err := evidence.ParseEnvelope(e.Envelope)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	info, err := l.PublicKeys().VerifyEnvelope(ctx, env)
	if err != nil || info.Predicate == nil {
		l.Close()
		t.Fatalf("entry %d: %v", idx, err)
	}
	refs := map[string]evidence.BlobRef{}
	data := map[string][]byte{}
	sizes := map[string]int64{}
	for _, ref := range info.Predicate.BlobRefs() {
		refs[ref.Name] = ref
		b, err := l.Blobs().Get(ref.Digest)
		if err != nil {
			l.Close()
			t.Fatalf("blob %s: %v", ref.Name, err)
		}
		data[ref.Name] = b
		sizes[ref.Name] = ref.Size
	}
	l.Close()
	for _, name := range runBlobNames {
		if len(data[name]) == 0 || refs[name].Size != int64(len(data[name])) {
			t.Fatalf("the statement binds no non-empty blob %s (blobs: %v)", name, sizes)
		}
		if !slices.Contains(e.Record.Blobs, refs[name].Digest) {
			t.Fatalf("blob %s is not in the entry record's digests", name)
		}
	}
	runDir := filepath.Join(dir, "runs", runID)

	// windows.json: every judged window is windows/v1 that decide accepts.
	var wb gameday.WindowsBlob
	if err := json.Unmarshal(data[gameday.BlobWindows], &wb); err != nil || wb.RunID != runID || len(wb.Steps) < 2 {
		t.Fatalf("windows.json: %v, %d windows of run %q", err, len(wb.Steps), wb.RunID)
	}
	var verdicts []gameday.VerdictLine
	sc := bufio.NewScanner(bytes.NewReader(data[gameday.BlobVerdicts]))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var v gameday.VerdictLine
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil || v.Verdict == nil || len(v.Verdict.Dimensions) == 0 {
			t.Fatalf("verdicts.jsonl line %d: %v %s", len(verdicts)+1, err, sc.Bytes())
		}
		for _, d := range v.Verdict.Dimensions {
			if d.Reason == "" {
				t.Fatalf("verdicts.jsonl: dimension %s has no reason", d.Name)
			}
		}
		verdicts = append(verdicts, v)
	}
	if len(verdicts) != len(wb.Steps) {
		t.Fatalf("%d verdicts for %d windows", len(verdicts), len(wb.Steps))
	}
	for i, st := range wb.Steps {
		in, err := windows.Decode(st.Input)
		if err != nil {
			t.Fatalf("windows.json step %d: not windows/v1: %v", i, err)
		}
		if len(in.History) == 0 || st.HistoryKept != len(in.History) {
			t.Fatalf("windows.json step %d: %d history windows (kept %d)", i, len(in.History), st.HistoryKept)
		}
		f := filepath.Join(t.TempDir(), "windows.json")
		if err := os.WriteFile(f, st.Input, 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, code := runBinary(t, bin, "decide", "--input", f, "-o", "json")
		var dv struct {
			Verdict string `json:"verdict"`
		}
		if code == 2 || json.Unmarshal([]byte(out), &dv) != nil || dv.Verdict == "" {
			t.Fatalf("decide refused windows.json step %d: exit %d\n%s%s", i, code, out, stderr)
		}
		if verdicts[i].Weight != st.Weight || verdicts[i].Window != st.Window {
			t.Fatalf("verdict %d is for %d%% window %d, window for %d%% window %d", i, verdicts[i].Weight, verdicts[i].Window, st.Weight, st.Window)
		}
		// The judge is pure: the window it was given, judged again with
		// the same (default) matrix, gives the same verdict.
		if st.HistoryKept == st.HistoryTotal && dv.Verdict != verdicts[i].Verdict.Decision.String() {
			t.Fatalf("step %d%% window %d: the run judged %s, decide on windows.json says %s", st.Weight, st.Window, verdicts[i].Verdict.Decision, dv.Verdict)
		}
	}

	// traces: 32 lowercase hex ids, each in a node log of its arm.
	for _, arm := range []string{"canary", "control"} {
		var tb gameday.TracesBlob
		if err := json.Unmarshal(data["traces-"+arm+".json"], &tb); err != nil || tb.Arm != arm || len(tb.Sample) == 0 || len(tb.Sample) > 100 || tb.Requests < int64(len(tb.Sample)) {
			t.Fatalf("traces-%s.json: %v, arm %q, %d of %d", arm, err, tb.Arm, len(tb.Sample), tb.Requests)
		}
		var logs bytes.Buffer
		err := filepath.WalkDir(filepath.Join(runDir, arm), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "node.log" {
				b, err := os.ReadFile(p)
				logs.Write(b)
				return err
			}
			return err
		})
		if err != nil || logs.Len() == 0 {
			t.Fatalf("node logs of %s: %v", arm, err)
		}
		// A trace id found in a node's log leads back to the run's entry.
		out, e, code := runBinary(t, bin, "ledger", "search", "--trace-id", tb.Sample[0].TraceID, "-o", "json", "--ledger", filepath.Join(dir, "ledger"), "--keys", filepath.Join(dir, "keys"))
		if code != 0 || !strings.Contains(out, `"run_id": "`+runID+`"`) && !strings.Contains(out, `"run_id":"`+runID+`"`) {
			t.Fatalf("ledger search --trace-id %s: exit %d, run %s not found\n%s%s", tb.Sample[0].TraceID, code, runID, out, e)
		}
		// A node killed by a fault right after answering may not have
		// written its request line: nearly all, not all, are found.
		missing := 0
		for _, r := range tb.Sample {
			if !traceparent.ValidTraceID(r.TraceID) {
				t.Fatalf("traces-%s.json: trace id %q is not 32 lowercase hex", arm, r.TraceID)
			}
			if !bytes.Contains(logs.Bytes(), []byte("trace_id="+r.TraceID)) {
				missing++
				t.Logf("trace id %s (%s %s at %s, HTTP %d) is in no node log of %s", r.TraceID, r.Method, r.Addr, r.T, r.Status, arm)
			}
		}
		if missing > len(tb.Sample)/20 {
			t.Fatalf("%d of %d sampled trace ids of %s are in no node log", missing, len(tb.Sample), arm)
		}
	}

	// log-matches.jsonl: a header naming the guards, then matched lines.
	lines := bytes.Split(bytes.TrimSpace(data[gameday.BlobLogMatches]), []byte("\n"))
	var lh gameday.LogMatchesHeader
	if err := json.Unmarshal(lines[0], &lh); err != nil || len(lh.Guards) == 0 || lh.Kept != len(lines)-1 || lh.Kept > gameday.MaxLogMatches {
		t.Fatalf("log-matches.jsonl header: %v %s (%d lines)", err, lines[0], len(lines))
	}
	for _, ln := range lines[1:] {
		var m gameday.LogMatchLine
		if err := json.Unmarshal(ln, &m); err != nil || m.Node == "" || m.Guard == "" || m.T.IsZero() {
			t.Fatalf("log-matches.jsonl: %v %s", err, ln)
		}
	}

	// metrics.json: scrapes of every node and load chunks, per arm.
	var mb gameday.MetricsBlob
	if err := json.Unmarshal(data[gameday.BlobMetrics], &mb); err != nil || mb.Source != "embedded" || len(mb.Dimensions) == 0 {
		t.Fatalf("metrics.json: %v %+v", err, mb.Dimensions)
	}
	for _, arm := range []string{"canary", "control"} {
		a := mb.Arms[arm]
		if len(a.Scrapes) != 3 || len(a.Chunks) == 0 {
			t.Fatalf("metrics.json %s: scrapes of %d nodes, %d chunks", arm, len(a.Scrapes), len(a.Chunks))
		}
		for node, ss := range a.Scrapes {
			if len(ss) == 0 || len(ss) > gameday.MaxScrapesPerNode || ss[len(ss)-1].HTTPTotal <= 0 {
				t.Fatalf("metrics.json %s/%s: %d scrapes", arm, node, len(ss))
			}
		}
	}

	// faults.json: a recovery time per fault that carried measured load.
	var fb gameday.FaultsBlob
	if err := json.Unmarshal(data[gameday.BlobFaults], &fb); err != nil || len(fb.Faults) == 0 || len(fb.Resilience) == 0 {
		t.Fatalf("faults.json: %v, %d faults, %d resilience rows", err, len(fb.Faults), len(fb.Resilience))
	}
	unrecovered := map[string]int{}
	for _, k := range fb.Resilience {
		unrecovered[k.Kind+"/"+k.Arm] = k.Unrecovered
	}
	timed := map[string]bool{}
	for _, f := range fb.Faults {
		if !f.Applied || !f.Recovered || f.DurationS == nil || f.Confirmed == "" {
			t.Fatalf("faults.json: %s on %s/%s not applied, confirmed and removed: %+v", f.Kind, f.Arm, f.Target, f)
		}
		if f.Arm == "calibration" {
			continue
		}
		if f.Availability == nil {
			t.Fatalf("faults.json: %s on %s/%s has no availability", f.Kind, f.Arm, f.Target)
		}
		if f.RecoveryS == nil {
			// Not seen recovering within the run: counted as such.
			if unrecovered[f.Kind+"/"+f.Arm] == 0 {
				t.Fatalf("faults.json: %s on %s/%s has no recovery time and is not counted unrecovered", f.Kind, f.Arm, f.Target)
			}
			continue
		}
		timed[f.Kind+"/"+f.Arm] = true
	}
	// The game day's network and process faults recover within the run.
	for _, k := range []string{"podKill", "networkDelay", "partition", "splitBrain"} {
		for _, arm := range []string{"canary", "control"} {
			if !timed[k+"/"+arm] {
				t.Fatalf("faults.json: no recovery time for %s on %s", k, arm)
			}
		}
	}

	checkExplorerBlobs(t, dir, idx, refs, data)
	checkBlobTampering(t, bin, dir, refs)
	return sizes
}

// checkExplorerBlobs: the entry page of the block explorer links every
// blob, and each link serves its bytes with its media type.
func checkExplorerBlobs(t *testing.T, dir string, idx uint64, refs map[string]evidence.BlobRef, data map[string][]byte) {
	t.Helper()
	const token = "0123456789abcdef-auditor"
	tokens, err := web.ParseTokens([]byte(`tokens: [{name: audit, role: auditor, token: "`+token+`"}]`), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(web.Options{DataDir: dir, Tokens: tokens, Run: func(context.Context, web.RunRequest, *web.Live) (*web.RunResult, error) {
		return nil, errors.New("no runs here")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(path string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, page := get(fmt.Sprintf("/explorer/entries/%d", idx))
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`id="blob-faults"`)) || !bytes.Contains(page, []byte(`class="trace-ids"`)) {
		t.Fatalf("entry page: %d\n%s", resp.StatusCode, page)
	}
	for _, name := range runBlobNames {
		ref := refs[name]
		link := fmt.Sprintf("/explorer/entries/%d/blobs/sha256/%s", idx, ref.Digest.Hex())
		if !bytes.Contains(page, []byte(`href="`+link+`"`)) || !bytes.Contains(page, []byte(`data-blob="`+name+`"`)) {
			t.Fatalf("the entry page does not link blob %s", name)
		}
		resp, body := get(link)
		if resp.StatusCode != 200 || !bytes.Equal(body, data[name]) || resp.Header.Get("Content-Type") != ref.MediaType {
			t.Fatalf("GET %s: %d, %q, %d bytes", link, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}

// checkBlobTampering exports the ledger, runs the bundle's verify.py, and
// then for every blob changes it in a copy of the bundle and in a copy of
// the data dir: verify.py and `chaosgate ledger verify` must fail naming
// it. A blob deleted from the data dir is named too.
func checkBlobTampering(t *testing.T, bin, dir string, refs map[string]evidence.BlobRef) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("python3 not found: verify.py not run")
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if _, e, c := runBinary(t, bin, "ledger", "export", "--dir", bundle, "--ledger", filepath.Join(dir, "ledger"), "--keys", filepath.Join(dir, "keys")); c != 0 {
		t.Fatalf("ledger export: exit %d\n%s", c, e)
	}
	for _, ref := range refs {
		if _, err := os.Stat(filepath.Join(bundle, "blobs", "sha256", ref.Digest.Hex())); err != nil {
			t.Fatalf("the export has no blob %s: %v", ref.Name, err)
		}
	}
	if py != "" {
		if out, err := exec.Command(py, filepath.Join(bundle, "verify.py"), bundle).CombinedOutput(); err != nil || !strings.Contains(string(out), "\nOK") {
			t.Fatalf("verify.py on the export: %v\n%s", err, out)
		}
	}
	// A copy of the ledger (bbolt file, blobs and keys) to tamper with.
	copyDir := func(src, dst string) {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o700)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	copyDir(filepath.Join(dir, "ledger"), filepath.Join(data, "ledger"))
	copyDir(filepath.Join(dir, "keys"), filepath.Join(data, "keys"))
	os.Chmod(filepath.Join(data, "keys"), 0o700)
	ledgerVerify := func() (string, int) {
		_, e, c := runBinary(t, bin, "ledger", "verify", "--ledger", filepath.Join(data, "ledger"), "--keys", filepath.Join(data, "keys"))
		return e, c
	}
	blobFile := func(d evidence.Digest) string {
		// Stored compressed (name.zst) when that shrinks it by an eighth.
		p := filepath.Join(data, "ledger", "blobs", "sha256", d.Hex()[:2], d.Hex())
		if _, err := os.Stat(p); err != nil {
			p += ".zst"
		}
		return p
	}
	if _, err := os.Stat(blobFile(refs[gameday.BlobFaults].Digest)); err != nil {
		t.Fatalf("blob store layout: %v", err)
	}
	for _, name := range runBlobNames {
		ref := refs[name]
		want := fmt.Sprintf("blob %s (%s)", name, ref.Digest)
		// The export.
		if py != "" {
			p := filepath.Join(bundle, "blobs", "sha256", ref.Digest.Hex())
			orig, _ := os.ReadFile(p)
			os.WriteFile(p, append(append([]byte(nil), orig...), ' '), 0o644)
			out, err := exec.Command(py, filepath.Join(bundle, "verify.py"), bundle).CombinedOutput()
			os.WriteFile(p, orig, 0o644)
			if err == nil || !strings.Contains(string(out), "FAILED: "+want+": content does not match its digest") {
				t.Fatalf("verify.py missed a tampered %s: %v\n%s", name, err, out)
			}
		}
		// The data dir.
		p := blobFile(ref.Digest)
		orig, _ := os.ReadFile(p)
		c := append([]byte(nil), orig...)
		c[len(c)/2] ^= 0x01
		os.WriteFile(p, c, 0o600)
		e, code := ledgerVerify()
		os.WriteFile(p, orig, 0o600)
		if code != 1 || !strings.Contains(e, want) || !strings.Contains(e, "content does not match its digest") {
			t.Fatalf("ledger verify missed a tampered %s: exit %d\n%s", name, code, e)
		}
	}
	p := blobFile(refs[gameday.BlobFaults].Digest)
	orig, _ := os.ReadFile(p)
	os.Remove(p)
	e, code := ledgerVerify()
	os.WriteFile(p, orig, 0o600)
	if code != 1 || !strings.Contains(e, "blob faults.json (") || !strings.Contains(e, "missing from the blob store") {
		t.Fatalf("ledger verify missed a deleted faults.json: exit %d\n%s", code, e)
	}
	if e, code := ledgerVerify(); code != 0 {
		t.Fatalf("ledger verify after restoring every blob: exit %d\n%s", code, e)
	}
}
