package web

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

// send makes one request with the given headers and returns the status,
// the Location header and the body.
func (h *harness) send(method, path, body string, hdr map[string]string) (int, string, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.hs.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), data
}

// TestAuthorizationMatrix: every route, for every role, with the token as
// a bearer header and as the login cookie, from the server's own origin
// and from another origin (as a browser marks them: Sec-Fetch-Site and
// Origin). A request that changes something is refused from another
// origin whatever it carries; the cookie never authorizes an API request
// that changes something; otherwise the role decides.
func TestAuthorizationMatrix(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	recordEvidence(t, h.dir, "sha256:"+strings.Repeat("ab", 32), "pod-kill", "promote", "trace-1")
	const public Role = -1
	type route struct {
		method, path, ctype, body string
		need                      Role
	}
	form := "application/x-www-form-urlencoded"
	js := "application/json"
	routes := []route{
		{"GET", "/livez", "", "", public},
		{"GET", "/readyz", "", "", public},
		{"GET", "/metrics", "", "", public},
		{"GET", "/static/app.js", "", "", public},
		{"GET", "/login", "", "", public},
		{"POST", "/login", form, "token=nope", public},
		{"POST", "/logout", form, "", public},
		{"GET", "/api/v1/runs", "", "", RoleViewer},
		{"POST", "/api/v1/runs", js, `{"bogus":1}`, RoleOperator},
		{"GET", "/api/v1/runs/none", "", "", RoleViewer},
		{"GET", "/api/v1/runs/none/events", "", "", RoleViewer},
		{"POST", "/api/v1/abort", "", "", RoleOperator},
		{"GET", "/api/v1/schedules", "", "", RoleViewer},
		{"POST", "/api/v1/schedules", js, `{}`, RoleOperator},
		{"DELETE", "/api/v1/schedules/none", "", "", RoleOperator},
		{"GET", "/api/v1/decision", "", "", RoleViewer},
		{"GET", "/api/v1/scenarios", "", "", RoleViewer},
		{"GET", "/api/v1/gate/rev", "", "", RoleViewer},
		{"POST", "/api/v1/gate/flagger/confirm-promotion", js, `{"name":"web"}`, RoleViewer},
		{"POST", "/api/v1/gate/flagger/pre-rollout", js, `{"name":"web"}`, RoleViewer},
		{"POST", "/api/v1/gate/flagger/rollback", js, `{"name":"web"}`, RoleViewer},
		{"GET", "/api/v1/ledger/checkpoint", "", "", RoleAuditor},
		{"GET", "/api/v1/ledger/entries/0", "", "", RoleAuditor},
		{"GET", "/", "", "", RoleViewer},
		{"GET", "/runs/none", "", "", RoleViewer},
		{"POST", "/ui/abort", form, "", RoleOperator},
		{"POST", "/ui/runs", form, "scenario=", RoleOperator},
		{"POST", "/ui/schedules", form, "name=x", RoleOperator},
		{"POST", "/ui/schedules/x/delete", form, "", RoleOperator},
		{"GET", "/explorer", "", "", RoleAuditor},
		{"GET", "/explorer/entries/0", "", "", RoleAuditor},
	}
	other := "http://127.0.0.1:1" // another port of the same host: same site, another origin
	cells := 0
	for _, rt := range routes {
		safe := rt.method == "GET"
		for _, role := range []Role{0, RoleViewer, RoleOperator, RoleAuditor} {
			for _, cookie := range []bool{false, true} {
				for _, cross := range []bool{false, true} {
					hdr := map[string]string{}
					if rt.ctype != "" {
						hdr["Content-Type"] = rt.ctype
					}
					if cross {
						hdr["Sec-Fetch-Site"], hdr["Origin"] = "same-site", other
					} else {
						hdr["Sec-Fetch-Site"], hdr["Origin"] = "same-origin", h.hs.URL
					}
					if safe {
						delete(hdr, "Origin")
					}
					if role != 0 {
						if cookie {
							hdr["Cookie"] = tokenCookie + "=" + roleTokens[role]
						} else {
							hdr["Authorization"] = "Bearer " + roleTokens[role]
						}
					}
					var want int // 0: allowed
					switch {
					case !safe && cross:
						want = 403
					case rt.need == public:
					case role == 0:
						want = 401
					case cookie && !safe && strings.HasPrefix(rt.path, "/api/"):
						want = 401
					case !role.allows(rt.need):
						want = 403
					}
					code, _, body := h.send(rt.method, rt.path, rt.body, hdr)
					cells++
					what := fmt.Sprintf("%s %s as %v (cookie %v, cross-origin %v)", rt.method, rt.path, role, cookie, cross)
					switch {
					case want == 0 && (code == 401 || code == 403 || code >= 500):
						t.Errorf("%s: %d, want allowed: %s", what, code, body)
					case want != 0 && code != want:
						t.Errorf("%s: %d, want %d: %s", what, code, want, body)
					}
					if code == 401 || code == 403 {
						var e APIError
						if json.Unmarshal(body, &e) != nil || e.Error == "" || e.Detail == "" {
							t.Errorf("%s: error body is not the JSON error: %s", what, body)
						}
					}
				}
			}
		}
	}
	if cells != len(routes)*16 {
		t.Fatalf("%d cells", cells)
	}
	// No kill switch went off from another origin, or with a cookie
	// through the API.
	_, _, body := h.send("GET", "/metrics", "", nil)
	for _, bad := range []string{`route="POST /api/v1/abort"} 200`, `code="200",route="POST /api/v1/abort"} 16`} {
		if strings.Contains(string(body), bad) {
			t.Fatalf("metrics: %s", bad)
		}
	}
}

// TestCrossOriginCookieAbortRefused: the login cookie alone, sent by a
// browser on a page of another origin, cannot pull the kill switch or
// start a run.
func TestCrossOriginCookieAbortRefused(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	cookie := tokenCookie + "=" + roleTokens[RoleOperator]
	for _, tc := range []struct{ path, ctype, body string }{
		{"/api/v1/abort?reason=csrf", "text/plain", ""},
		{"/api/v1/runs", "text/plain", `{"scenario":"pod-kill","revision":"promote-csrf"}`},
		{"/ui/abort", "application/x-www-form-urlencoded", ""},
		{"/ui/runs", "application/x-www-form-urlencoded", "scenario=pod-kill&revision=promote-csrf"},
	} {
		for _, site := range []string{"same-site", "cross-site"} {
			code, _, body := h.send("POST", tc.path, tc.body, map[string]string{"Cookie": cookie, "Content-Type": tc.ctype, "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": site})
			if code != 403 {
				t.Errorf("%s from a %s page: %d %s", tc.path, site, code, body)
			}
		}
		// Without the browser's headers (an old browser): the cookie does
		// not authorize API writes, and a text/plain body is no JSON.
		code, _, body := h.send("POST", tc.path, tc.body, map[string]string{"Cookie": cookie, "Content-Type": tc.ctype})
		if strings.HasPrefix(tc.path, "/api/") && code != 401 {
			t.Errorf("%s with the cookie alone: %d %s", tc.path, code, body)
		}
	}
	if recs, _ := h.srv.runs.list(); len(recs) > 1 {
		t.Fatalf("runs started: %d", len(recs))
	}
	code, _, body := h.send("POST", "/api/v1/runs", `{"scenario":"pod-kill","revision":"promote-x"}`, map[string]string{"Authorization": "Bearer " + roleTokens[RoleOperator], "Content-Type": "text/plain"})
	if code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain JSON: %d %s", code, body)
	}
}

// TestSafeNextRefusesOpenRedirects: the page after login stays on this
// server for every spelling a browser would read as another host.
func TestSafeNextRefusesOpenRedirects(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	for _, next := range []string{"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example", "/\\evil.example", "\\\\evil.example",
		"https://evil.example", "/%0a/evil.example\x00", " /evil", "/\u3000/evil.example", "/\x7f/evil.example", "http:/evil.example", "/\v/evil.example", "/\f/evil.example"} {
		if got := safeNext(next); got != "/" {
			t.Errorf("safeNext(%q) = %q", next, got)
		}
		code, loc, _ := h.send("POST", "/login", url.Values{"token": {roleTokens[RoleViewer]}, "next": {next}}.Encode(),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if code != http.StatusSeeOther || loc != "/" {
			t.Errorf("login with next=%q: %d to %q", next, code, loc)
		}
	}
	for _, next := range []string{"/", "/runs/serve-1", "/explorer?revision=sha256%3Aab&x=1#top"} {
		if got := safeNext(next); got != next {
			t.Errorf("safeNext(%q) = %q", next, got)
		}
	}
}

// FuzzSafeNext: whatever next is, the redirect after login resolves to this
// server, also after a browser drops tabs and newlines and reads
// backslashes as slashes.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/runs/x", "/\t/evil", "//evil", "/\\evil", "/%2F%2Fevil", "/.//evil", "/x?next=//evil", "https://evil", "/\u2028/evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://chaosgate.test/login")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got != "/" && got != next {
			t.Fatalf("safeNext(%q) = %q: rewritten", next, got)
		}
		rec := httptest.NewRecorder()
		http.Redirect(rec, httptest.NewRequest("POST", "/login", nil), got, http.StatusSeeOther)
		loc := rec.Header().Get("Location")
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(loc)
		u, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("%q: Location %q does not parse: %v", next, loc, err)
		}
		if r := base.ResolveReference(u); r.Host != "chaosgate.test" || r.Scheme != "https" {
			t.Fatalf("next %q redirects to %s", next, r)
		}
	})
}

// bulkEvidence appends n signed evidence records for revision to the
// ledger in dir with 32 concurrent writers (group commit), verdict(i)
// deciding each; it returns the last index.
func bulkEvidence(t *testing.T, dir string, n int, revision string, verdict func(i int) string) {
	t.Helper()
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := &evidence.Predicate{RunID: fmt.Sprintf("bulk-%d", i), Experiment: evidence.Experiment{Name: "pod-kill", Kind: "experiment"},
					Decision: &evidence.Decision{Verdict: verdict(i), Score: 0.99, Coverage: 0.9}}
				if _, err := l.Record(ctx, revision, p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// gateBoth asks both gate endpoints about rev: the Argo answer's verdict
// (or error kind) and Flagger's confirm-promotion and rollback codes.
func gateBoth(h *harness, rev string) (argo string, confirm, rollback int) {
	h.t.Helper()
	code, body := h.do(RoleViewer, "GET", "/api/v1/gate/"+rev, "")
	var a GateAnswer
	var e APIError
	switch {
	case code == 200 && json.Unmarshal(body, &a) == nil:
		argo = a.Verdict
	case json.Unmarshal(body, &e) == nil:
		argo = fmt.Sprintf("%d %s", code, e.Error)
	}
	payload := fmt.Sprintf(`{"name":"web","namespace":"demo","phase":"Progressing","metadata":{"revision":%q}}`, rev)
	confirm, _ = h.do(RoleViewer, "POST", "/api/v1/gate/flagger/confirm-promotion", payload)
	rollback, _ = h.do(RoleViewer, "POST", "/api/v1/gate/flagger/rollback", payload)
	return argo, confirm, rollback
}

// TestGateNewestOf5000: a revision with 5,000 evidence entries whose newest
// is a block: both gate endpoints say block, also after the revision
// index loses or changes the newest entry's key.
func TestGateNewestOf5000(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("5a", 32)
	bulkEvidence(t, dir, 4999, rev, func(i int) string {
		if i%10 == 3 {
			return "hold"
		}
		return "promote"
	})
	last := recordEvidence(t, dir, rev, "pod-kill", "block", "trace-last")
	if last != 4999 {
		t.Fatalf("last index %d", last)
	}
	h := newHarness(t, dir, scripted(nil), nil)
	start := time.Now()
	argo, confirm, rollback := gateBoth(h, rev)
	t.Logf("5,000 entries: both gate endpoints answered in %s", time.Since(start))
	if argo != "block" || confirm != 412 || rollback != 200 {
		t.Fatalf("gate over 5,000 entries: argo %q, confirm-promotion %d, rollback %d", argo, confirm, rollback)
	}
	h.close()
	// The newest entry's index keys deleted, then edited: still block.
	ledgerDB := filepath.Join(dir, evidence.LedgerSubdir, evidence.DBFile)
	key := append(append([]byte(rev), 0), binary.BigEndian.AppendUint64(nil, last)...)
	for _, edit := range []bool{false, true} {
		mutate(t, ledgerDB, func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("ix_revision"))
			if err := b.Delete(key); err != nil {
				return err
			}
			if edit {
				k := append(append([]byte(rev), 0), binary.BigEndian.AppendUint64(nil, 17)...)
				return b.Put(append(k[:len(k)-8:len(k)-8], binary.BigEndian.AppendUint64(nil, 4999+1000)...), nil)
			}
			return nil
		})
		h := newHarness(t, dir, scripted(nil), nil)
		if argo, confirm, rollback := gateBoth(h, rev); argo != "block" || confirm != 412 || rollback != 200 {
			t.Fatalf("index key of the block gone (edit %v): argo %q, confirm-promotion %d, rollback %d", edit, argo, confirm, rollback)
		}
		h.close()
	}
}

func mutate(t *testing.T, dbPath string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestGateIgnoresEveryIndexKey: in a ledger whose newest entry for the
// revision is a block, deleting or editing any one index key never makes
// the gate answer promote.
func TestGateIgnoresEveryIndexKey(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("7b", 32)
	for i := 0; i < 4; i++ {
		recordEvidence(t, dir, rev, "pod-kill", "promote", fmt.Sprintf("t-%d", i))
	}
	recordEvidence(t, dir, "other", "pod-kill", "promote", "t-o")
	recordEvidence(t, dir, rev, "split-brain", "block", "t-b")
	ledgerDB := filepath.Join(dir, evidence.LedgerSubdir, evidence.DBFile)
	orig, err := os.ReadFile(ledgerDB)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][2]string
	db, err := bolt.Open(ledgerDB, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"ix_revision", "ix_experiment", "ix_trace", "ix_time"} {
			tx.Bucket([]byte(b)).ForEach(func(k, _ []byte) error { keys = append(keys, [2]string{b, string(k)}); return nil })
		}
		return nil
	})
	db.Close()
	// Six entries: a revision, an experiment and a time key each, and the
	// trace index's one batch.
	if len(keys) < 19 {
		t.Fatalf("%d index keys", len(keys))
	}
	for _, kv := range keys {
		for _, edit := range []bool{false, true} {
			if err := os.WriteFile(ledgerDB, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			mutate(t, ledgerDB, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte(kv[0]))
				if err := b.Delete([]byte(kv[1])); err != nil {
					return err
				}
				if edit {
					k := []byte(kv[1])
					k[len(k)-1] ^= 0x05 // the key now names another entry
					return b.Put(k, nil)
				}
				return nil
			})
			h := newHarness(t, dir, scripted(nil), nil)
			argo, confirm, _ := gateBoth(h, rev)
			h.close()
			if argo == "promote" || confirm == 200 {
				t.Fatalf("%s key %q (edit %v): the gate answered promote (%q, %d)", kv[0], kv[1], edit, argo, confirm)
			}
		}
	}
}

// TestGateVerifiesWithTheServersKeys: a ledger swapped in, signed with
// fresh keys, answers nothing: serve verifies with DATA/keys, not with the
// keys the ledger records about itself.
func TestGateVerifiesWithTheServersKeys(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("c4", 32)
	recordEvidence(t, dir, rev, "pod-kill", "block", "t-1") // DATA/keys and the real ledger
	forged := t.TempDir()
	recordEvidence(t, forged, rev, "pod-kill", "promote", "t-2") // other keys, other ledger
	ledger := filepath.Join(dir, evidence.LedgerSubdir)
	if err := os.RemoveAll(ledger); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(forged, evidence.LedgerSubdir), ledger); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dir, scripted(nil), nil)
	argo, confirm, _ := gateBoth(h, rev)
	if argo == "promote" || confirm == 200 || !strings.Contains(argo, "tampered") {
		t.Fatalf("a forged ledger: argo %q, confirm-promotion %d", argo, confirm)
	}
	code, body := h.do(RoleAuditor, "GET", "/explorer", "")
	if code == 200 && strings.Contains(string(body), "verified") {
		t.Fatalf("the explorer shows a forged ledger as verified: %s", body)
	}
	if code, body := h.do(RoleAuditor, "GET", "/api/v1/ledger/checkpoint", ""); code == 200 {
		t.Fatalf("the ledger API serves a forged ledger: %s", body)
	}
}

// TestLedgerAppendCannotMintAVerdict: a statement of chaosgate's own
// predicate type signed through `ledger append` (external evidence) is
// refused, so it never answers the gate.
func TestLedgerAppendCannotMintAVerdict(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("d5", 32)
	recordEvidence(t, dir, rev, "pod-kill", "block", "t-1")
	ctx := context.Background()
	l, err := evidence.OpenDataDir(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := evidence.BuildStatement(rev, &evidence.Predicate{RunID: "minted", Decision: &evidence.Decision{Verdict: "promote", Score: 1, Coverage: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_, aerr := l.SignAndAppend(ctx, st, rev)
	l.Close()
	h := newHarness(t, dir, scripted(nil), nil)
	if argo, confirm, _ := gateBoth(h, rev); argo != "block" || confirm == 200 || aerr == nil {
		t.Fatalf("an appended chaosgate statement: append error %v, gate %q, confirm-promotion %d", aerr, argo, confirm)
	}
}

// TestGateAnswersFromSignedEvidenceOnly: a run record (unsigned, a file in
// the data dir) claiming promote does not outvote the signed block, and an
// uploaded document cannot run for a revision.
func TestGateAnswersFromSignedEvidenceOnly(t *testing.T) {
	dir := t.TempDir()
	rev := "sha256:" + strings.Repeat("e6", 32)
	recordEvidence(t, dir, rev, "pod-kill", "block", "t-1")
	rep := report.New("serve-20990101-000000-00000000", rev, decision.Promote)
	rep.Steps = []report.Step{{Weight: 100, Verdict: "promote", Score: 1, Coverage: 1}}
	forged := &RunRecord{ID: rep.RunID, Scenario: "pod-kill", Revision: rev, Status: StatusFinished, Started: time.Now().Add(time.Hour), Report: &rep}
	data, _ := json.Marshal(forged)
	if err := os.MkdirAll(filepath.Join(dir, "serve", "runs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "serve", "runs", forged.ID+".json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dir, scripted(nil), nil)
	if argo, confirm, _ := gateBoth(h, rev); argo != "block" || confirm == 200 {
		t.Fatalf("a run record against signed evidence: %q, confirm-promotion %d", argo, confirm)
	}
	doc, err := os.ReadFile(filepath.Join("..", "scenarios", "library", "pod-kill.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(StartRequest{Document: string(doc), Revision: "promote-upload"})
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/runs", string(body)); code != 400 {
		t.Fatalf("an uploaded document for a revision: %d %s", code, resp)
	}
	waitIdle(t, h)
	if argo, _, _ := gateBoth(h, "promote-upload"); argo == "promote" {
		t.Fatal("an uploaded document's run answered the gate")
	}
}

func waitIdle(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.srv.current() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the run did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestViewerReadsNoFileContent: an operator uploads game days whose refs
// name the evidence and checkpoint signing keys and /etc/passwd (also
// through the experiments directory and a symbolic link in it); nothing a
// viewer can read — runs, run pages, events, schedules — holds a byte of
// those files. The real local runner is used: it plans the run first.
func TestViewerReadsNoFileContent(t *testing.T) {
	dir := t.TempDir()
	if _, err := evidence.GenerateKeys(filepath.Join(dir, evidence.KeysSubdir), evidence.DefaultOrigin); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, f := range []string{evidence.EvidenceKeyFile, evidence.CheckpointKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, evidence.KeysSubdir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) > 12 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line[len(line)-12:])
			}
		}
	}
	if passwd, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(passwd), "\n") {
			if len(line) > 8 {
				secrets = append(secrets, line)
			}
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("secrets %v", secrets)
	}
	exp := filepath.Join(t.TempDir(), "experiments")
	os.MkdirAll(exp, 0o700)
	targets := []string{filepath.Join(dir, evidence.KeysSubdir, evidence.EvidenceKeyFile), filepath.Join(dir, evidence.KeysSubdir, evidence.CheckpointKeyFile), "/etc/passwd"}
	for i, target := range targets {
		os.Symlink(target, filepath.Join(exp, fmt.Sprintf("link%d.yaml", i)))
		gd := fmt.Sprintf("apiVersion: chaosgate.io/v1\nkind: GameDay\nmetadata: {name: gd%d}\nspec:\n  target: {local: {nodes: 3}}\n  experiments:\n    - ref: %q\n    - ref: link%d.yaml\n", i, target, i)
		os.WriteFile(filepath.Join(exp, fmt.Sprintf("gd%d.yaml", i)), []byte(gd), 0o600)
	}
	store := newDecisionStore(t)
	srv, err := New(Options{DataDir: dir, Tokens: testTokens(t), Run: LocalRunner(dir, "", nil, nil, nil), Decision: store, Target: "local", Experiments: exp})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, hs: httptest.NewServer(srv.Handler())}
	t.Cleanup(h.close)
	var ids []string
	start := func(body, ctype string) {
		code, _, resp := h.send("POST", "/api/v1/runs", body, map[string]string{"Authorization": "Bearer " + roleTokens[RoleOperator], "Content-Type": ctype})
		var r RunRecord
		if code == 202 && json.Unmarshal(resp, &r) == nil {
			ids = append(ids, r.ID)
			waitIdle(t, h)
		}
		for _, s := range secrets {
			if strings.Contains(string(resp), s) {
				t.Fatalf("the start answer holds file content: %s", resp)
			}
		}
	}
	for i, target := range targets {
		for _, ref := range []string{target, "../../../../../../.." + target, fmt.Sprintf("link%d.yaml", i)} {
			gd := fmt.Sprintf("apiVersion: chaosgate.io/v1\nkind: GameDay\nmetadata: {name: leak}\nspec:\n  target: {local: {nodes: 3}}\n  experiments:\n    - ref: %q\n", ref)
			body, _ := json.Marshal(StartRequest{Document: gd})
			start(string(body), "application/json")
			start(gd, "application/yaml")
		}
		start(fmt.Sprintf(`{"scenario":"gd%d"}`, i), "application/json")
		for _, name := range []string{target, "../../../../../../.." + target, strings.TrimSuffix(target, ".key")} {
			body, _ := json.Marshal(StartRequest{Scenario: name})
			start(string(body), "application/json")
		}
		start(fmt.Sprintf(`{"scenario":"link%d"}`, i), "application/json")
		h.send("POST", "/api/v1/schedules", fmt.Sprintf(`{"name":"s%d","cron":"@daily","scenario":"gd%d"}`, i, i), map[string]string{"Authorization": "Bearer " + roleTokens[RoleOperator], "Content-Type": "application/json"})
	}
	var seen strings.Builder
	for _, p := range []string{"/api/v1/runs", "/api/v1/schedules", "/", "/api/v1/scenarios"} {
		_, b := h.do(RoleViewer, "GET", p, "")
		seen.Write(b)
	}
	for _, id := range ids {
		for _, p := range []string{"/api/v1/runs/" + id, "/api/v1/runs/" + id + "/events", "/runs/" + id} {
			_, b := h.do(RoleViewer, "GET", p, "")
			seen.Write(b)
		}
	}
	filepath.WalkDir(filepath.Join(dir, "serve"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			seen.Write(b)
		}
		return nil
	})
	for _, s := range secrets {
		if strings.Contains(seen.String(), s) {
			t.Fatalf("a viewer reads file content %q", s)
		}
	}
}

func newDecisionStore(t *testing.T) *config.Store {
	t.Helper()
	store, err := config.NewStore(nil, "defaults", nil, config.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestRefusedRequestsDoNotWaitForTheirBody: a request refused for its
// token (a bearer header that is wrong, or none) is answered before its
// body arrives and the connection is closed; a Flagger webhook checks a
// header token before it reads the body.
func TestRefusedRequestsDoNotWaitForTheirBody(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	addr := strings.TrimPrefix(h.hs.URL, "http://")
	for _, tc := range []struct{ path, auth string }{
		{"/api/v1/runs", ""},
		{"/api/v1/schedules", "Bearer wrong-token-0123456789"},
		{"/api/v1/gate/flagger/rollback", "Bearer wrong-token-0123456789"},
		{"/api/v1/gate/flagger/confirm-promotion", "Bearer " + roleTokens[RoleAuditor] + "x"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hdr := "POST " + tc.path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
		if tc.auth != "" {
			hdr += "Authorization: " + tc.auth + "\r\n"
		}
		if _, err := io.WriteString(c, hdr+"\r\n{\"name\":"); err != nil {
			t.Fatal(err)
		}
		// The rest of the body never comes. The answer must not wait for it
		// (this deadline only ends the test if it does).
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			t.Fatalf("%s: no answer before the body: %v", tc.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !resp.Close {
			t.Errorf("%s: %d, connection kept open: %v", tc.path, resp.StatusCode, !resp.Close)
		}
		c.Close()
	}
}

// TestEventStreamsAreBounded: at most MaxStreams event streams are open at
// once; the next is refused with 503 until one closes.
func TestEventStreamsAreBounded(t *testing.T) {
	gate := make(chan struct{})
	store := newDecisionStore(t)
	dir := t.TempDir()
	srv, err := New(Options{DataDir: dir, Tokens: testTokens(t), Run: scripted(gate), Decision: store, MaxStreams: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, hs: httptest.NewServer(srv.Handler())}
	t.Cleanup(h.close)
	id := h.startRun(`{"scenario":"pod-kill","revision":"promote-streams"}`)
	open := func() *http.Response {
		req, _ := http.NewRequest("GET", h.hs.URL+"/api/v1/runs/"+id+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	a, b := open(), open()
	if a.StatusCode != 200 || b.StatusCode != 200 {
		t.Fatalf("streams: %d %d", a.StatusCode, b.StatusCode)
	}
	c := open()
	if c.StatusCode != 503 || c.Header.Get("Retry-After") == "" {
		t.Fatalf("a third stream: %d", c.StatusCode)
	}
	c.Body.Close()
	close(gate)
	io.Copy(io.Discard, a.Body)
	io.Copy(io.Discard, b.Body)
	a.Body.Close()
	b.Body.Close()
	waitIdle(t, h)
}

// TestHTTPServerTimeouts: the server serve runs has every timeout set.
func TestHTTPServerTimeouts(t *testing.T) {
	s := HTTPServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Fatalf("timeouts: %+v", s)
	}
}

// TestFilesArePrivate: run records, the runs directory and schedules are
// readable by their owner only, and a tokens file others may read is
// refused.
func TestFilesArePrivate(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	id := h.startRun(`{"scenario":"pod-kill","revision":"promote-modes"}`)
	h.waitRun(id)
	if code, body := h.do(RoleOperator, "POST", "/api/v1/schedules", `{"name":"m","cron":"@daily","scenario":"pod-kill"}`); code != 201 {
		t.Fatalf("schedule: %d %s", code, body)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(h.dir, "serve", "runs", id+".json"): 0o600,
		filepath.Join(h.dir, "serve", "schedules.json"):   0o600,
		filepath.Join(h.dir, "serve", "runs"):             0o700,
		filepath.Join(h.dir, "serve"):                     0o700,
	} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
	tok := filepath.Join(t.TempDir(), "tokens.yaml")
	os.WriteFile(tok, fmt.Appendf(nil, "tokens:\n  - {name: v, role: viewer, token: %q}\n", roleTokens[RoleViewer]), 0o644)
	if _, _, err := LoadOrCreateTokens(tok, false); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a tokens file others may read: %v", err)
	}
	os.Chmod(tok, 0o600)
	if _, _, err := LoadOrCreateTokens(tok, false); err != nil {
		t.Fatal(err)
	}
	// A Kubernetes Secret volume under the pod's fsGroup: mode 0440, group
	// the process's own. Readable; group write, others' read, or another
	// group are not.
	os.Chown(tok, -1, os.Getegid())
	os.Chmod(tok, 0o440)
	if _, _, err := LoadOrCreateTokens(tok, false); err != nil {
		t.Fatalf("a Secret volume file of our own group: %v", err)
	}
	for _, mode := range []os.FileMode{0o460, 0o444, 0o470, 0o404} {
		os.Chmod(tok, mode)
		if _, _, err := LoadOrCreateTokens(tok, false); err == nil || !strings.Contains(err.Error(), "fsGroup") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if os.Geteuid() == 0 { // only root may give a file away to another group
		os.Chmod(tok, 0o440)
		if err := os.Chown(tok, -1, os.Getegid()+1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateTokens(tok, false); err == nil {
			t.Errorf("a group-readable tokens file of another group was accepted")
		}
	}
	created := filepath.Join(t.TempDir(), "new", "tokens.yaml")
	if _, ok, err := LoadOrCreateTokens(created, true); err != nil || !ok {
		t.Fatal(err)
	}
	if st, _ := os.Stat(created); st.Mode().Perm() != 0o600 {
		t.Fatalf("created tokens file: %04o", st.Mode().Perm())
	}
}

// TestScheduleNamesAreSafe: a schedule name is one plain path segment.
func TestScheduleNamesAreSafe(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	for _, name := range []string{"..", ".", "a?b#c", "a/b", "a%2Fb", "-x", "x y", strings.Repeat("n", 65), "é"} {
		body, _ := json.Marshal(Schedule{Name: name, Cron: "@daily", Scenario: "pod-kill"})
		if code, resp := h.do(RoleOperator, "POST", "/api/v1/schedules", string(body)); code != 400 {
			t.Errorf("schedule %q: %d %s", name, code, resp)
		}
	}
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/schedules", `{"name":"nightly-1.b_2","cron":"@daily","scenario":"pod-kill"}`); code != 201 {
		t.Fatalf("a good name: %d %s", code, resp)
	}
	if _, err := LoadConfig([]byte("schedules:\n  - {name: \"..\", cron: \"@daily\", scenario: pod-kill}\n"), "c.yaml"); err == nil {
		t.Fatal("a config schedule named ..")
	}
}

// TestKillSwitchDuringSetupIsAnAbort: the kill switch pulled while a run
// sets up (the runner then ends with an error, as the game day's setup
// does when its context is cancelled) records the run as aborted, with
// the kill switch's reason.
func TestKillSwitchDuringSetupIsAnAbort(t *testing.T) {
	setup := func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		live.Emit(LiveEvent{Kind: "phase", Phase: "setup", Msg: "starting clusters"})
		<-ctx.Done()
		err := fmt.Errorf("start canary cluster: %w", ctx.Err())
		return &RunResult{Report: report.New(req.ID, req.Revision, 0), Error: err.Error()}, err
	}
	h := newHarness(t, "", setup, nil)
	id := h.startRun(`{"scenario":"pod-kill","revision":"promote-setup"}`)
	if code, body := h.do(RoleOperator, "POST", "/api/v1/abort?reason=pager", ""); code != 200 || !strings.Contains(string(body), id) {
		t.Fatalf("abort: %d %s", code, body)
	}
	r := h.waitRun(id)
	if r.Status != StatusAborted || !strings.Contains(r.Aborted, "pager") {
		t.Fatalf("run after the kill switch in setup: status %q, aborted %q, error %q", r.Status, r.Aborted, r.Error)
	}
	// The same when the runner returns no result at all.
	h.srv.opt.Run = func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	id = h.startRun(`{"scenario":"pod-kill","revision":"promote-setup2"}`)
	h.do(RoleOperator, "POST", "/api/v1/abort?reason=drill", "")
	if r := h.waitRun(id); r.Status != StatusAborted || !strings.Contains(r.Aborted, "drill") {
		t.Fatalf("run without a result: %+v", r)
	}
}

// TestKubernetesNamespaceIsFixed: a server given its namespaces refuses a
// document whose Kubernetes target names another one, whether uploaded,
// named or scheduled.
func TestKubernetesNamespaceIsFixed(t *testing.T) {
	dir := t.TempDir()
	exp := filepath.Join(dir, "experiments")
	os.MkdirAll(exp, 0o700)
	doc := func(ns string) string {
		return "apiVersion: chaosgate.io/v1\nkind: Experiment\nmetadata: {name: k}\nspec:\n  target:\n    kubernetes:\n      namespace: " + ns +
			"\n      replicas: 3\n      canary: {matchLabels: {track: canary}}\n      control: {matchLabels: {track: stable}}\n  faults:\n    - {duration: 10s, podKill: {mode: one}}\n"
	}
	os.WriteFile(filepath.Join(exp, "other.yaml"), []byte(doc("kube-system")), 0o600)
	srv, err := New(Options{DataDir: dir, Tokens: testTokens(t), Run: recording(dir, scripted(nil)), Decision: newDecisionStore(t), Target: "k8s",
		Experiments: exp, Namespaces: []string{"chaosgate-demo"}})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, hs: httptest.NewServer(srv.Handler())}
	t.Cleanup(h.close)
	body, _ := json.Marshal(StartRequest{Document: doc("kube-system")})
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/runs", string(body)); code != 400 || !strings.Contains(string(resp), "chaosgate-demo only") {
		t.Fatalf("an upload for another namespace: %d %s", code, resp)
	}
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/runs", `{"scenario":"other"}`); code != 400 {
		t.Fatalf("a named file for another namespace: %d %s", code, resp)
	}
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/schedules", `{"name":"n","cron":"@every 1s","scenario":"other"}`); code != 400 {
		t.Fatalf("a schedule for another namespace: %d %s", code, resp)
	}
	body, _ = json.Marshal(StartRequest{Document: doc("chaosgate-demo")})
	if code, resp := h.do(RoleOperator, "POST", "/api/v1/runs", string(body)); code != 202 {
		t.Fatalf("an upload for the server's namespace: %d %s", code, resp)
	}
	waitIdle(t, h)
	if recs, _ := srv.runs.list(); len(recs) != 1 {
		t.Fatalf("%d runs", len(recs))
	}
}
