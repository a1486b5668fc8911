package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision/config"
)

// fuzzServer is a real server over a temporary data dir, for fuzz targets
// that call its handler directly.
func fuzzServer(f *testing.F) *Server {
	dir := f.TempDir()
	recordEvidence(f, dir, "sha256:"+strings.Repeat("ab", 32), "pod-kill", "promote", "trace-1")
	store, err := config.NewStore(nil, "defaults", nil, config.SystemClock{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Options{DataDir: dir, Tokens: testTokens(f), Run: recording(dir, scripted(nil)), Decision: store, Target: "local"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := srv.Close(context.Background()); err != nil {
			f.Error(err)
		}
	})
	return srv
}

var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/runs"},
	{"POST", "/api/v1/schedules"},
	{"DELETE", "/api/v1/schedules/"},
	{"POST", "/api/v1/gate/flagger/confirm-promotion"},
	{"POST", "/api/v1/gate/flagger/pre-rollout"},
	{"POST", "/api/v1/gate/flagger/rollback"},
	{"GET", "/api/v1/gate/"},
	{"GET", "/api/v1/runs/"},
	{"GET", "/login?next="},
	{"POST", "/login"},
	{"POST", "/ui/runs"},
	{"POST", "/ui/schedules"},
	{"POST", "/ui/schedules/"},
	{"GET", "/explorer?revision="},
	{"GET", "/api/v1/ledger/search?revision="},
}

var fuzzTypes = []string{"application/json", "application/yaml", "application/x-www-form-urlencoded", "text/plain", "", "application/merge-patch+json; charset=utf-8"}

// FuzzHandlerBodies sends any body, form, content type and path value to
// serve's handlers that read them, as an operator and as an auditor: every
// answer is a clear refusal or a success, never a panic or a 500, and an
// API error is the JSON error.
func FuzzHandlerBodies(f *testing.F) {
	srv := fuzzServer(f)
	h := srv.Handler()
	f.Add(uint8(0), uint8(0), []byte(`{"scenario":"pod-kill","revision":"promote-f"}`), "")
	f.Add(uint8(0), uint8(1), []byte("apiVersion: chaosgate.io/v1\nkind: GameDay\nmetadata: {name: x}\nspec:\n  target: {local: {nodes: 3}}\n  experiments:\n    - ref: /etc/passwd\n"), "")
	f.Add(uint8(1), uint8(0), []byte(`{"name":"n","cron":"@every 1h","scenario":"pod-kill"}`), "")
	f.Add(uint8(2), uint8(4), []byte(nil), "..")
	f.Add(uint8(3), uint8(0), []byte(`{"name":"web","namespace":"demo","metadata":{"token":"viewer-token-0123456789","revision":"x"}}`), "")
	f.Add(uint8(6), uint8(4), []byte(nil), "sha256:"+strings.Repeat("ab", 32))
	f.Add(uint8(8), uint8(4), []byte(nil), "/\t/evil.example")
	f.Add(uint8(9), uint8(2), []byte("token=viewer-token-0123456789&next=%2F%09%2Fevil"), "")
	f.Add(uint8(10), uint8(2), []byte("scenario=pod-kill&revision=block-f"), "")
	f.Add(uint8(11), uint8(2), []byte("name=a%3Fb&cron=%40daily&scenario=pod-kill"), "")
	f.Add(uint8(12), uint8(2), []byte(nil), "x/delete")
	f.Fuzz(func(t *testing.T, route, ctype uint8, body []byte, value string) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		target := rt.path
		if strings.HasSuffix(target, "/") || strings.HasSuffix(target, "=") {
			target += url.PathEscape(value)
			if strings.HasSuffix(rt.path, "=") {
				target = rt.path + url.QueryEscape(value)
			}
		}
		for _, role := range []Role{RoleOperator, RoleAuditor} {
			req := httptest.NewRequest(rt.method, target, strings.NewReader(string(body)))
			if ct := fuzzTypes[int(ctype)%len(fuzzTypes)]; ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			req.Header.Set("Authorization", "Bearer "+roleTokens[role])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
				t.Fatalf("%s %q as %v: %d %s", rt.method, target, role, w.Code, w.Body)
			}
			if strings.HasPrefix(target, "/api/") && w.Code >= 400 && w.Code != http.StatusPreconditionFailed && !strings.HasPrefix(target, "/api/v1/ledger/") {
				var e APIError
				if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || e.Detail == "" {
					t.Fatalf("%s %q: %d is not the JSON error: %s", rt.method, target, w.Code, w.Body)
				}
			}
			if loc := w.Header().Get("Location"); loc != "" {
				if u, err := url.Parse(strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(loc)); err != nil || u.Host != "" || u.Scheme != "" {
					t.Fatalf("%s %q redirects off the server: %q", rt.method, target, loc)
				}
			}
		}
	})
}

// FuzzStoredRunRecord decodes any bytes as a stored run record, and serves
// them from the data dir as one: listing, reading and rendering it answer
// or refuse, never panic or fail with a 500.
func FuzzStoredRunRecord(f *testing.F) {
	srv := fuzzServer(f)
	h := srv.Handler()
	f.Add([]byte(`{"id":"serve-x","scenario":"pod-kill","status":"finished","report":{"schema":"report/v1","verdict":"promote","steps":[{"weight":5,"dimensions":[{"name":"error_rate","outcome":"pass"}]}]}}`))
	f.Add([]byte(`{"id":"serve-x","report":{"steps":[{"dimensions":[{"outcome":"bogus"},7]}]},"events":[{"seq":1,"kind":"state","state":{"arms":{"canary":{"p99_ms":1e308}}}}]}`))
	f.Add([]byte(`{"id":"serve-x","status":"running","started":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"id":"serve-x","report":{"steps":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err == nil {
			again, merr := json.Marshal(r)
			if merr != nil {
				t.Fatalf("a decoded record does not encode: %v", merr)
			}
			if _, err := decodeRecord(again); err != nil {
				t.Fatalf("a record does not decode what it encoded: %v\n%s", err, again)
			}
		}
		if err := os.WriteFile(filepath.Join(srv.runs.dir, "serve-x.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		srv.runs.mu.Lock()
		srv.runs.idx = nil // reload from the files
		srv.runs.mu.Unlock()
		for _, p := range []string{"/api/v1/runs", "/api/v1/runs/serve-x", "/runs/serve-x", "/", "/api/v1/runs/serve-x/events", "/api/v1/gate/pod-kill"} {
			req := httptest.NewRequest("GET", p, nil)
			req.Header.Set("Authorization", "Bearer "+roleTokens[RoleViewer])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var e APIError
			if w.Code >= 500 && (json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error != "damaged_record" || strings.Contains(e.Detail, srv.runs.dir)) &&
				!(w.Code == 500 && strings.HasPrefix(p, "/runs/") && strings.Contains(w.Body.String(), "does not decode")) {
				t.Fatalf("GET %s over a stored record %q: %d %s", p, data, w.Code, w.Body)
			}
		}
	})
}
