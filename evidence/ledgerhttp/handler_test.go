package ledgerhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/evidence"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func newServer(t *testing.T, n int) (*evidence.Ledger, *evidence.Keys, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	k, err := evidence.GenerateKeys(filepath.Join(t.TempDir(), "keys"), "example.test/http")
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(ctx, filepath.Join(t.TempDir(), "ledger"), evidence.Options{Keys: k, Create: true, Clock: &fixedClock{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		p := &evidence.Predicate{RunID: fmt.Sprint("run-", i), Experiment: evidence.Experiment{Name: fmt.Sprint("exp-", i%3)}, TraceIDs: []string{fmt.Sprint("t", i)}}
		if _, err := l.Record(ctx, fmt.Sprint("v", i%5), p); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(New(l))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		l.Close()
	})
	return l, k, srv
}

func bundleHasher(b []byte) ([][]byte, error) {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(b); err != nil {
		return nil, err
	}
	out := make([][]byte, len(eb.Entries))
	for i, e := range eb.Entries {
		out[i] = rfc6962.DefaultHasher.HashLeaf(e)
	}
	return out, nil
}

// TestTilesCheckedByTessera lets tessera's own client and fsck read our
// tlog-tiles endpoints over real HTTP: the checkpoint verifies, every tile
// and entry bundle re-hashes to the checkpoint root, and inclusion proofs
// built from our tiles match ours.
func TestTilesCheckedByTessera(t *testing.T) {
	ctx := context.Background()
	const n = 600 // two full tiles and a partial one at level 0
	l, k, srv := newServer(t, n)
	u, _ := url.Parse(srv.URL + "/")
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	f, err := client.NewHTTPFetcher(u, hc)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, k.CheckpointVerifier(), k.Info.Origin)
	if err != nil {
		t.Fatalf("tessera client rejects our checkpoint: %v", err)
	}
	if cp.Size != n {
		t.Fatalf("checkpoint size %d", cp.Size)
	}
	if err := fsck.New(k.Info.Origin, k.CheckpointVerifier(), f, bundleHasher, fsck.Opts{N: 2}).Check(ctx); err != nil {
		t.Fatalf("tessera fsck of our tiles: %v", err)
	}
	pb, err := client.NewProofBuilder(ctx, n, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 1, 255, 256, 511, 512, 599} {
		theirs, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("tessera proof builder %d: %v", i, err)
		}
		ours, err := l.InclusionProof(ctx, i, n)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(theirs) != fmt.Sprint(ours) {
			t.Fatalf("proof %d differs from the one built from our tiles", i)
		}
	}
	theirs, err := pb.ConsistencyProof(ctx, 300, n)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := l.ConsistencyProof(ctx, 300, n)
	if fmt.Sprint(theirs) != fmt.Sprint(ours) {
		t.Fatal("consistency proof differs")
	}
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestJSONEndpoints(t *testing.T) {
	l, k, srv := newServer(t, 12)
	code, body := get(t, srv, "/entries/3")
	var e EntryJSON
	if code != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Index != 3 || e.Record.RunID != "run-3" {
		t.Fatalf("entry: %d %s", code, body)
	}
	code, body = get(t, srv, "/entries/3/proof")
	p, err := evidence.ParseTlogProof([]byte(body))
	if code != 200 || err != nil {
		t.Fatalf("proof: %d %v %s", code, err, body)
	}
	ent, _ := l.Entry(context.Background(), 3)
	if _, err := evidence.VerifyTlogProof(p, ent.Leaf, k.CheckpointVerifier()); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, srv, "/entries/3/proof?size=5")
	if p, err := evidence.ParseTlogProof([]byte(body)); code != 200 || err != nil || !strings.Contains(string(p.Checkpoint), "\n5\n") {
		t.Fatalf("proof at size 5: %d %s", code, body)
	}
	code, body = get(t, srv, "/consistency?from=4&to=12")
	var c struct {
		Hashes []string `json:"hashes"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &c) != nil || len(c.Hashes) == 0 {
		t.Fatalf("consistency: %d %s", code, body)
	}
	code, body = get(t, srv, "/blocks?limit=3")
	var bs []BlockJSON
	if code != 200 || json.Unmarshal([]byte(body), &bs) != nil || len(bs) != 3 || bs[0].Height != 11 {
		t.Fatalf("blocks: %d %s", code, body)
	}
	code, body = get(t, srv, "/search?revision=v2")
	var es []EntryJSON
	if code != 200 || json.Unmarshal([]byte(body), &es) != nil || len(es) != 2 {
		t.Fatalf("search: %d %s", code, body)
	}
	code, body = get(t, srv, "/search?trace_id=t7")
	if json.Unmarshal([]byte(body), &es) != nil || len(es) != 1 || es[0].Index != 7 {
		t.Fatalf("search trace: %d %s", code, body)
	}
	for path, want := range map[string]int{
		"/entries/99":              404,
		"/entries/x":               400,
		"/entries/1/proof?size=x":  400,
		"/consistency?from=9&to=3": 400,
		"/search":                  400,
		"/search?since=yesterday":  400,
		"/tile/0/000.p/13":         404,
		"/tile/0/x001/000":         404,
		"/tile/0/abc":              400,
		"/tile/entries/000.p/12":   200,
		"/tile/0/000.p/12":         200,
		"/checkpoint":              200,
	} {
		if code, body := get(t, srv, path); code != want {
			t.Errorf("GET %s: %d, want %d (%s)", path, code, want, body)
		}
	}
	code, body = get(t, srv, "/tile/0/000.p/12")
	var all []byte
	for i := uint64(0); i < 12; i++ {
		e, _ := l.Entry(context.Background(), i)
		all = append(all, e.LeafHash[:]...)
	}
	if body != string(all) {
		t.Fatal("level-0 tile is not the leaf hashes")
	}
}

func FuzzHandlerPaths(f *testing.F) {
	dir := f.TempDir()
	k, err := evidence.GenerateKeys(filepath.Join(dir, "keys"), "example.test/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	l, err := evidence.Open(context.Background(), filepath.Join(dir, "ledger"), evidence.Options{Keys: k, Create: true})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if _, err := l.Record(context.Background(), "v1", &evidence.Predicate{RunID: fmt.Sprint(i)}); err != nil {
			f.Fatal(err)
		}
	}
	h := New(l)
	for _, s := range []string{"/tile/0/000.p/3", "/tile/entries/000.p/2", "/tile/1/x001/002", "/entries/1/proof?size=2", "/consistency?from=1&to=3", "/search?since=2026-01-01T00:00:00Z", "/blocks?before=2&limit=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n#") {
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "http://x"+path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
	})
}
