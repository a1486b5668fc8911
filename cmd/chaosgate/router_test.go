package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/router"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// TestRouterCommandSplitsAndMovesTheWeight runs `chaosgate router` in
// front of two real HTTP services, sends requests through it, moves the
// weight over the admin API and checks what each service received.
func TestRouterCommandSplitsAndMovesTheWeight(t *testing.T) {
	var got [2]atomic.Int64
	svc := func(i int, name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			got[i].Add(1)
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	canary, stable := svc(0, "canary"), svc(1, "control")
	ports, err := freeport.Ports(2)
	if err != nil {
		t.Fatal(err)
	}
	front, admin := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithCancel(context.Background())
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"router", "--listen", front, "--admin", admin, "--canary", canary.URL, "--control", stable.URL,
		"--canary-weight", "10", "--header", "x-canary=always"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/split")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router's admin API did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	sendN := func(n int, hdr http.Header) {
		t.Helper()
		for range n {
			req, _ := http.NewRequest(http.MethodGet, "http://"+front+"/v1/cluster", nil)
			req.Header = hdr
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get(router.ArmHeader) != string(body) {
				t.Fatalf("%s says %q, answered by %q", router.ArmHeader, resp.Header.Get(router.ArmHeader), body)
			}
		}
	}
	sendN(1000, nil)
	if got[0].Load() != 100 || got[1].Load() != 900 {
		t.Fatalf("at 10 %%: canary %d, control %d of 1,000", got[0].Load(), got[1].Load())
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+admin+"/split", strings.NewReader(`{"canary_weight": 50, "reset_counts": true}`))
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT /split: %v %v", resp, err)
	}
	resp.Body.Close()
	sendN(1000, nil)
	sendN(100, http.Header{"X-Canary": {"always"}})
	if got[0].Load() != 100+500+100 || got[1].Load() != 900+500 {
		t.Fatalf("at 50 %% plus 100 header-matched: canary %d, control %d", got[0].Load(), got[1].Load())
	}
	if !strings.Contains(out.String(), "routing on http://"+front+": 10% canary") {
		t.Errorf("router printed %q", out.String())
	}
}

// TestRouterCommandRefusesBadFlags: each usage error is exit code 2 with
// what is wrong and a hint.
func TestRouterCommandRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--control", "http://127.0.0.1:1"}, "--canary URL is required"},
		{[]string{"--canary", "127.0.0.1:1", "--control", "http://127.0.0.1:1"}, "not an http(s) URL with a host (hint"},
		{[]string{"--canary", "http://127.0.0.1:1", "--control", "http://127.0.0.1:2", "--header", "x-canary"}, "want NAME=VALUE (hint: --header x-canary=always)"},
		{[]string{"--canary", "http://127.0.0.1:1", "--control", "http://127.0.0.1:2", "--canary-weight", "150"}, "canary weight 150 is outside 0..100"},
		{[]string{"--canary", "http://127.0.0.1:1", "--control", "http://127.0.0.1:2", "--sticky-header", "x id"}, "does not allow in a field name"},
	} {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"router"}, c.args...))
		err := root.ExecuteContext(context.Background())
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("router %v: %v, want exit %d with %q", c.args, err, exitUsage, c.want)
		}
	}
}
