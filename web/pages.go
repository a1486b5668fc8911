package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/scenarios"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticDir embed.FS

func staticFS() fs.FS {
	sub, err := fs.Sub(staticDir, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}

var pageFuncs = template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.2f%%", f*100) },
	"f3":   func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"f4":   func(f float64) string { return fmt.Sprintf("%.4g", f) },
	"ts":   func(t time.Time) string { return fmtTime(t) },
	"hash": func(h [32]byte) string { return hex.EncodeToString(h[:]) },
	"short": func(s string) string {
		if len(s) > 16 {
			return s[:16] + "…"
		}
		return s
	},
	"lastStep": func(r *report.Report) *report.Step {
		if r == nil || len(r.Steps) == 0 {
			return nil
		}
		return &r.Steps[len(r.Steps)-1]
	},
	"failed":  func(d decision.DimensionResult) bool { return d.Outcome == decision.Fail },
	"trigger": triggerLabel,
	"join":    strings.Join,
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

var pages = template.Must(template.New("").Funcs(pageFuncs).ParseFS(templateFS, "templates/*.html"))

// page is what every page template gets.
type page struct {
	Title  string
	Caller Token
	Data   any
	Error  string
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	s.renderStatus(w, r, http.StatusOK, name, title, data)
}

// renderStatus renders page name with status code.
func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, code int, name, title string, data any) {
	t, _ := caller(r.Context())
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, page{Title: title, Caller: t, Data: data}); err != nil {
		s.log.Error("render", "page", name, "err", err)
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *Server) pageLogin(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "login.html", "Sign in", map[string]string{"Next": safeNext(r.URL.Query().Get("next")), "Error": r.URL.Query().Get("error")})
}

// safeNext keeps the redirect after login on this server: a path that
// starts with one slash, without control characters, spaces or
// backslashes (browsers drop tabs and newlines from URLs and read "\\" as
// "/", so "/\t/evil.example" and "/\\evil.example" would leave), no
// scheme and no host. Anything else is "/".
func safeNext(n string) string {
	if n == "" || len(n) > 2048 || !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") {
		return "/"
	}
	for _, c := range n {
		if c <= ' ' || c == 0x7f || c == '\\' || unicode.IsSpace(c) || !unicode.IsPrint(c) {
			return "/"
		}
	}
	u, err := url.Parse(n)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return n
}

// loginReadTimeout bounds how long the login form (the one request that
// reads a body before it knows who sent it) may take to arrive.
const loginReadTimeout = 10 * time.Second

func (s *Server) postLogin(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(loginReadTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if _, ok := s.opt.Tokens.Lookup(tok); !ok {
		http.Redirect(w, r, "/login?error=unknown+token&next="+urlEscape(next), http.StatusSeeOther)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || s.opt.SecureCookie})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) postLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || s.opt.SecureCookie})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type dashboard struct {
	Target string
	// Current is the live run shown in full (serve's own first), Live its
	// state; Others are further runs in progress (commands on the same
	// data directory).
	Current   *RunRecord
	Live      LiveState
	Others    []*RunRecord
	Last      *RunRecord
	LastChips []stepChips
	Runs      []*RunRecord
	Schedules []ScheduleView
	// Outcomes maps a run id to its verdict or status, for the schedules'
	// last results.
	Outcomes  map[string]string
	Decision  *DecisionInfo
	Operator  bool
	Auditor   bool
	Aborted   string
	Msg       string
	Scenarios []string
}

func (s *Server) pageDashboard(w http.ResponseWriter, r *http.Request) {
	t, _ := caller(r.Context())
	d := dashboard{Target: s.opt.Target, Schedules: s.sched.list(), Decision: s.decisionInfo(),
		Operator: t.Role == RoleOperator, Auditor: t.Role == RoleAuditor, Aborted: r.URL.Query().Get("aborted"),
		Msg: r.URL.Query().Get("msg"), Scenarios: scenarios.LibraryNames(), Outcomes: map[string]string{}}
	if cur := s.current(); cur != nil {
		rec := *cur.rec
		d.Current, d.Live = &rec, cur.live.State()
	}
	recs, err := s.runs.list()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, x := range recs {
		if d.Last == nil && x.Report != nil && len(x.Report.Steps) > 0 {
			d.Last = x
			d.LastChips = chipsOf(x.Report)
		}
		d.Outcomes[x.ID] = x.Status
		if v := x.Verdict(); v != "" {
			d.Outcomes[x.ID] = v
		}
		if x.Status != StatusRunning || d.Current != nil && x.ID == d.Current.ID {
			continue
		}
		if d.Current == nil {
			d.Current, d.Live = x, s.liveState(x.ID)
		} else {
			d.Others = append(d.Others, x)
		}
	}
	if len(recs) > 50 {
		recs = recs[:50]
	}
	d.Runs = recs
	s.render(w, r, "dashboard.html", "Dashboard", d)
}

// runPage is what the run page shows.
type runPage struct {
	Run     *RunRecord
	Running bool
	Live    LiveState
	Charts  []timeChart
	Steps   []stepChips
	// Recovery is each measured fault's time to recover.
	Recovery []recoveryBar
	Auditor  bool
	// Previous is the run of the same scenario before this one, LastPromote
	// the latest promoted one (when this run did not promote).
	Previous, LastPromote *RunRecord
}

func (s *Server) pageRun(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.findRun(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	t, _ := caller(r.Context())
	data := runPage{Run: rec, Charts: runCharts(s.runEvents(rec), rec.Report), Steps: chipsOf(rec.Report), Recovery: recoveryBars(rec.Report),
		Auditor: t.Role == RoleAuditor}
	if rec.Status == StatusRunning {
		data.Running, data.Live = true, s.liveState(rec.ID)
	}
	data.Previous, data.LastPromote = s.relatedRuns(rec)
	s.render(w, r, "run.html", "Run "+rec.ID, data)
}

// findRun reads run id for a page; a missing run gets the not-found page,
// a damaged record an error, and false.
func (s *Server) findRun(w http.ResponseWriter, r *http.Request, id string) (*RunRecord, bool) {
	rec, err := s.runs.get(id)
	if errors.Is(err, errDamaged) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	if err != nil {
		s.notFound(w, r, fmt.Sprintf("No run %q.", id), "The dashboard lists every run kept under this data directory.")
		return nil, false
	}
	return rec, true
}

// relatedRuns finds, among the runs of rec's scenario started before it,
// the latest one and the latest that promoted (when rec did not).
func (s *Server) relatedRuns(rec *RunRecord) (prev, promote *RunRecord) {
	recs, err := s.runs.list()
	if err != nil {
		return nil, nil
	}
	for _, x := range recs { // newest first
		if x.ID == rec.ID || x.Scenario != rec.Scenario || x.Started.After(rec.Started) || x.Status == StatusRunning {
			continue
		}
		if prev == nil {
			prev = x
		}
		if promote == nil && x.Verdict() == "promote" && rec.Verdict() != "promote" {
			promote = x
		}
	}
	return prev, promote
}

// comparePage shows two runs side by side.
type comparePage struct {
	A, B       *RunRecord
	ACharts    []timeChart
	BCharts    []timeChart
	Rows       []compareRow
	SameTarget bool
}

func (s *Server) pageCompare(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, ok := s.findRun(w, r, q.Get("a"))
	if !ok {
		return
	}
	b, ok := s.findRun(w, r, q.Get("b"))
	if !ok {
		return
	}
	p := comparePage{A: a, B: b, ACharts: runCharts(s.runEvents(a), a.Report), BCharts: runCharts(s.runEvents(b), b.Report),
		Rows: compareSteps(a.Report, b.Report), SameTarget: a.Scenario == b.Scenario}
	s.render(w, r, "compare.html", "Compare "+a.ID+" and "+b.ID, p)
}

// notFound answers a page that does not exist with the site's layout.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request, what, hint string) {
	s.renderStatus(w, r, http.StatusNotFound, "notfound.html", "Not found", map[string]string{"What": what, "Hint": hint})
}

// fragmentCharts answers the charts of a run as an HTML fragment: the
// live dashboard and run page fetch it again as the run goes.
func (s *Server) fragmentCharts(w http.ResponseWriter, r *http.Request) {
	rec, err := s.runs.get(r.PathValue("id"))
	if err != nil {
		http.Error(w, "no run "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, "charts", runCharts(s.runEvents(rec), rec.Report)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// apiRunReport answers the report/v1 of a run alone.
func (s *Server) apiRunReport(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.apiRun(w, r)
	if !ok {
		return
	}
	if rec.Report == nil {
		writeErr(w, http.StatusNotFound, "no_report", fmt.Sprintf("run %q has no report (status %s)", rec.ID, rec.Status), "a run has its report when it ends")
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%s.report.json", rec.ID))
	writeJSON(w, http.StatusOK, rec.Report)
}

func (s *Server) uiAbort(w http.ResponseWriter, r *http.Request) {
	runs, _, err := s.abortAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/?aborted="+strconv.Itoa(len(runs)), http.StatusSeeOther)
}

// uiStartRun starts a run from the dashboard form.
func (s *Server) uiStartRun(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("scenario"))
	doc, err := s.resolveScenario(name)
	if err != nil {
		http.Redirect(w, r, "/?msg="+urlEscape("scenario "+name+": "+err.Error()), http.StatusSeeOther)
		return
	}
	t, _ := caller(r.Context())
	rec, err := s.start(RunRequest{Scenario: name, Doc: doc, Revision: strings.TrimSpace(r.PostForm.Get("revision")), Trigger: "ui:" + t.Name})
	if err != nil {
		http.Redirect(w, r, "/?msg="+urlEscape(err.Error()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/?msg="+urlEscape("started "+rec.ID), http.StatusSeeOther)
}

// uiCreateSchedule adds a schedule from the dashboard form.
func (s *Server) uiCreateSchedule(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostForm
	d := Schedule{Name: strings.TrimSpace(f.Get("name")), Cron: strings.TrimSpace(f.Get("cron")), Scenario: strings.TrimSpace(f.Get("scenario")),
		Revision: strings.TrimSpace(f.Get("revision")), Source: "api", Created: s.now().UTC()}
	msg := "schedule " + d.Name + " created"
	if err := s.sched.add(d); err != nil {
		msg = "schedule not created: " + err.Error()
	} else {
		s.sched.mu.Lock()
		err = s.sched.saveLocked()
		s.sched.mu.Unlock()
		if err != nil {
			msg = "saving schedules: " + err.Error()
		}
	}
	http.Redirect(w, r, "/?msg="+urlEscape(msg)+"#schedules", http.StatusSeeOther)
}

func (s *Server) uiDeleteSchedule(w http.ResponseWriter, r *http.Request) {
	msg := "schedule " + r.PathValue("name") + " deleted"
	if err := s.sched.remove(r.PathValue("name")); err != nil {
		msg = "schedule not deleted: " + err.Error()
	}
	http.Redirect(w, r, "/?msg="+urlEscape(msg)+"#schedules", http.StatusSeeOther)
}

type explorer struct {
	Empty      bool
	Origin     string
	Checkpoint evidence.SignedCheckpoint
	CPVerified string
	Blocks     []blockRow
	Entries    []evidence.Entry
	Query      evidence.Query
	Searched   bool
	// Older is the "before" index of the next page of entries (0: none).
	Older uint64
	// Anchor is the ledger's latest anchoring in an outside witness.
	Anchor anchorView
}

func (s *Server) pageExplorer(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ex := explorer{Query: evidence.Query{Revision: strings.TrimSpace(q.Get("revision")), Experiment: strings.TrimSpace(q.Get("experiment")),
		TraceID: strings.TrimSpace(q.Get("trace")), Limit: 100}}
	ex.Searched = ex.Query.Revision != "" || ex.Query.Experiment != "" || ex.Query.TraceID != ""
	l, err := s.openLedger(r.Context())
	if evidence.KindOf(err) == evidence.KindNotFound {
		ex.Empty = true
		s.render(w, r, "explorer.html", "Block explorer", ex)
		return
	}
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
	defer l.Close()
	ctx := r.Context()
	ex.Origin = l.Origin()
	if cp, err := l.Checkpoint(ctx); err == nil {
		ex.Checkpoint = cp
		ex.CPVerified = "verified"
		if pk := l.PublicKeys(); pk == nil || pk.Checkpoint == nil {
			ex.CPVerified = "no verifier key"
		} else if _, err := evidence.OpenCheckpoint(cp.Note, pk.Checkpoint); err != nil {
			ex.CPVerified = "FAILED: " + err.Error()
		}
	} else {
		ex.CPVerified = "unavailable: " + err.Error()
	}
	blocks, err := l.Blocks(ctx, l.BlockCount(), 20)
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
	ex.Blocks = blockRows(ctx, l, blocks)
	ex.Anchor = ledgerAnchor(ctx, l)
	if ex.Searched {
		ex.Entries, err = l.Search(ctx, ex.Query)
	} else {
		size := l.Size()
		if b, perr := strconv.ParseUint(q.Get("before"), 10, 64); perr == nil && b < size {
			size = b
		}
		from := uint64(0)
		if size > 50 {
			from = size - 50
		}
		ex.Older = from
		for i := size; i > from; i-- {
			e, eerr := l.Entry(ctx, i-1)
			if eerr != nil {
				err = eerr
				break
			}
			ex.Entries = append(ex.Entries, e)
		}
	}
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
	s.render(w, r, "explorer.html", "Block explorer", ex)
}

// blockRow is a block with what the explorer checked about it.
type blockRow struct {
	evidence.Block
	Status string
}

// blockRows checks each block's signed header against the checkpoint key,
// its root against the tree, and its link to the block before it.
func blockRows(ctx context.Context, l *evidence.Ledger, blocks []evidence.Block) []blockRow {
	pk := l.PublicKeys()
	out := make([]blockRow, len(blocks))
	for i, b := range blocks {
		st := "verified"
		switch {
		case pk == nil || pk.Checkpoint == nil:
			st = "no verifier key"
		default:
			n, err := note.Open(b.Note, note.VerifierList(pk.Checkpoint))
			if err != nil {
				st = "FAILED: signature: " + err.Error()
			} else if tlog.Hash(sha256.Sum256([]byte(n.Text))) != b.Hash {
				st = "FAILED: header hash"
			} else if root, err := l.TreeRoot(ctx, b.Size); err != nil || root != b.Root {
				st = "FAILED: root does not match the tree"
			}
		}
		for _, p := range blocks {
			if p.Height+1 == b.Height && p.Hash != b.Prev && strings.HasPrefix(st, "verified") {
				st = "FAILED: previous-block link"
			}
		}
		out[i] = blockRow{Block: b, Status: st}
	}
	return out
}

type entryPage struct {
	Entry evidence.Entry
	// RunKept says the run the entry records has its page here.
	RunKept   bool
	TreeSize  uint64
	Signature string
	Proof     string
	EnvHash   string
	// Anchor is the first anchoring in an outside witness that covers
	// the entry.
	Anchor     anchorView
	Tampered   bool
	Predicate  *evidence.Predicate
	Dimensions string
	// Blobs are the raw evidence the statement binds by digest.
	Blobs entryBlobs
}

// entryOfPath opens the ledger and reads the entry the path's {index}
// names. When it cannot, it has answered (the styled not-found page, or
// the ledger's error) and ok is false; otherwise the caller closes l.
func (s *Server) entryOfPath(w http.ResponseWriter, r *http.Request) (l *evidence.Ledger, e evidence.Entry, ok bool) {
	i, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		s.notFound(w, r, fmt.Sprintf("No ledger entry %q: an entry is named by its index, a number.", r.PathValue("index")), "The block explorer lists the entries.")
		return nil, e, false
	}
	l, err = s.openLedger(r.Context())
	if evidence.KindOf(err) == evidence.KindNotFound {
		s.notFound(w, r, "The ledger is empty: the first run creates it.", "")
		return nil, e, false
	}
	if err != nil {
		writeLedgerErr(w, err)
		return nil, e, false
	}
	e, err = l.Entry(r.Context(), i)
	if err != nil {
		if evidence.KindOf(err) == evidence.KindNotFound {
			s.notFound(w, r, fmt.Sprintf("No ledger entry %d (the ledger holds %d).", i, l.Size()), "The block explorer lists the entries.")
		} else {
			writeLedgerErr(w, err)
		}
		l.Close()
		return nil, e, false
	}
	return l, e, true
}

func (s *Server) pageEntry(w http.ResponseWriter, r *http.Request) {
	l, e, ok := s.entryOfPath(w, r)
	if !ok {
		return
	}
	defer l.Close()
	ctx := r.Context()
	i := e.Index
	if r.URL.Query().Get("download") == "envelope" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=entry-%d.dsse.json", i))
		w.Write(e.Envelope)
		return
	}
	p := entryPage{Entry: e, TreeSize: l.Size(), Signature: "verified", Proof: "verified", EnvHash: "verified"}
	if sum := sha256.Sum256(e.Envelope); hex.EncodeToString(sum[:]) != e.Record.EnvelopeSHA256 {
		p.EnvHash = "FAILED: the stored envelope's SHA-256 is " + hex.EncodeToString(sum[:]) + ", the leaf binds " + e.Record.EnvelopeSHA256
	}
	pk := l.PublicKeys()
	env, err := evidence.ParseEnvelope(e.Envelope)
	if err == nil && pk != nil {
		_, err = pk.VerifyEnvelope(ctx, env)
	}
	if err != nil || pk == nil {
		p.Signature = fmt.Sprintf("FAILED: %v", err)
	}
	if tp, err := l.TlogProof(ctx, i, p.TreeSize); err != nil {
		p.Proof = "FAILED: " + err.Error()
	} else if pk == nil || pk.Checkpoint == nil {
		p.Proof = "no verifier key"
	} else if _, err := evidence.VerifyTlogProof(tp, e.Leaf, pk.Checkpoint); err != nil {
		p.Proof = "FAILED: " + err.Error()
	}
	p.Anchor = entryAnchor(ctx, l, i)
	p.Tampered = strings.HasPrefix(p.Signature, "FAILED") || strings.HasPrefix(p.Proof, "FAILED") || strings.HasPrefix(p.EnvHash, "FAILED")
	if id := e.Record.RunID; id != "" {
		if _, err := s.runs.get(id); err == nil {
			p.RunKept = true
		}
	}
	if pred, err := predicateOf(e.Envelope); err == nil {
		p.Predicate = pred
		if pred.Decision != nil {
			p.Dimensions = string(pred.Decision.Dimensions)
		}
		p.Blobs = loadEntryBlobs(l, i, pred)
	}
	s.render(w, r, "entry.html", fmt.Sprintf("Entry %d", i), p)
}
