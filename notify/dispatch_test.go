package notify

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWhenFilter(t *testing.T) {
	for _, tc := range []struct {
		in, canon string
		match     map[string]bool
	}{
		{"", "block,hold", map[string]bool{"block": true, "hold": true, "promote": false}},
		{"block,hold", "block,hold", map[string]bool{"block": true, "hold": true, "promote": false}},
		{" Hold ", "hold", map[string]bool{"block": false, "hold": true, "promote": false}},
		{"all", "all", map[string]bool{"block": true, "hold": true, "promote": true}},
		{"promote,block,hold", "all", map[string]bool{"block": true, "hold": true, "promote": true}},
		{"block", "block", map[string]bool{"block": true, "hold": false, "promote": false, "": false, "invalid": false}},
	} {
		w, err := ParseWhen(tc.in)
		if err != nil || w.String() != tc.canon {
			t.Errorf("ParseWhen(%q) = %v, %v; want %s", tc.in, w, err, tc.canon)
		}
		for v, want := range tc.match {
			if w.Match(v) != want {
				t.Errorf("%q matches %q = %v, want %v", tc.in, v, !want, want)
			}
		}
	}
	for _, bad := range []string{"block,", "never", "block;hold", ",", "all,block"} {
		if _, err := ParseWhen(bad); err == nil {
			t.Errorf("ParseWhen(%q) accepted", bad)
		}
	}
	// A verdict the filter leaves out sends nothing.
	rc := newReceiver(t, nil)
	d := &Dispatcher{Sinks: []Sink{webhook(t, rc.url("/h"), Options{})}}
	if got := d.Notify(context.Background(), sampleRun("promote")); got != nil {
		t.Fatalf("promote notified by default: %+v", got)
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("%d requests for a filtered verdict", n)
	}
	d.When = WhenAll
	if got := d.Notify(context.Background(), sampleRun("promote")); len(got) != 1 || got[0].Err != nil {
		t.Fatalf("promote with all: %+v", got)
	}
	var none *Dispatcher
	if none.Notify(context.Background(), sampleRun("block")) != nil || none.Wants("block") {
		t.Fatal("a nil dispatcher notifies")
	}
}

// TestDispatcherSendsToEverySinkAtOnce: each receiver holds its request
// until the other's has arrived, so the dispatch succeeds only when the
// sinks send concurrently.
func TestDispatcherSendsToEverySinkAtOnce(t *testing.T) {
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	barrier := func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			arrived.Done()
		}
		select {
		case <-both:
		case <-time.After(10 * time.Second):
			http.Error(w, "the other sink's request never came", http.StatusConflict)
		}
	}
	hook, slack := newReceiver(t, barrier), newReceiver(t, barrier)
	ws := webhook(t, hook.url("/h"), Options{})
	ss, err := NewSlack("", slack.url("/services/x"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &Dispatcher{Sinks: []Sink{ws, ss}, When: DefaultWhen}
	got := d.Notify(context.Background(), sampleRun("block"))
	if len(got) != 2 || got[0].Sink != "webhook" || got[1].Sink != "slack" {
		t.Fatalf("deliveries %+v, want webhook then slack", got)
	}
	for _, g := range got {
		if g.Err != nil || g.Attempts != 1 {
			t.Errorf("%s: %v", g.Sink, g)
		}
	}
	checkWebhookRequest(t, hook.requests()[0], testSecret)
	checkSlackBody(t, slack.requests()[0].Body)
}

func TestDispatcherDeadlineEndsRetriesAndDeadLetters(t *testing.T) {
	data := t.TempDir()
	busy := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	good := newReceiver(t, nil)
	slow := webhook(t, busy.url("/h"), Options{DeadLetters: NewDeadLetters(data), Policy: Policy{Attempts: 100, Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}})
	ok := webhook(t, good.url("/h"), Options{DeadLetters: NewDeadLetters(data)})
	ok.name = "webhook#2"
	d := &Dispatcher{Sinks: []Sink{slow, ok}, Timeout: 300 * time.Millisecond}
	start := time.Now()
	got := d.Notify(context.Background(), sampleRun("hold"))
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("dispatch took %v past its 300ms deadline", el)
	}
	var de *DeliveryError
	if !errors.As(got[0].Err, &de) || de.Attempts >= 100 || de.Attempts < 2 || de.DeadLetter == "" {
		t.Fatalf("busy sink: %+v", got[0])
	}
	if got[1].Err != nil {
		t.Fatalf("a failing sink held back another: %v", got[1].Err)
	}
	raw, _ := os.ReadFile(filepath.Join(data, "notify", "dead-letter.jsonl"))
	if strings.Count(string(raw), "\n") != 1 || !strings.Contains(string(raw), `"verdict":"hold"`) {
		t.Fatalf("dead letters:\n%s", raw)
	}
}

func TestDispatchStopsWhenItsContextIsCancelled(t *testing.T) {
	hang := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	d := &Dispatcher{Sinks: []Sink{webhook(t, hang.url("/h"), Options{})}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan []Delivery, 1)
	go func() { done <- d.Notify(ctx, sampleRun("block")) }()
	select {
	case got := <-done:
		if len(got) != 1 || got[0].Err == nil || got[0].Attempts != 1 {
			t.Fatalf("deliveries %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the context did not end the dispatch")
	}
}

// plainSink is a Sink that is not a Deliverer.
type plainSink struct{ err error }

func (p plainSink) Name() string                                   { return "plain" }
func (p plainSink) Send(ctx context.Context, n Notification) error { return p.err }

func TestDispatchToAPlainSink(t *testing.T) {
	d := &Dispatcher{Sinks: []Sink{plainSink{}, plainSink{errors.New("down")}}}
	got := d.Notify(context.Background(), sampleRun("block"))
	if len(got) != 2 || got[0].String() != "notified plain" || got[1].Err == nil || !strings.Contains(got[1].String(), "notification to plain failed") {
		t.Fatalf("deliveries %v", got)
	}
}
