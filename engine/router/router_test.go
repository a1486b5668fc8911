package router

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a real HTTP server on 127.0.0.1 that counts what it received
// and answers with its arm's name.
type upstream struct {
	arm  string
	n    atomic.Int64
	srv  *httptest.Server
	addr *url.URL
}

func newUpstream(t *testing.T, arm string) *upstream {
	u := &upstream{arm: arm}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.n.Add(1)
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, arm)
	}))
	t.Cleanup(u.srv.Close)
	u.addr, _ = url.Parse(u.srv.URL)
	return u
}

// pair starts two replicas per arm and a router in front of them.
func pair(t *testing.T, cfg Config) (*Router, string, [2][]*upstream) {
	t.Helper()
	var ups [2][]*upstream
	for i, arm := range []string{"canary", "control"} {
		for range 2 {
			u := newUpstream(t, arm)
			ups[i] = append(ups[i], u)
			if i == 0 {
				cfg.Canary = append(cfg.Canary, u.addr)
			} else {
				cfg.Control = append(cfg.Control, u.addr)
			}
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(r)
	t.Cleanup(front.Close)
	return r, front.URL, ups
}

func received(us []*upstream) int64 {
	var n int64
	for _, u := range us {
		n += u.n.Load()
	}
	return n
}

// send makes n requests through the router, 16 at a time; header(i) is
// the i-th request's headers. It checks that every response's arm header
// names the arm whose upstream answered, and returns the arm per request.
func send(t *testing.T, front string, n int, header func(i int) http.Header) []string {
	t.Helper()
	arms := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				req, _ := http.NewRequest(http.MethodPost, front+"/v1/messages", strings.NewReader(`{"id":"m"}`))
				if header != nil {
					req.Header = header(i)
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get(ArmHeader) != string(body) {
					failed.Store(fmt.Sprintf("request %d: HTTP %d, %s %q, answered by %q", i, resp.StatusCode, ArmHeader, resp.Header.Get(ArmHeader), body))
					return
				}
				arms[i] = string(body)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	return arms
}

func share(arms []string) float64 {
	c := 0
	for _, a := range arms {
		if a == "canary" {
			c++
		}
	}
	return 100 * float64(c) / float64(len(arms))
}

// TestStickyHeaderSplitsFiftyFifty is the seeds' split: requests carry
// x-deployment-id, and the router splits the ids 50:50. Over 10,000
// requests with distinct ids the canary's share, counted by the canary's
// own upstreams, is within 50 ± 2 %; an id always reaches the same arm; a
// higher weight only moves ids from the control to the canary.
func TestStickyHeaderSplitsFiftyFifty(t *testing.T) {
	r, front, ups := pair(t, Config{CanaryWeight: 50, StickyHeader: "x-deployment-id"})
	id := func(i int) http.Header { return http.Header{"X-Deployment-Id": {fmt.Sprintf("deployment-%05d", i)}} }
	arms := send(t, front, 10000, id)
	canary, control := received(ups[0]), received(ups[1])
	measured := 100 * float64(canary) / float64(canary+control)
	t.Logf("x-deployment-id 50:50 over 10,000 requests: canary upstreams received %d, control %d (%.2f %% canary); router counted %+v", canary, control, measured, r.Counts())
	if canary+control != 10000 || math.Abs(measured-50) > 2 {
		t.Fatalf("canary share %.2f %% over %d requests, want 50 ± 2 %% over 10,000", measured, canary+control)
	}
	if c := r.Counts(); c.Canary != uint64(canary) || c.Control != uint64(control) || c.By["canary/sticky"] != uint64(canary) {
		t.Fatalf("the router counted %+v, the upstreams received canary %d control %d", c, canary, control)
	}
	again := send(t, front, 2000, id)
	for i := range again {
		if again[i] != arms[i] {
			t.Fatalf("deployment-%05d went to %s, then to %s", i, arms[i], again[i])
		}
	}
	if err := r.SetWeight(60); err != nil {
		t.Fatal(err)
	}
	moved := send(t, front, 10000, id)
	for i := range moved {
		if arms[i] == "canary" && moved[i] != "canary" {
			t.Fatalf("deployment-%05d left the canary when its weight rose to 60 %%", i)
		}
	}
	t.Logf("weight 60: %.2f %% of the ids on the canary", share(moved))
}

// TestWeightsOneTenFifty: the seeds' steps 1, 10 and 50 %, each over 10,000
// requests counted at the upstreams. Without a sticky header the split is
// exact (w of every 100 consecutive requests); by a sticky header's hash
// it is within ± 2 points.
func TestWeightsOneTenFifty(t *testing.T) {
	for _, sticky := range []bool{false, true} {
		cfg := Config{}
		if sticky {
			cfg.StickyHeader = "x-deployment-id"
		}
		r, front, ups := pair(t, cfg)
		for _, w := range []int{1, 10, 50} {
			if err := r.SetWeight(w); err != nil {
				t.Fatal(err)
			}
			r.ResetCounts()
			before := [2]int64{received(ups[0]), received(ups[1])}
			var hdr func(int) http.Header
			if sticky {
				hdr = func(i int) http.Header { return http.Header{"X-Deployment-Id": {fmt.Sprintf("w%d-session-%d", w, i)}} }
			}
			send(t, front, 10000, hdr)
			canary, control := received(ups[0])-before[0], received(ups[1])-before[1]
			measured := 100 * float64(canary) / float64(canary+control)
			t.Logf("sticky %v, weight %d %%: canary %d, control %d (%.2f %%)", sticky, w, canary, control, measured)
			if !sticky && canary != int64(w)*100 {
				t.Errorf("weight %d %%: the canary received %d of 10,000, want exactly %d", w, canary, w*100)
			}
			if sticky && math.Abs(measured-float64(w)) > 2 {
				t.Errorf("sticky, weight %d %%: %.2f %% canary, want within ± 2", w, measured)
			}
			if r.State().MeasuredCanaryPercent != measured {
				t.Errorf("the router measured %.2f %%, the upstreams %.2f %%", r.State().MeasuredCanaryPercent, measured)
			}
		}
	}
}

// TestHeaderMatchWinsOverWeight: x-canary: always reaches the canary at
// weight 0, and only those requests do.
func TestHeaderMatchWinsOverWeight(t *testing.T) {
	r, front, ups := pair(t, Config{CanaryWeight: 0, Headers: []HeaderMatch{{Name: "x-canary", Value: "always", Arm: engine.ArmCanary}}})
	arms := send(t, front, 1000, func(i int) http.Header {
		if i%4 == 0 {
			return http.Header{"X-Canary": {"always"}}
		}
		return http.Header{"X-Canary": {"never"}}
	})
	for i, a := range arms {
		if (i%4 == 0) != (a == "canary") {
			t.Fatalf("request %d went to %s", i, a)
		}
	}
	if received(ups[0]) != 250 || r.Counts().By["canary/header"] != 250 {
		t.Fatalf("canary received %d, router counted %+v; want the 250 matching requests", received(ups[0]), r.Counts())
	}
}

// TestAdminAPI moves the weight over PUT /split, refuses bad bodies with
// the JSON path, and serves the router's metrics.
func TestAdminAPI(t *testing.T) {
	r, front, _ := pair(t, Config{CanaryWeight: 5})
	admin := httptest.NewServer(r.Admin())
	defer admin.Close()
	put := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, admin.URL+"/split", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := put(`{"canary_weight": 20, "reset_counts": true}`); code != 200 || !strings.Contains(body, `"canary_weight":20`) || r.Weight() != 20 {
		t.Fatalf("PUT weight 20: %d %s", code, body)
	}
	for body, want := range map[string]string{
		`{"canary_weight": 101}`:  "$.canary_weight: 101 is outside 0..100",
		`{"canary_weight": "10"}`: "$.canary_weight: string is not a int",
		`{"weight": 10}`:          `$: unknown field \"weight\"`,
		`{}`:                      "$.canary_weight: missing",
		`10`:                      "$.: number is not a router.SplitChange",
		`{"canary_weight": 1} {}`: "more than one JSON value",
	} {
		if code, got := put(body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("PUT %s: %d %s, want 400 with %q", body, code, got, want)
		}
	}
	if r.Weight() != 20 {
		t.Fatalf("a refused PUT moved the weight to %d", r.Weight())
	}
	send(t, front, 100, nil)
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`chaosgate_router_requests_total{arm="canary",code="200",reason="weight"} 20`,
		`chaosgate_router_requests_total{arm="control",code="200",reason="weight"} 80`, "chaosgate_router_canary_weight 20", "chaosgate_router_upstream_seconds_bucket"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}

// TestDeadReplicaFailsOverAndDeadArmAnswers502: a canary replica that
// refuses connections is skipped; when every replica of the arm is gone
// the client gets a 502 that names the arm, counted as such.
func TestDeadReplicaFailsOverAndDeadArmAnswers502(t *testing.T) {
	r, front, ups := pair(t, Config{CanaryWeight: 100})
	ups[0][0].srv.Close()
	arms := send(t, front, 200, nil)
	if share(arms) != 100 || ups[0][1].n.Load() != 200 {
		t.Fatalf("with one canary replica down: %.0f %% canary, the live replica received %d of 200", share(arms), ups[0][1].n.Load())
	}
	ups[0][1].srv.Close()
	resp, err := http.Post(front+"/v1/messages", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ArmHeader) != "canary" || !strings.Contains(string(b), "canary arm did not answer") {
		t.Fatalf("every canary replica down: HTTP %d, %s %q: %s", resp.StatusCode, ArmHeader, resp.Header.Get(ArmHeader), b)
	}
	if c := testutilCount(t, r, `chaosgate_router_requests_total{arm="canary",code="502",reason="weight"} 1`); !c {
		t.Fatal("the 502 was not counted")
	}
}

func testutilCount(t *testing.T, r *Router, line string) bool {
	t.Helper()
	admin := httptest.NewServer(r.Admin())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line)
}

// TestConfigErrors: what New refuses, each with a reason.
func TestConfigErrors(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	bad, _ := url.Parse("127.0.0.1:1")
	for cfg, want := range map[*Config]string{
		{Control: []*url.URL{u}}:                                                                                                       "no canary upstream",
		{Canary: []*url.URL{u}, Control: []*url.URL{bad}}:                                                                              "is not an http(s) URL",
		{Canary: []*url.URL{u}, Control: []*url.URL{u}, CanaryWeight: -1}:                                                              "outside 0..100",
		{Canary: []*url.URL{u}, Control: []*url.URL{u}, StickyHeader: "x deployment"}:                                                  "which HTTP does not allow",
		{Canary: []*url.URL{u}, Control: []*url.URL{u}, Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}}:                        "arm must be canary, control or calibration",
		{Canary: []*url.URL{u}, Control: []*url.URL{u}, Headers: []HeaderMatch{{Name: "x-a", Value: "1", Arm: engine.ArmCalibration}}}: "no calibration upstream",
	} {
		if _, err := New(*cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", *cfg, err, want)
		}
	}
	for s, want := range map[string]string{"x-canary": "want NAME=VALUE", "x canary=1": "does not allow", "x-canary=": "empty value", "=1": "empty header name"} {
		if _, err := ParseHeaderMatch(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseHeaderMatch(%q): %v, want %q", s, err, want)
		}
	}
	if m, err := ParseHeaderMatch("x-deployment-id=canary=1"); err != nil || m.Value != "canary=1" || m.Arm != engine.ArmCanary {
		t.Errorf("ParseHeaderMatch with = in the value: %+v %v", m, err)
	}
}
