package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chaosgate/chaosgate/internal/browsertest"
)

// TestBrowserCrossOriginCannotAbort: an operator signed in to the
// dashboard opens a page of another origin on the same host (another
// port: the same site, so a SameSite=Strict cookie still goes along).
// That page posts the kill-switch form and fetches the API's kill switch
// with the browser's credentials. Real Chromium; the server refuses both.
func TestBrowserCrossOriginCannotAbort(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%[1]s/ui/abort"></form>
<script>
// After the page's load event: a form submitted before it would abort
// the page's own navigation (net::ERR_ABORTED) on a slow host.
window.addEventListener("load", function () {
  setTimeout(function () {
    fetch("%[1]s/api/v1/abort?reason=csrf", {method: "POST", credentials: "include", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "{}"})
      .finally(function () { document.title = "fetched"; document.getElementById("f").submit(); });
  }, 0);
});
</script>`, h.hs.URL)
	}))
	defer evil.Close()
	ctx := browsertest.Start(t, 60*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(h.hs.URL+"/login"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", roleTokens[RoleOperator]), chromedp.Click("#signin"), chromedp.WaitVisible("#history")); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	// The dashboard's own kill switch works (same origin).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.confirm = function () { return true; }; true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click("#kill"), chromedp.WaitVisible("#history")); err != nil {
		t.Fatalf("own kill switch: %v", err)
	}
	// #history was visible before the click too: wait for the server to
	// have answered the kill switch's form before leaving the page, or the
	// navigation below can cancel it in flight.
	ownAbort := `chaosgate_serve_http_requests_total{code="303",route="POST /ui/abort"} 1` + "\n"
	for waited := time.Duration(0); ; waited += 100 * time.Millisecond {
		if _, m := h.do(0, "GET", "/metrics", ""); strings.Contains(string(m), ownAbort) {
			break
		}
		if waited > 10*time.Second {
			t.Fatal("the dashboard's own kill switch never reached the server")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL)); err != nil {
		t.Fatalf("the other origin's page: %v", err)
	}
	// The page fetches, then submits the form: wait until the browser has
	// left it for the form's answer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.HasPrefix(loc, h.hs.URL) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never submitted its form (at %q, %v)", loc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, metrics := h.do(0, "GET", "/metrics", "")
	m := string(metrics)
	for _, want := range []string{`chaosgate_serve_http_requests_total{code="303",route="POST /ui/abort"} 1` + "\n", "chaosgate_serve_cross_origin_refused_total 2\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, `code="200",route="POST /api/v1/abort"`) {
		t.Errorf("the other origin's fetch pulled the kill switch")
	}
	if t.Failed() {
		t.Logf("requests:\n%s", grepLines(m, "chaosgate_serve_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
