package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/fabrictest"
	"github.com/chaosgate/chaosgate/scenarios"
	"github.com/chaosgate/chaosgate/web"
)

// fabricSetup is a data dir (DATA/keys, DATA/ledger) and the in-process
// Fabric gateway with a client identity on disk.
type fabricSetup struct {
	data, keys, ledger string
	peer               *fabrictest.Peer
	certFile, keyFile  string
}

func newFabricSetup(t *testing.T) *fabricSetup {
	t.Helper()
	data := t.TempDir()
	s := &fabricSetup{data: data, keys: filepath.Join(data, evidence.KeysSubdir), ledger: filepath.Join(data, evidence.LedgerSubdir), peer: fabrictest.Start(t)}
	if _, errs, code := cli(t, "keygen", "--dir", s.keys, "--origin", "example.test/anchor"); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	s.certFile, s.keyFile = fabrictest.NewIdentity(t, "Org1MSP").WriteFiles(t, t.TempDir())
	return s
}

// fabricArgs are the --fabric-* flags that reach the test peer.
func (s *fabricSetup) fabricArgs() []string {
	return []string{"--fabric-peer", s.peer.Addr, "--fabric-tls-ca-file", s.peer.CAFile, "--fabric-server-name", fabrictest.ServerName,
		"--fabric-msp-id", "Org1MSP", "--fabric-cert-file", s.certFile, "--fabric-key-file", s.keyFile}
}

func (s *fabricSetup) base() []string { return []string{"--keys", s.keys, "--ledger", s.ledger} }

// appendEntries appends n external statements through `ledger append`.
func (s *fabricSetup) appendEntries(t *testing.T, from, n int) {
	t.Helper()
	stmt := filepath.Join(t.TempDir(), "st.json")
	for i := from; i < from+n; i++ {
		if err := os.WriteFile(stmt, []byte(externalStatement(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := cli(t, append([]string{"ledger", "append", "--statement", stmt, "--revision", fmt.Sprintf("v%d", i)}, s.base()...)...); code != 0 {
			t.Fatalf("append %d: %s", i, errs)
		}
	}
}

func (s *fabricSetup) anchorJSON(t *testing.T) anchorJSON {
	t.Helper()
	out, errs, code := cli(t, append(append([]string{"ledger", "anchor", "-o", "json"}, s.base()...), s.fabricArgs()...)...)
	if code != 0 {
		t.Fatalf("ledger anchor: exit %d: %s", code, errs)
	}
	var a anchorJSON
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("ledger anchor output %q: %v", out, err)
	}
	return a
}

// explorer serves the data dir's web handler as serve does.
func explorer(t *testing.T, data string) func(path string) (int, []byte) {
	t.Helper()
	const token = "0123456789abcdef-auditor"
	tokens, err := web.ParseTokens([]byte(`tokens: [{name: audit, role: auditor, token: "`+token+`"}]`), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(web.Options{DataDir: data, Tokens: tokens, Run: func(context.Context, web.RunRequest, *web.Live) (*web.RunResult, error) {
		return nil, errors.New("no runs here")
	}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close(context.Background())
	})
	return func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
}

// TestLedgerAnchorShownInTheExplorerAndVerified drives the commands: entries
// appended, `ledger anchor` prints the transaction and block and records
// them, the explorer's entry page, overview and entry JSON show the
// covering anchor (or "not anchored yet"), and `ledger verify --anchors`
// passes, then names a changed anchored digest (exit 1).
func TestLedgerAnchorShownInTheExplorerAndVerified(t *testing.T) {
	s := newFabricSetup(t)
	s.appendEntries(t, 0, 3)
	first := s.anchorJSON(t)
	if first.Status != "anchored" || first.TreeSize != 3 || first.EntriesRecorded != 3 || first.TxID == "" || first.Block == 0 || first.Block != s.peer.Block() ||
		first.Channel != "evidence" || first.Chaincode != "chaosgate" || first.Anchor == nil || first.Anchor.TxID != first.TxID {
		t.Fatalf("first anchor: %+v (peer at block %d)", first, s.peer.Block())
	}
	cp, _, _ := cli(t, append([]string{"ledger", "checkpoint", "-o", "json"}, s.base()...)...)
	if !strings.Contains(cp, first.Root) {
		t.Fatalf("anchored root %s is not the checkpoint's:\n%s", first.Root, cp)
	}
	// Nothing new: nothing submitted, the recorded transaction repeated.
	again := s.anchorJSON(t)
	if again.Status != "already_anchored" || again.TxID != first.TxID || s.peer.Block() != first.Block {
		t.Fatalf("second anchor: %+v", again)
	}
	s.appendEntries(t, 3, 2)
	out, errs, code := cli(t, append(append([]string{"ledger", "anchor"}, s.base()...), s.fabricArgs()...)...)
	m := regexp.MustCompile(`(?m)^transaction\s+(\S+)\nblock\s+(\d+)$`).FindStringSubmatch(out)
	if code != 0 || m == nil || !regexp.MustCompile(`(?m)^tree size\s+5$`).MatchString(out) || !strings.Contains(out, "entries recorded  2") {
		t.Fatalf("third anchor: exit %d\n%s%s", code, out, errs)
	}
	secondTx, secondBlock := m[1], m[2]
	as, err := evidence.ReadAnchors(s.ledger)
	if err != nil || len(as) != 2 || as[1].TxID != secondTx || fmt.Sprint(as[1].Block) != secondBlock || as[1].TreeSize != 5 {
		t.Fatalf("anchors record: %+v %v", as, err)
	}
	s.appendEntries(t, 5, 1) // entry 5: not anchored yet

	get := explorer(t, s.data)
	for _, c := range []struct {
		index     int
		tx, block string
	}{{0, first.TxID, fmt.Sprint(first.Block)}, {2, first.TxID, fmt.Sprint(first.Block)}, {3, secondTx, secondBlock}, {4, secondTx, secondBlock}} {
		code, page := get(fmt.Sprintf("/explorer/entries/%d", c.index))
		if code != 200 || !bytes.Contains(page, []byte(`<code id="anchor-tx">`+c.tx+`</code>`)) || !bytes.Contains(page, []byte(`<span id="anchor-block">`+c.block+`</span>`)) ||
			!bytes.Contains(page, []byte(`<span id="anchor-check">recorded</span>`)) {
			t.Fatalf("entry %d page (want tx %s, block %s): %d\n%s", c.index, c.tx, c.block, code, page)
		}
		code, body := get(fmt.Sprintf("/api/v1/ledger/entries/%d", c.index))
		var ej struct {
			Anchored bool             `json:"anchored"`
			Anchor   *evidence.Anchor `json:"anchor"`
		}
		if code != 200 || json.Unmarshal(body, &ej) != nil || !ej.Anchored || ej.Anchor == nil || ej.Anchor.TxID != c.tx || fmt.Sprint(ej.Anchor.Block) != c.block {
			t.Fatalf("entry %d JSON: %d %s", c.index, code, body)
		}
	}
	code, page := get("/explorer/entries/5")
	if code != 200 || !bytes.Contains(page, []byte(`<span id="anchor-check">not anchored yet</span>`)) || bytes.Contains(page, []byte(`id="anchor-tx"`)) {
		t.Fatalf("entry 5 page: %d\n%s", code, page)
	}
	code, body := get("/api/v1/ledger/entries/5")
	if code != 200 || !bytes.Contains(body, []byte(`"anchored":false`)) || bytes.Contains(body, []byte(`"anchor":`)) {
		t.Fatalf("entry 5 JSON: %d %s", code, body)
	}
	code, page = get("/explorer")
	if code != 200 || !bytes.Contains(page, []byte(`<span id="anchor-size">5</span>`)) || !bytes.Contains(page, []byte(`<code id="anchor-tx">`+secondTx+`</code>`)) {
		t.Fatalf("explorer overview: %d\n%s", code, page)
	}
	code, body = get("/api/v1/ledger/anchors")
	var aj struct {
		Anchors []evidence.Anchor `json:"anchors"`
		Latest  *evidence.Anchor  `json:"latest"`
	}
	if code != 200 || json.Unmarshal(body, &aj) != nil || len(aj.Anchors) != 2 || aj.Latest == nil || aj.Latest.TxID != secondTx {
		t.Fatalf("anchors JSON: %d %s", code, body)
	}

	// verify --anchors: the local checks and Fabric agree.
	verify := append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), s.fabricArgs()...)
	out, errs, code = cli(t, verify...)
	if code != 0 || !regexp.MustCompile(`(?m)^anchors\s+OK: Fabric channel evidence anchored tree size 5, root `).MatchString(out) ||
		!strings.Contains(out, "5 entries' digests match, 0 covered by the anchored root only; 2 local anchor records match") {
		t.Fatalf("verify --anchors: exit %d\n%s%s", code, out, errs)
	}
	out, _, code = cli(t, append(verify, "-o", "json")...)
	var vj struct {
		OK      bool `json:"ok"`
		Anchors struct {
			OK       bool   `json:"ok"`
			TreeSize uint64 `json:"anchored_tree_size"`
			Checked  int    `json:"entries_checked"`
		} `json:"anchors"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &vj) != nil || !vj.OK || !vj.Anchors.OK || vj.Anchors.TreeSize != 5 || vj.Anchors.Checked != 5 {
		t.Fatalf("verify --anchors -o json: exit %d\n%s", code, out)
	}
	// The anchored state altered in the channel: entry 3 named, exit 1.
	lh, _, ok := s.peer.Evidence("example.test/anchor", 3)
	if !ok {
		t.Fatal("entry 3 is not recorded in the channel")
	}
	s.peer.SetEvidence("example.test/anchor", 3, lh, strings.Repeat("ab", 32))
	out, errs, code = cli(t, verify...)
	if code != exitBlock || !strings.Contains(errs, "verify --anchors: entry 3: local envelope SHA-256") || !regexp.MustCompile(`(?m)^anchors\s+FAILED: entry 3: `).MatchString(out) {
		t.Fatalf("verify --anchors with an altered anchor: exit %d\n%s%s", code, out, errs)
	}
	// Fabric flags without --anchors are a usage error.
	if _, errs, code := cli(t, append(append([]string{"ledger", "verify"}, s.base()...), "--fabric-peer", "x:1")...); code != exitUsage || !strings.Contains(errs, "--fabric-peer: only with --anchors") {
		t.Fatalf("fabric flag without --anchors: exit %d %s", code, errs)
	}
}

// TestLedgerVerifyAnchorsNamesALocalEntryChangedAfterAnchoring: a ledger
// rebuilt with the same keys after it was anchored (entry 1 another
// statement, every entry another time stamp) passes the local verification
// (every hash and signature is consistent) but not --anchors, which names
// the first entry that differs, entry 0; and it cannot be anchored over
// what Fabric holds.
func TestLedgerVerifyAnchorsNamesALocalEntryChangedAfterAnchoring(t *testing.T) {
	s := newFabricSetup(t)
	s.appendEntries(t, 0, 4)
	s.anchorJSON(t)
	anchors, err := os.ReadFile(filepath.Join(s.ledger, evidence.AnchorsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(s.ledger); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 100, 2, 3} {
		s.appendEntries(t, i, 1)
	}
	if _, errs, code := cli(t, append([]string{"ledger", "verify"}, s.base()...)...); code != 0 {
		t.Fatalf("local verify of the rebuilt ledger: %d %s", code, errs)
	}
	verify := append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), s.fabricArgs()...)
	// Without the old anchors record, Fabric names entry 1.
	out, errs, code := cli(t, verify...)
	if code != exitBlock || !strings.Contains(errs, "verify --anchors: entry 0: local leaf hash") || !strings.Contains(errs, "hint: the entry was changed after it was anchored") {
		t.Fatalf("rebuilt ledger: exit %d\n%s%s", code, out, errs)
	}
	// With it, the local record already disagrees with the local tree.
	os.WriteFile(filepath.Join(s.ledger, evidence.AnchorsFile), anchors, 0o600)
	if _, errs, code := cli(t, verify...); code != exitBlock || !strings.Contains(errs, "anchors record: transaction ") || !strings.Contains(errs, "the local ledger was rewritten after it was anchored") {
		t.Fatalf("rebuilt ledger with the old anchors record: exit %d %s", code, errs)
	}
	if _, errs, code := cli(t, append(append([]string{"ledger", "anchor"}, s.base()...), s.fabricArgs()...)...); code != exitBlock || !strings.Contains(errs, "rewritten") {
		t.Fatalf("anchoring the rebuilt ledger: exit %d %s", code, errs)
	}
	// The explorer does not vouch for the old anchor over the new tree.
	code, page := explorer(t, s.data)("/explorer/entries/1")
	if code != 200 || !bytes.Contains(page, []byte(`<span id="anchor-check">FAILED: the local root at tree size 4 is `)) {
		t.Fatalf("entry page of a rebuilt ledger: %d\n%s", code, page)
	}
}

// TestLedgerVerifyAnchorsAfterALocalByteFlip: a byte of entry 2 changed in
// the bbolt file: verify exits 1 naming entry 2.
func TestLedgerVerifyAnchorsAfterALocalByteFlip(t *testing.T) {
	s := newFabricSetup(t)
	s.appendEntries(t, 0, 4)
	s.anchorJSON(t)
	db, err := bolt.Open(filepath.Join(s.ledger, evidence.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		v := append([]byte(nil), b.Get(k)...)
		v[len(v)-5] ^= 1
		return b.Put(k, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := cli(t, append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), s.fabricArgs()...)...)
	if code != exitBlock || !strings.Contains(errs, "verify: entry 2: ") || !regexp.MustCompile(`(?m)^anchors\s+FAILED: entry 2: `).MatchString(out) {
		t.Fatalf("byte flip: exit %d\n%s%s", code, out, errs)
	}
}

// TestLedgerAnchorConfigurationAndConnectionErrors: every bad setting is
// exit 2 naming the flag (or the file and field) with a hint; an
// unreachable or misnamed peer is exit 2 with a hint, for anchor and for
// verify --anchors; nothing is recorded.
func TestLedgerAnchorConfigurationAndConnectionErrors(t *testing.T) {
	s := newFabricSetup(t)
	s.appendEntries(t, 0, 2)
	openKey := filepath.Join(t.TempDir(), "key.pem")
	b, _ := os.ReadFile(s.keyFile)
	os.WriteFile(openKey, b, 0o644)
	without := func(flag string) []string {
		var out []string
		args := s.fabricArgs()
		for i := 0; i < len(args); i += 2 {
			if args[i] != flag {
				out = append(out, args[i], args[i+1])
			}
		}
		return out
	}
	with := func(flag, v string) []string { return append(without(flag), flag, v) }
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no peer", without("--fabric-peer"), "--fabric-peer: the peer's gateway address is required (hint: host:port"},
		{"no CA", without("--fabric-tls-ca-file"), "--fabric-tls-ca-file: the peer's TLS CA certificate file is required (hint:"},
		{"no MSP", without("--fabric-msp-id"), "--fabric-msp-id: the client's MSP id is required (hint: e.g. Org1MSP)"},
		{"no cert", without("--fabric-cert-file"), "--fabric-cert-file: the client's certificate file is required"},
		{"no key", without("--fabric-key-file"), "--fabric-key-file: the client's private key file is required"},
		{"peer not host:port", with("--fabric-peer", "peer0"), `--fabric-peer: "peer0" is not host:port (hint: e.g. localhost:7051)`},
		{"key readable by others", with("--fabric-key-file", openKey), "--fabric-key-file: " + openKey + " has mode 0644: a private key must not be readable or writable by group or others (hint: chmod 600 " + openKey},
		{"cert is the CA file", with("--fabric-key-file", s.peer.CAFile), "--fabric-key-file: " + s.peer.CAFile},
		{"no server name", without("--fabric-server-name"), "the TLS handshake failed: the CA file must hold the CA of the peer's TLS certificate, and the server name must be a name in that certificate"},
	} {
		for _, cmdArgs := range [][]string{{"ledger", "anchor"}, {"ledger", "verify", "--anchors"}} {
			_, errs, code := cli(t, append(append(cmdArgs, s.base()...), c.args...)...)
			if code != exitUsage || !strings.Contains(errs, c.want) || !strings.Contains(errs, "hint:") {
				t.Errorf("%s, %v: exit %d: %s\nwant %q", c.name, cmdArgs, code, errs, c.want)
			}
		}
	}
	// Nothing anchored yet: verify --anchors says so (exit 2).
	if _, errs, code := cli(t, append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), s.fabricArgs()...)...); code != exitUsage || !strings.Contains(errs, "nothing of \"example.test/anchor\" is anchored in channel evidence yet (hint: anchor it first") {
		t.Fatalf("verify before anchoring: exit %d %s", code, errs)
	}
	// The peer gone.
	s.peer.Stop()
	for _, cmdArgs := range [][]string{{"ledger", "anchor"}, {"ledger", "verify", "--anchors"}} {
		_, errs, code := cli(t, append(append(cmdArgs, s.base()...), s.fabricArgs()...)...)
		if code != exitUsage || !strings.Contains(errs, "Unavailable") || !strings.Contains(errs, "hint: is the peer's gateway reachable") {
			t.Errorf("stopped peer, %v: exit %d %s", cmdArgs, code, errs)
		}
	}
	if as, err := evidence.ReadAnchors(s.ledger); err != nil || len(as) != 0 {
		t.Fatalf("anchors recorded after failures: %+v %v", as, err)
	}
}

// writeLedgerConfig writes a chaosgate.yaml with a ledger block anchoring
// in the test peer every `every` entries.
func (s *fabricSetup) writeLedgerConfig(t *testing.T, every int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chaosgate.yaml")
	doc := fmt.Sprintf("data_dir: %s\nledger:\n  anchor: fabric\n  every: %d\n  fabric:\n    peer: %s\n    tls_ca_file: %s\n    server_name: %s\n    msp_id: Org1MSP\n    cert_file: %s\n    key_file: %s\n    timeout: 10s\n",
		s.data, every, s.peer.Addr, s.peer.CAFile, fabrictest.ServerName, s.certFile, s.keyFile)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeAnchorsEverySecondRun: serve with ledger.anchor: fabric and
// every: 2 anchors after the second and the fourth run (each run records
// one signed entry) and not after the first and third; a run that ends
// while the peer is down keeps its verdict, and its entries are anchored
// by the next anchoring.
func TestServeAnchorsEverySecondRun(t *testing.T) {
	s := newFabricSetup(t)
	cfgFile := s.writeLedgerConfig(t, 2)
	cfg, err := web.LoadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var stderr anchorLog
	onEnd, err := serveAnchorer(&stderr, cfg.Ledger, cfgFile, s.data, nil)
	if err != nil || onEnd == nil {
		t.Fatalf("serveAnchorer: %v", err)
	}
	if !strings.Contains(stderr.String(), "anchoring the ledger in Fabric channel evidence at "+s.peer.Addr+" once 2 entries are pending") {
		t.Fatalf("serve does not say it anchors: %q", stderr.String())
	}
	tokens, err := web.ParseTokens([]byte(`tokens: [{name: op, role: operator, token: "0123456789abcdef-op"}]`), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan string, 1)
	srv, err := web.New(web.Options{DataDir: s.data, Tokens: tokens, OnRunEnd: func(r *web.RunRecord) { onEnd(r); ended <- r.Verdict() },
		// Each run records one signed entry in DATA/ledger, as a game day does.
		Run: func(ctx context.Context, req web.RunRequest, live *web.Live) (*web.RunResult, error) {
			k, err := evidence.LoadKeys(s.keys)
			if err != nil {
				return nil, err
			}
			l, err := evidence.Open(ctx, s.ledger, evidence.Options{Keys: k, Create: true})
			if err != nil {
				return nil, err
			}
			defer l.Close()
			if _, err := l.Record(ctx, req.Revision, &evidence.Predicate{RunID: req.ID, Experiment: evidence.Experiment{Name: req.Scenario},
				Decision: &evidence.Decision{Verdict: "block"}}); err != nil {
				return nil, err
			}
			return &web.RunResult{Reason: "recorded"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	doc, err := scenarios.Open("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	run := func(rev string) string {
		t.Helper()
		if _, err := srv.Start(web.RunRequest{Scenario: "pod-kill", Doc: doc, Revision: rev, Trigger: "api:op"}); err != nil {
			t.Fatal(err)
		}
		return <-ended
	}
	anchored := func() []evidence.Anchor {
		as, err := evidence.ReadAnchors(s.ledger)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	run("v1")
	if as := anchored(); len(as) != 0 || !strings.Contains(stderr.String(), "ledger anchor: 1 of 2 entries pending") {
		t.Fatalf("after run 1: %+v\n%s", as, stderr.String())
	}
	run("v2")
	if as := anchored(); len(as) != 1 || as[0].TreeSize != 2 || as[0].Block != s.peer.Block() || !strings.Contains(stderr.String(), "ledger anchor: anchored in Fabric: tree size 2") {
		t.Fatalf("after run 2: %+v\n%s", as, stderr.String())
	}
	run("v3")
	if as := anchored(); len(as) != 1 {
		t.Fatalf("after run 3: %+v", as)
	}
	// The peer refuses the next endorsement: the run's outcome stands,
	// the entries stay pending.
	s.peer.FailNext("peer unavailable for maintenance")
	v4 := run("v4")
	if as := anchored(); len(as) != 1 || !strings.Contains(stderr.String(), "ledger anchor: FAILED: ") || !strings.Contains(stderr.String(), "the verdict stands; entries 2..3 stay pending for the next anchor") {
		t.Fatalf("after run 4 with the peer down: %+v\n%s", as, stderr.String())
	}
	v5 := run("v5")
	if v4 != v5 {
		t.Fatalf("anchoring changed a run's outcome: %q then %q", v4, v5)
	}
	as := anchored()
	if len(as) != 2 || as[1].TreeSize != 5 || as[1].Recorded != 3 {
		t.Fatalf("after run 5: %+v\n%s", as, stderr.String())
	}
	// Everything anchored verifies against Fabric.
	if out, errs, code := cli(t, append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), "--config", cfgFile)...); code != 0 || !strings.Contains(out, "anchored tree size 5") {
		t.Fatalf("verify --anchors --config: exit %d\n%s%s", code, out, errs)
	}
}

// TestRunConfigLedgerBlockCheckedBeforeTheRun: run, gate and demo take
// --config chaosgate.yaml; a bad ledger block is exit 2 naming file, line
// and column (or the field) before anything runs, and a good one anchors
// after the command even when the run itself fails (here: no such
// scenario), leaving its exit code alone.
func TestRunConfigLedgerBlockCheckedBeforeTheRun(t *testing.T) {
	s := newFabricSetup(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("ledger:\n  anchor: fabirc\n"), 0o600)
	for _, args := range [][]string{{"run", "-f", "no-such-scenario"}, {"gate", "-f", "no-such-scenario", "--revision", "v1"}, {"demo"}} {
		cmd := args[0]
		_, errs, code := cli(t, append(args, "--config", bad, "--data-dir", s.data)...)
		if code != exitUsage || !strings.Contains(errs, bad+`:2:11: ledger.anchor: unknown anchor "fabirc" (hint: did you mean "fabric"?`) {
			t.Errorf("%s with a bad ledger block: exit %d %s", cmd, code, errs)
		}
	}
	cfgFile := s.writeLedgerConfig(t, 1)
	noKey := strings.Replace(readText(t, cfgFile), "key_file: "+s.keyFile, "key_file: "+filepath.Join(s.data, "missing.pem"), 1)
	os.WriteFile(cfgFile+".nokey.yaml", []byte(noKey), 0o600)
	if _, errs, code := cli(t, "run", "--config", cfgFile+".nokey.yaml", "--data-dir", s.data, "-f", "no-such-scenario"); code != exitUsage ||
		!strings.Contains(errs, "ledger.anchor: fabric: ledger.fabric.key_file in "+cfgFile+".nokey.yaml: open ") {
		t.Fatalf("run with a missing key file: exit %d %s", code, errs)
	}
	s.appendEntries(t, 0, 2) // entries a previous run left pending
	_, errs, code := cli(t, "run", "--config", cfgFile, "--data-dir", s.data, "-f", "no-such-scenario")
	if code != exitUsage || !strings.Contains(errs, "no-such-scenario") || !strings.Contains(errs, "ledger anchor: anchored in Fabric: tree size 2") {
		t.Fatalf("run that fails, then anchors: exit %d %s", code, errs)
	}
	if as, err := evidence.ReadAnchors(s.ledger); err != nil || len(as) != 1 || as[0].TreeSize != 2 {
		t.Fatalf("anchors: %+v %v", as, err)
	}
}

func readText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// anchorLog is a goroutine-safe buffer for serve's stderr.
type anchorLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *anchorLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *anchorLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRunWithLedgerBlockAnchorsEverySecondRun: two real game days (the
// chaosgate binary, real clusters and faults) with --config chaosgate.yaml
// setting ledger.anchor: fabric and every: 2: the first run leaves its
// entry pending, the second anchors both; neither run's verdict or exit
// code changes; verify --anchors then agrees with Fabric.
func TestRunWithLedgerBlockAnchorsEverySecondRun(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	data := t.TempDir()
	s := &fabricSetup{data: data, keys: filepath.Join(data, evidence.KeysSubdir), ledger: filepath.Join(data, evidence.LedgerSubdir), peer: fabrictest.Start(t)}
	s.certFile, s.keyFile = fabrictest.NewIdentity(t, "Org1MSP").WriteFiles(t, t.TempDir())
	cfgFile := s.writeLedgerConfig(t, 2)
	file := writeExperiment(t, "low-weight", lowWeight)
	for i, want := range []string{"ledger anchor: 1 of 2 entries pending (ledger.every: 2 in " + cfgFile + "); not anchored yet", "ledger anchor: anchored in Fabric: tree size 2, root "} {
		stdout, stderr, code := runBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", data, "--config", cfgFile)
		r := decodeReport(t, stdout, stderr)
		if code != r.ExitCode || r.Evidence == nil || r.Evidence.LedgerIndex != uint64(i) {
			t.Fatalf("run %d: exit %d, report exit %d, evidence %+v\n%s", i+1, code, r.ExitCode, r.Evidence, tail(stderr, 3000))
		}
		if !strings.Contains(stderr, want) {
			t.Fatalf("run %d does not say %q:\n%s", i+1, want, tail(stderr, 3000))
		}
		as, err := evidence.ReadAnchors(s.ledger)
		if err != nil || len(as) != i || (i == 1 && (as[0].TreeSize != 2 || as[0].Block != s.peer.Block() || as[0].Recorded != 2)) {
			t.Fatalf("anchors after run %d: %+v %v", i+1, as, err)
		}
	}
	if out, errs, code := cli(t, append(append([]string{"ledger", "verify", "--anchors"}, s.base()...), s.fabricArgs()...)...); code != 0 || !strings.Contains(out, "anchored tree size 2") {
		t.Fatalf("verify --anchors after the runs: exit %d\n%s%s", code, out, errs)
	}
}
