package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

// maxRenderedBlob is the largest blob the entry page reads to render it
// (faults, trace ids); larger ones are only listed and linked.
const maxRenderedBlob = 1 << 20

// maxTraceIDsShown bounds the trace ids the entry page lists per arm.
const maxTraceIDsShown = 100

// blobRow is one blob of an entry as its page lists it.
type blobRow struct {
	evidence.BlobRef
	URL string
	// Missing says the blob store does not hold it.
	Missing bool
}

// entryBlobs is what the entry page shows of an entry's blobs.
type entryBlobs struct {
	Rows []blobRow
	// Faults are faults.json's faults as the page shows them, and
	// Resilience its per kind and arm figures.
	Faults     []faultRow
	Resilience []report.KindResilience
	// Traces are the trace samples per arm, at most maxTraceIDsShown ids
	// each.
	Traces []gameday.TracesBlob
}

// faultRow is one fault of faults.json with its times formatted.
type faultRow struct {
	gameday.FaultLine
	InPlace, RecoveredAfter string
}

// seconds formats an optional duration in seconds, or none when absent.
func seconds(v *float64, none string) string {
	if v == nil {
		return none
	}
	return fmt.Sprintf("%.1f s", *v)
}

// blobURL is where the explorer serves blob d of entry i.
func blobURL(i uint64, d evidence.Digest) string {
	return fmt.Sprintf("/explorer/entries/%d/blobs/sha256/%s", i, d.Hex())
}

// loadEntryBlobs lists the predicate's blobs and decodes the small ones the
// page renders. A blob that is missing or does not match its digest is
// listed (and not rendered).
func loadEntryBlobs(l *evidence.Ledger, index uint64, p *evidence.Predicate) entryBlobs {
	var out entryBlobs
	for _, ref := range p.BlobRefs() {
		row := blobRow{BlobRef: ref, URL: blobURL(index, ref.Digest)}
		if l.Blobs().File(ref.Digest) == "" {
			row.Missing = true
		}
		out.Rows = append(out.Rows, row)
		if row.Missing || ref.Size > maxRenderedBlob {
			continue
		}
		switch {
		case ref.Name == gameday.BlobFaults:
			var f gameday.FaultsBlob
			if data, err := l.Blobs().Get(ref.Digest); err == nil && json.Unmarshal(data, &f) == nil {
				for _, x := range f.Faults {
					out.Faults = append(out.Faults, faultRow{FaultLine: x, InPlace: seconds(x.DurationS, "not removed"), RecoveredAfter: seconds(x.RecoveryS, "—")})
				}
				out.Resilience = f.Resilience
			}
		case strings.HasPrefix(ref.Name, "traces-") && strings.HasSuffix(ref.Name, ".json"):
			var tb gameday.TracesBlob
			if data, err := l.Blobs().Get(ref.Digest); err == nil && json.Unmarshal(data, &tb) == nil {
				if len(tb.Sample) > maxTraceIDsShown {
					tb.Sample = tb.Sample[:maxTraceIDsShown]
				}
				out.Traces = append(out.Traces, tb)
			}
		}
	}
	return out
}

// safeBlobTypes are the media types a blob is served as; any other is
// served as application/octet-stream, so a blob never renders as a page.
var safeBlobTypes = map[string]bool{"application/json": true, "application/jsonl": true, "application/x-ndjson": true, "text/plain": true}

// pageBlob serves one blob of an entry, with the media type its reference
// in the entry's signed statement gives it, after checking its content
// against its digest. A blob the entry does not reference, or that the
// store does not hold, is the styled not-found page.
func (s *Server) pageBlob(w http.ResponseWriter, r *http.Request) {
	l, e, ok := s.entryOfPath(w, r)
	if !ok {
		return
	}
	defer l.Close()
	i := e.Index
	d, err := evidence.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		s.notFound(w, r, fmt.Sprintf("No blob %q: a blob is named by the 64 lowercase hex digits of its SHA-256.", r.PathValue("hex")), fmt.Sprintf("Entry %d lists its blobs.", i))
		return
	}
	var ref *evidence.BlobRef
	if p, err := predicateOf(e.Envelope); err == nil {
		for _, b := range p.BlobRefs() {
			if b.Digest == d {
				ref = &b
				break
			}
		}
	}
	if ref == nil {
		s.notFound(w, r, fmt.Sprintf("Entry %d references no blob %s.", i, d), fmt.Sprintf("Entry %d lists its blobs.", i))
		return
	}
	data, err := l.Blobs().Get(d)
	switch evidence.KindOf(err) {
	case 0:
	case evidence.KindNotFound:
		s.notFound(w, r, fmt.Sprintf("Blob %s (%s) of entry %d is not in the blob store.", ref.Name, d, i), "The signed statement binds it by digest: restore it from a backup or an export, then run chaosgate ledger verify.")
		return
	default:
		writeLedgerErr(w, fmt.Errorf("blob %s (%s) of entry %d: %w", ref.Name, d, i, err))
		return
	}
	ct := ref.MediaType
	if !safeBlobTypes[ct] {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	disp := "inline"
	if r.URL.Query().Get("download") != "" {
		disp = "attachment"
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("%s; filename=%q", disp, safeFilename(ref.Name)))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// safeFilename keeps a blob name usable as a download file name.
func safeFilename(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "blob"
	}
	return string(b)
}
