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
	"failed": func(d decision.DimensionResult) bool { return d.Outcome == decision.Fail },
	"join":   strings.Join,
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
	Target    string
	Current   *RunRecord
	Live      LiveState
	Last      *RunRecord
	Runs      []*RunRecord
	Schedules []ScheduleView
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
		Msg: r.URL.Query().Get("msg"), Scenarios: scenarios.LibraryNames()}
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
		}
	}
	if len(recs) > 50 {
		recs = recs[:50]
	}
	d.Runs = recs
	s.render(w, r, "dashboard.html", "Dashboard", d)
}

func (s *Server) pageRun(w http.ResponseWriter, r *http.Request) {
	rec, err := s.runs.get(r.PathValue("id"))
	if errors.Is(err, errDamaged) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err != nil {
		http.Error(w, "no run "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	data := struct {
		Run     *RunRecord
		Running bool
		Live    LiveState
		Charts  []chart
	}{Run: rec, Charts: armCharts(rec.Events)}
	if cur := s.current(); cur != nil && cur.rec.ID == rec.ID {
		data.Running, data.Live = true, cur.live.State()
	}
	s.render(w, r, "run.html", "Run "+rec.ID, data)
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
	Entry      evidence.Entry
	TreeSize   uint64
	Signature  string
	Proof      string
	EnvHash    string
	Tampered   bool
	Predicate  *evidence.Predicate
	Dimensions string
}

func (s *Server) pageEntry(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		http.Error(w, "entry index: "+err.Error(), http.StatusBadRequest)
		return
	}
	l, err := s.openLedger(r.Context())
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
	defer l.Close()
	ctx := r.Context()
	e, err := l.Entry(ctx, i)
	if err != nil {
		writeLedgerErr(w, err)
		return
	}
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
	p.Tampered = strings.HasPrefix(p.Signature, "FAILED") || strings.HasPrefix(p.Proof, "FAILED") || strings.HasPrefix(p.EnvHash, "FAILED")
	if pred, err := predicateOf(e.Envelope); err == nil {
		p.Predicate = pred
		if pred.Decision != nil {
			p.Dimensions = string(pred.Decision.Dimensions)
		}
	}
	s.render(w, r, "entry.html", fmt.Sprintf("Entry %d", i), p)
}
