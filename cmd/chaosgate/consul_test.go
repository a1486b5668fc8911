package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chaosgate/chaosgate/internal/browsertest"
	"github.com/chaosgate/chaosgate/internal/consultest"
)

// decisionWithErrorWeight is a decision config whose error_rate weight is w.
func decisionWithErrorWeight(w float64) []byte {
	return []byte(fmt.Sprintf("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\ndimensions:\n  error_rate:\n    weight: %g\n", w))
}

// The decision matrix comes from a real Consul agent: decide reads the
// key once; serve reads it at start, follows every change (hot reload),
// keeps the last good config on a bad edit and shows the source, the hash
// in force and the reload error in the API and on the dashboard (real
// Chromium).
func TestDecisionFromConsul(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client(t)
	const key = "chaosgate/decision.yaml"
	uri := "consul://" + agent.Addr() + "/" + key

	// decide: a missing key is a usage error with the command to fix it.
	code, _, msg := execute(t, "decide", "--input", judgeData+"good.json", "-c", uri)
	if code != exitUsage || !strings.Contains(msg, "consul kv put "+key) {
		t.Fatalf("missing key: exit %d: %s", code, msg)
	}
	consultest.Put(t, client, key, decisionWithErrorWeight(4))
	code, out, msg := execute(t, "decide", "--input", judgeData+"good.json", "-o", "json", "-c", uri)
	var v struct {
		ConfigHash string `json:"config_hash"`
		Dimensions []struct {
			Name   string
			Weight float64
		}
	}
	if code != exitPromote || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("decide from consul: exit %d: %s\n%s", code, msg, out)
	}
	for _, d := range v.Dimensions {
		if d.Name == "error_rate" && d.Weight != 4 {
			t.Fatalf("error_rate weight %g, want the 4 of the Consul key", d.Weight)
		}
	}
	consultest.Put(t, client, key, []byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\nalpha: lots\n"))
	if code, _, msg := execute(t, "decide", "--input", judgeData+"good.json", "-c", uri); code != exitUsage || !strings.Contains(msg, "consul:"+key+":3:8: alpha") {
		t.Fatalf("bad document in consul: exit %d: %s", code, msg)
	}
	if code, _, msg := execute(t, "decide", "--input", judgeData+"good.json", "-c", "consul://"+agent.Addr()); code != exitUsage || !strings.Contains(msg, "no key after the address") {
		t.Fatalf("no key: exit %d: %s", code, msg)
	}

	// serve follows the key.
	consultest.Put(t, client, key, decisionWithErrorWeight(4))
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "chaosgate.yaml")
	tokFile := filepath.Join(dir, "consul-token")
	os.WriteFile(tokFile, []byte("dev-agent-has-no-acls\n"), 0o600)
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\ndecision: %s\nconsul_token_file: %s\n", data, uri, tokFile)), 0o644)
	p := startServe(t, bin, "-c", cfg)
	tok := serveTokens(t, data)
	type info struct {
		Hash, Source string
		LastReload   string `json:"last_reload"`
		LastError    string `json:"last_error"`
	}
	get := func() info {
		t.Helper()
		code, body := p.do(tok["viewer"], "GET", "/api/v1/decision", "")
		var i info
		if code != 200 || json.Unmarshal(body, &i) != nil {
			t.Fatalf("decision: %d %s", code, body)
		}
		i.LastReload = strings.TrimSpace(i.LastReload)
		return i
	}
	first := get()
	if first.Source != "consul:"+key || first.Hash != v.ConfigHash {
		t.Fatalf("serve's config: %+v, want consul:%s with hash %s", first, key, v.ConfigHash)
	}
	wait := func(what string, ok func(info) bool) info {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			i := get()
			if ok(i) {
				return i
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v\n%s", what, i, p.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start := time.Now()
	consultest.Put(t, client, key, decisionWithErrorWeight(6))
	changed := wait("weight change picked up", func(i info) bool { return i.Hash != first.Hash })
	t.Logf("serve picked up the Consul change in %v (polling the API every 50 ms)", time.Since(start).Round(time.Millisecond))
	consultest.Put(t, client, key, []byte("apiVersion: chaosgate.io/v1\nkind: DecisionConfig\nalpha: lots\n"))
	rejected := wait("bad edit rejected", func(i info) bool { return i.LastReload == "rejected" })
	if rejected.Hash != changed.Hash || !strings.Contains(rejected.LastError, "consul:"+key+":3:8") {
		t.Fatalf("after a bad edit: %+v (in force before: %s)", rejected, changed.Hash)
	}
	// In the browser: the dashboard's decision matrix names the Consul
	// key, the hash in force and the rejected edit.
	ctx := browsertest.Start(t, time.Minute)
	browsertest.Do(t, ctx, "sign in", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", tok["viewer"]), chromedp.Click("#signin"), chromedp.WaitVisible("#matrix"))
	matrix := browsertest.Text(t, ctx, "#matrix")
	for _, want := range []string{"consul:" + key, "rejected", "alpha", changed.Hash[:16]} {
		if !strings.Contains(matrix, want) {
			t.Errorf("the dashboard's decision matrix lacks %q: %q", want, matrix)
		}
	}
	// A fixed edit is taken and shown at the next load.
	consultest.Put(t, client, key, decisionWithErrorWeight(2))
	fixed := wait("fixed edit picked up", func(i info) bool { return i.LastReload == "ok" && i.Hash != changed.Hash })
	browsertest.Do(t, ctx, "reload", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible("#matrix"))
	if m := browsertest.Text(t, ctx, "#matrix"); !strings.Contains(m, fixed.Hash[:16]) || !strings.Contains(m, "last reload: ok") {
		t.Errorf("after the fix the dashboard shows %q, want hash %s and ok", m, fixed.Hash[:16])
	}
	if strings.Contains(p.logs(), "dev-agent-has-no-acls") {
		t.Error("serve logged the Consul token")
	}
}
