// Package ledgerhttp serves an evidence ledger read-only over HTTP: the
// C2SP tlog-tiles endpoints (/checkpoint, /tile/...), so standard
// transparency-log clients can fetch and check it, plus JSON endpoints for
// the block explorer (/entries/{i}, /entries/{i}/proof, /consistency,
// /blocks, /search, /anchors).
package ledgerhttp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/chaosgate/chaosgate/evidence"
)

// Handler serves one ledger. Mount it under a prefix with http.StripPrefix.
type Handler struct {
	l   *evidence.Ledger
	mux *http.ServeMux
}

// New returns the read-only HTTP handler of l.
func New(l *evidence.Ledger) *Handler {
	h := &Handler{l: l, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /checkpoint", h.checkpoint)
	h.mux.HandleFunc("GET /tile/{path...}", h.tile)
	h.mux.HandleFunc("GET /entries/{i}", h.entry)
	h.mux.HandleFunc("GET /entries/{i}/proof", h.proof)
	h.mux.HandleFunc("GET /consistency", h.consistency)
	h.mux.HandleFunc("GET /blocks", h.blocks)
	h.mux.HandleFunc("GET /search", h.search)
	h.mux.HandleFunc("GET /anchors", h.anchors)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch evidence.KindOf(err) {
	case evidence.KindInvalid:
		status = http.StatusBadRequest
	case evidence.KindNotFound:
		status = http.StatusNotFound
	case evidence.KindUnavailable:
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, apiError{Error: err.Error(), Kind: evidence.KindOf(err).String()})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: msg, Kind: evidence.KindInvalid.String()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := h.l.Checkpoint(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(cp.Note)
}

// tile serves /tile/<L>/<N>[.p/<W>] and /tile/entries/<N>[.p/<W>] with N in
// the x-prefixed three-digit path segments of c2sp.org/tlog-tiles.
func (h *Handler) tile(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	entries := false
	if rest, ok := strings.CutPrefix(p, "entries/"); ok {
		entries = true
		p = "data/" + rest
	}
	t, err := tlog.ParseTilePath("tile/" + strconv.Itoa(evidence.TileHeight) + "/" + p)
	if err != nil || (t.L < 0) != entries {
		badRequest(w, "malformed tile path "+r.URL.Path+": want /tile/<L>/<N>[.p/<W>] or /tile/entries/<N>[.p/<W>]")
		return
	}
	var data []byte
	if entries {
		data, err = h.l.EntryBundle(r.Context(), t.N, t.W)
	} else {
		data, err = h.l.TileData(r.Context(), t)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.W == 1<<evidence.TileHeight {
		w.Header().Set("Cache-Control", "max-age=31536000, immutable")
	}
	_, _ = w.Write(data)
}

func pathIndex(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	i, err := strconv.ParseUint(r.PathValue("i"), 10, 64)
	if err != nil {
		badRequest(w, "entry index "+strconv.Quote(r.PathValue("i"))+" is not a non-negative integer")
		return 0, false
	}
	return i, true
}

func queryUint(w http.ResponseWriter, r *http.Request, name string, def uint64) (uint64, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		badRequest(w, "query parameter "+name+"="+strconv.Quote(s)+" is not a non-negative integer")
		return 0, false
	}
	return v, true
}

// EntryJSON is the JSON form of an entry.
type EntryJSON struct {
	Index    uint64               `json:"index"`
	LeafHash string               `json:"leaf_hash"`
	Leaf     string               `json:"leaf"` // base64 of the exact leaf bytes
	Record   evidence.EntryRecord `json:"record"`
	Envelope json.RawMessage      `json:"envelope"`
	// Anchor is the first anchoring of the ledger in an outside witness
	// that covers the entry (anchors/v1), null when none does yet; only
	// /entries/{i} fills it.
	Anchor *evidence.Anchor `json:"anchor,omitempty"`
	// Anchored says whether Anchor is set (only /entries/{i}).
	Anchored *bool `json:"anchored,omitempty"`
}

func entryJSON(e evidence.Entry) EntryJSON {
	return EntryJSON{Index: e.Index, LeafHash: e.LeafHash.String(), Leaf: base64.StdEncoding.EncodeToString(e.Leaf), Record: e.Record, Envelope: json.RawMessage(e.Envelope)}
}

func (h *Handler) entry(w http.ResponseWriter, r *http.Request) {
	i, ok := pathIndex(w, r)
	if !ok {
		return
	}
	e, err := h.l.Entry(r.Context(), i)
	if err != nil {
		writeErr(w, err)
		return
	}
	as, err := evidence.ReadAnchors(h.l.Dir())
	if err != nil {
		writeErr(w, err)
		return
	}
	out := entryJSON(e)
	a, ok := evidence.CoveringAnchor(as, i)
	if ok {
		out.Anchor = &a
	}
	out.Anchored = &ok
	writeJSON(w, http.StatusOK, out)
}

// AnchorsJSON is the answer of /anchors.
type AnchorsJSON struct {
	// Anchors are the records of the ledger's anchors file, in the order
	// they were recorded (anchors/v1).
	Anchors []evidence.Anchor `json:"anchors"`
	// Latest is the anchor of the largest tree size (null: none).
	Latest *evidence.Anchor `json:"latest"`
}

// anchors serves the ledger's local anchors record.
func (h *Handler) anchors(w http.ResponseWriter, r *http.Request) {
	as, err := evidence.ReadAnchors(h.l.Dir())
	if err != nil {
		writeErr(w, err)
		return
	}
	out := AnchorsJSON{Anchors: as}
	if out.Anchors == nil {
		out.Anchors = []evidence.Anchor{}
	}
	if a, ok := evidence.LatestAnchor(as); ok {
		out.Latest = &a
	}
	writeJSON(w, http.StatusOK, out)
}

// proof serves the c2sp.org/tlog-proof of entry i against the signed
// checkpoint of ?size (default latest); ?format=json gives JSON.
func (h *Handler) proof(w http.ResponseWriter, r *http.Request) {
	i, ok := pathIndex(w, r)
	if !ok {
		return
	}
	size, ok := queryUint(w, r, "size", 0)
	if !ok {
		return
	}
	p, err := h.l.TlogProof(r.Context(), i, size)
	if err != nil {
		writeErr(w, err)
		return
	}
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, http.StatusOK, map[string]any{"index": p.Index, "hashes": b64(p.Hashes), "checkpoint": string(p.Checkpoint)})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(p.Marshal())
}

func b64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func (h *Handler) consistency(w http.ResponseWriter, r *http.Request) {
	from, ok := queryUint(w, r, "from", 0)
	if !ok {
		return
	}
	to, ok := queryUint(w, r, "to", h.l.Size())
	if !ok {
		return
	}
	p, err := h.l.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		writeErr(w, err)
		return
	}
	hs, _ := evidence.BytesToHashes(p)
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "hashes": b64(hs)})
}

// BlockJSON is the JSON form of a block header.
type BlockJSON struct {
	Height   uint64    `json:"height"`
	Hash     string    `json:"hash"`
	Prev     string    `json:"prev_hash"`
	DataHash string    `json:"data_hash"`
	First    uint64    `json:"first_index"`
	Count    uint64    `json:"count"`
	Size     uint64    `json:"tree_size"`
	Root     string    `json:"root"`
	Time     time.Time `json:"time"`
	Signed   string    `json:"signed_header"`
}

func (h *Handler) blocks(w http.ResponseWriter, r *http.Request) {
	before, ok := queryUint(w, r, "before", 0)
	if !ok {
		return
	}
	limit, ok := queryUint(w, r, "limit", 20)
	if !ok {
		return
	}
	if limit > 1000 {
		limit = 1000
	}
	bs, err := h.l.Blocks(r.Context(), before, int(limit))
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]BlockJSON, 0, len(bs))
	for _, b := range bs {
		out = append(out, BlockJSON{Height: b.Height, Hash: b.Hash.String(), Prev: b.Prev.String(), DataHash: b.DataHash.String(), First: b.First, Count: b.Count, Size: b.Size, Root: b.Root.String(), Time: b.Time, Signed: string(b.Note)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := evidence.Query{Revision: q.Get("revision"), Experiment: q.Get("experiment"), TraceID: q.Get("trace_id")}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &query.Since}, {"until", &query.Until}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				badRequest(w, f.name+"="+strconv.Quote(s)+" is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)")
				return
			}
			*f.dst = t
		}
	}
	limit, ok := queryUint(w, r, "limit", 100)
	if !ok {
		return
	}
	if limit > 1000 {
		limit = 1000
	}
	query.Limit = int(limit)
	if query.Revision == "" && query.Experiment == "" && query.TraceID == "" && query.Since.IsZero() && query.Until.IsZero() {
		badRequest(w, "give at least one of revision, experiment, trace_id, since, until")
		return
	}
	es, err := h.l.Search(r.Context(), query)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]EntryJSON, 0, len(es))
	for _, e := range es {
		out = append(out, entryJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

var _ http.Handler = (*Handler)(nil)
