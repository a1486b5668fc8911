package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

// The entry page lists every blob the signed statement binds (name, media
// type, size, digest, link), renders the fault table with recovery times
// and the trace ids, and serves each blob with the media type of its
// reference; a blob that is missing, unreferenced or misnamed is the
// styled not-found page, and a blob that never renders as a page.
func TestExplorerListsAndServesBlobs(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, scripted(nil), nil)
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, inPlace := 1.5, 2.0
	applied := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	removed := applied.Add(2 * time.Second)
	faults, _ := json.Marshal(gameday.FaultsBlob{Faults: []gameday.FaultLine{{Kind: "podKill", Arm: "canary", Target: "n2", Applied: true, AppliedAt: applied,
		Confirmed: "confirmed", Recovered: true, RecoveredAt: &removed, DurationS: &inPlace, RecoveryS: &rec, Availability: &report.FaultAvailability{Requests: 300, Timeouts: 4, Retries: 9, RecoveryS: &rec}}},
		Resilience: []report.KindResilience{{Kind: "podKill", Arm: "canary", Faults: 1, MeanRecoveryS: 1.5, MaxRecoveryS: 1.5}}})
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	traces, _ := json.Marshal(gameday.TracesBlob{Arm: "canary", Traces: load.Traces{Requests: 10, Every: 1,
		Sample: []load.TracedRequest{{TraceID: tid, T: applied, Addr: "127.0.0.1:1", Method: "POST", Path: "/v1/messages", Status: 200, Messages: 1}}}})
	var refs []evidence.BlobRef
	for _, b := range []struct{ name, media, data string }{
		{gameday.BlobFaults, "application/json", string(faults)},
		{"traces-canary.json", "application/json", string(traces)},
		{"page.html", "text/html", "<script>alert(1)</script>"},
		{"gone.jsonl", "application/jsonl", "{}\n"},
	} {
		ref, err := l.PutBlob(b.name, b.media, []byte(b.data))
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	rc, err := l.Record(ctx, "sha256:"+strings.Repeat("3c", 32), &evidence.Predicate{RunID: "blobs", Experiment: evidence.Experiment{Name: "blobs"}, Blobs: refs,
		Decision: &evidence.Decision{Verdict: "promote"}})
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Blobs().File(refs[3].Digest)
	l.Close()
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	i := rc.Index
	code, body := h.do(RoleAuditor, "GET", fmt.Sprintf("/explorer/entries/%d", i), "")
	page := string(body)
	if code != 200 {
		t.Fatalf("entry page: %d %s", code, body)
	}
	for _, r := range refs {
		for _, want := range []string{`data-blob="` + r.Name + `"`, r.MediaType, fmt.Sprintf("%d B", r.Size), string(r.Digest)} {
			if !strings.Contains(page, want) {
				t.Fatalf("entry page does not list %q of blob %s:\n%s", want, r.Name, page)
			}
		}
		if r.Name != "gone.jsonl" && !strings.Contains(page, `href="`+blobURL(i, r.Digest)+`"`) {
			t.Fatalf("no link to blob %s", r.Name)
		}
	}
	if !strings.Contains(page, "gone.jsonl <span class=\"err\">(missing from the blob store)") {
		t.Fatalf("a missing blob is not marked:\n%s", page)
	}
	if !strings.Contains(page, `id="blob-faults"`) || !strings.Contains(page, "<td>1.5 s</td>") || !strings.Contains(page, "<td>2.0 s</td>") || !strings.Contains(page, `id="blob-resilience"`) {
		t.Fatalf("fault table with recovery times not rendered:\n%s", page)
	}
	if !strings.Contains(page, tid) || !strings.Contains(page, "1 of 10 requests") {
		t.Fatalf("trace ids not rendered:\n%s", page)
	}
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", h.hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+roleTokens[RoleAuditor])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, got := get(blobURL(i, refs[0].Digest))
	if resp.StatusCode != 200 || got != string(faults) || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("faults.json: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	if resp, _ := get(blobURL(i, refs[0].Digest) + "?download=1"); !strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="faults.json"`) {
		t.Fatalf("download disposition %q", resp.Header.Get("Content-Disposition"))
	}
	if resp, _ := get(blobURL(i, refs[2].Digest)); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("a text/html blob is served as %q", resp.Header.Get("Content-Type"))
	}
	for _, c := range []struct{ path, want string }{
		{blobURL(i, refs[3].Digest), "gone.jsonl"},
		{blobURL(i, evidence.DigestOf([]byte("not referenced"))), "references no blob"},
		{fmt.Sprintf("/explorer/entries/%d/blobs/sha256/XYZ", i), "64 lowercase hex"},
		{blobURL(i+7, refs[0].Digest), "No ledger entry"},
	} {
		resp, body := get(c.path)
		if resp.StatusCode != 404 || !strings.Contains(body, `id="not-found"`) || !strings.Contains(body, c.want) {
			t.Fatalf("GET %s: %d, want the styled 404 naming %q:\n%s", c.path, resp.StatusCode, c.want, body)
		}
	}
	if code, _ := h.do(RoleViewer, "GET", blobURL(i, refs[0].Digest), ""); code != 403 {
		t.Fatalf("a viewer reads a blob: %d", code)
	}
}
