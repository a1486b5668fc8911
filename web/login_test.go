package web

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSlowLoginBodyIsCut: the login form is the one request read before
// serve knows who sent it. On the server serve runs (HTTPServer), a login
// whose body never finishes arriving is answered and its connection closed
// after loginReadTimeout, well before the server's general read timeout.
func TestSlowLoginBodyIsCut(t *testing.T) {
	h := newHarness(t, "", scripted(nil), nil)
	hs := httptest.NewUnstartedServer(h.srv.Handler())
	hs.Config = HTTPServer(h.srv.Handler())
	hs.Start()
	defer hs.Close()
	addr := strings.TrimPrefix(hs.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "POST /login HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken="
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	// The rest of the body never comes; one more byte now and then does
	// not keep the request alive either.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
				if _, err := io.WriteString(c, "a"); err != nil {
					return
				}
			}
		}
	}()
	limit := HTTPServer(nil).ReadTimeout - 5*time.Second
	c.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a slow login within %s: %v", limit, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusBadRequest || took < loginReadTimeout-time.Second {
		t.Fatalf("slow login: %d after %s", resp.StatusCode, took)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection of a slow login stays open")
	}
	t.Logf("a slow login body was cut after %s", took.Round(100*time.Millisecond))
}

// TestSecureCookieBehindATLSProxy: with SecureCookie (serve
// --secure-cookie, behind a proxy that terminates TLS) the login cookie is
// Secure on plain HTTP too; without it, only over TLS.
func TestSecureCookieBehindATLSProxy(t *testing.T) {
	for _, secure := range []bool{false, true} {
		dir := t.TempDir()
		srv, err := New(Options{DataDir: dir, Tokens: testTokens(t), Run: scripted(nil), Decision: newDecisionStore(t), Target: "local", SecureCookie: secure})
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, dir: dir, srv: srv, hs: httptest.NewServer(srv.Handler())}
		for _, p := range []struct{ path, body string }{
			{"/login", url.Values{"token": {roleTokens[RoleViewer]}}.Encode()},
			{"/logout", ""},
		} {
			req, _ := http.NewRequest("POST", h.hs.URL+p.path, strings.NewReader(p.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var found bool
			for _, c := range resp.Cookies() {
				if c.Name != tokenCookie {
					continue
				}
				found = true
				if c.Secure != secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
					t.Errorf("SecureCookie %v, %s: cookie Secure %v HttpOnly %v SameSite %v", secure, p.path, c.Secure, c.HttpOnly, c.SameSite)
				}
			}
			if !found {
				t.Errorf("SecureCookie %v, %s: no cookie: %v", secure, p.path, resp.Header["Set-Cookie"])
			}
		}
		h.close()
	}
}
