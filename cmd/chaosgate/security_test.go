package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/chaosgate/chaosgate/evidence"
)

// TestServeListensOnLoopbackByDefault: without --http (or listen:) serve is
// reachable from this machine only.
func TestServeListensOnLoopbackByDefault(t *testing.T) {
	f := newServeCmd().Flags().Lookup("http")
	if f == nil || f.DefValue != "127.0.0.1:8080" {
		t.Fatalf("--http default %v", f)
	}
	host, _, err := net.SplitHostPort(f.DefValue)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("--http default %q is not a loopback address", f.DefValue)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chaosgate test"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

func readTokens(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, m := range regexp.MustCompile(`role: (\w+), token: "([0-9a-f]+)"`).FindAllStringSubmatch(string(data), -1) {
		tok[m[1]] = m[2]
	}
	return tok
}

// TestServeTLSAndPrivateDataDir: serve with --tls-cert/--tls-key speaks
// HTTPS only and marks the login cookie Secure; it makes its data dir
// private and creates the evidence keys it verifies the ledger with.
func TestServeTLSAndPrivateDataDir(t *testing.T) {
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o755)
	cert, key, pool := selfSigned(t, dir)
	p := startServe(t, bin, "--http", "127.0.0.1:0", "--data-dir", data, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("serve URL %s", p.url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	resp, err := client.Get(p.url + "/livez")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("livez over TLS: %v %v", resp, err)
	}
	resp.Body.Close()
	tok := readTokens(t, filepath.Join(data, "tokens.yaml"))
	resp, err = client.PostForm(p.url+"/login", url.Values{"token": {tok["viewer"]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var secure bool
	for _, c := range resp.Cookies() {
		secure = secure || c.Name == "chaosgate_token" && c.Secure && c.HttpOnly
	}
	if !secure {
		t.Fatalf("login cookie over TLS: %v", resp.Header["Set-Cookie"])
	}
	plain := strings.Replace(p.url, "https://", "http://", 1)
	pc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := pc.Get(plain + "/livez"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}
	for path, want := range map[string]os.FileMode{data: 0o700, filepath.Join(data, "tokens.yaml"): 0o600,
		filepath.Join(data, "keys", evidence.EvidenceKeyFile): 0o600, filepath.Join(data, "keys", evidence.CheckpointKeyFile): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %04o", path, st, err, want)
		}
	}
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	p.cmd.Wait()
	// One of the two TLS flags alone is a usage error.
	if _, errs, code := cli(t, "serve", "--data-dir", data, "--tls-cert", cert); code != exitUsage || !strings.Contains(errs, "go together") {
		t.Fatalf("--tls-cert alone: %d %s", code, errs)
	}
}

// TestServeRefusesUnsafeTokensAndUnscopedKubernetes: a tokens file others
// may read stops serve, and --target k8s without --namespace is refused.
func TestServeRefusesUnsafeTokensAndUnscopedKubernetes(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(tok, []byte("tokens:\n  - {name: v, role: viewer, token: \"0123456789abcdef0123\"}\n"), 0o644)
	// A serve that starts anyway is stopped after a while (and the test
	// fails): the refusal must come at start.
	if _, errs, code := cliWithin(t, 20*time.Second, "serve", "--http", "127.0.0.1:0", "--data-dir", dir, "--tokens", tok); code != exitUsage || !strings.Contains(errs, "chmod 600") {
		t.Fatalf("tokens file 0644: %d %s", code, errs)
	}
	if _, errs, code := cliWithin(t, 20*time.Second, "serve", "--http", "127.0.0.1:0", "--data-dir", dir, "--target", "k8s"); code != exitUsage || !strings.Contains(errs, "--namespace") {
		t.Fatalf("k8s without a namespace: %d %s", code, errs)
	}
}

// cliWithin is cli with a context that ends after d.
func cliWithin(t *testing.T, d time.Duration, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb strings.Builder
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return out.String(), errb.String(), exitPromote
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			errb.WriteString(ee.err.Error())
		}
		return out.String(), errb.String(), ee.code
	}
	return out.String(), err.Error(), exitUsage
}

// ledgerWith makes keys and a ledger of n entries for revision rev in one
// batch each, and returns the keys and ledger directories.
func ledgerWith(t *testing.T, n int, rev string) (keys, ledger string) {
	t.Helper()
	dir := t.TempDir()
	keys, ledger = filepath.Join(dir, "keys"), filepath.Join(dir, "ledger")
	k, err := evidence.GenerateKeys(keys, "example.test/cli")
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(context.Background(), ledger, evidence.Options{Keys: k, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := l.Record(context.Background(), rev, &evidence.Predicate{RunID: fmt.Sprintf("r%d", i), Experiment: evidence.Experiment{Name: "pod-kill"},
			Decision: &evidence.Decision{Verdict: "promote"}, TraceIDs: []string{fmt.Sprintf("t%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return keys, ledger
}

// TestLedgerVerifyNamesATamperedIndexKey: plain `ledger verify` fails,
// exit 1, naming an index key that was deleted.
func TestLedgerVerifyNamesATamperedIndexKey(t *testing.T) {
	keys, ledger := ledgerWith(t, 4, "v1")
	if out, errs, code := cli(t, "ledger", "verify", "--ledger", ledger, "--keys", keys); code != 0 {
		t.Fatalf("verify: %d %s %s", code, out, errs)
	}
	db, err := bolt.Open(filepath.Join(ledger, evidence.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("ix_revision")).Delete(append([]byte("v1\x00"), binary.BigEndian.AppendUint64(nil, 3)...))
	})
	db.Close()
	out, errs, code := cli(t, "ledger", "verify", "--ledger", ledger, "--keys", keys)
	if code != exitBlock || !strings.Contains(out+errs, `index ix_revision key "v1" → entry 3`) {
		t.Fatalf("verify after deleting an index key: %d\n%s\n%s", code, out, errs)
	}
}

// TestLedgerProofRefusesADamagedTree: with a stored interior hash damaged
// (one that no checkpoint root reads), `ledger verify` names it and
// `ledger proof` prints no proof, exit 1.
func TestLedgerProofRefusesADamagedTree(t *testing.T) {
	keys, ledger := ledgerWith(t, 5, "v1")
	db, err := bolt.Open(filepath.Join(ledger, evidence.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("hashes"))
		k := binary.BigEndian.AppendUint64(nil, uint64(tlog.StoredHashIndex(1, 1)))
		v := append([]byte(nil), b.Get(k)...)
		v[0] ^= 1
		return b.Put(k, v)
	})
	db.Close()
	out, errs, code := cli(t, "ledger", "proof", "--index", "0", "--ledger", ledger, "--keys", keys)
	if code != exitBlock || strings.Contains(out, "c2sp.org/tlog-proof") {
		t.Errorf("proof through a damaged hash: %d\n%s\n%s", code, out, errs)
	}
	if out, errs, code := cli(t, "ledger", "verify", "--ledger", ledger, "--keys", keys); code != exitBlock || !strings.Contains(out+errs, "tree hash (level 1, index 1)") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errs)
	}
}

// TestLedgerAppendRefusesAVerdict: `ledger append` (external evidence)
// cannot record chaosgate's own predicate type, so it cannot mint a gate
// answer.
func TestLedgerAppendRefusesAVerdict(t *testing.T) {
	keys, ledger := ledgerWith(t, 1, "v1")
	st, err := evidence.BuildStatement("v1", &evidence.Predicate{RunID: "minted", Decision: &evidence.Decision{Verdict: "promote", Score: 1, Coverage: 1}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "st.json")
	os.WriteFile(f, st, 0o600)
	if out, errs, code := cli(t, "ledger", "append", "--statement", f, "--revision", "v1", "--ledger", ledger, "--keys", keys); code != exitUsage || !strings.Contains(errs, "only a chaosgate run records it") {
		t.Fatalf("append of a verdict: %d %s %s", code, out, errs)
	}
}

// TestCheckEmptyHistoryIsNoProof: an empty history (or one of blank lines)
// is malformed input, exit 2 — never "consistency OK".
func TestCheckEmptyHistoryIsNoProof(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty.jsonl": "", "blank.jsonl": "\n  \n\t\n"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		out, errs, code := cli(t, "check", "--history", p)
		if code != exitUsage || !strings.Contains(errs, "holds no operations") || strings.Contains(out, "OK") {
			t.Errorf("%s: exit %d, %q %q", name, code, out, errs)
		}
	}
}
