package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/chaosgate/chaosgate/engine/history"
)

// stateDigest is how a state is written in the history: "" for a key never
// written (version 0), otherwise "STATE/VERSION/VALUE".
func stateDigest(state string, version uint64, value string) string {
	if version == 0 {
		return ""
	}
	return state + "/" + strconv.FormatUint(version, 10) + "/" + value
}

// nextState walks INIT → PROCESSING → DONE | FAILED; "" means terminal.
func (g *Generator) nextState(cur string) string {
	switch cur {
	case "", "INIT":
		return "PROCESSING"
	case "PROCESSING":
		if g.intn(5) == 0 {
			return "FAILED"
		}
		return "DONE"
	}
	return ""
}

// stateLoop reads a key, then writes its next state with a version CAS,
// recording both for the linearizability check. A key that reached a
// terminal state is replaced by a fresh one.
func (g *Generator) stateLoop(ctx context.Context, client string, ps *phaseStats) {
	pool := make([]string, g.cfg.StateKeys)
	fresh := func() string { return fmt.Sprintf("%s-st%d", g.cfg.Name, g.stateSeq.Add(1)) }
	for i := range pool {
		pool[i] = fresh()
	}
	for n := 0; ctx.Err() == nil; n++ {
		i := g.intn(len(pool))
		key := pool[i]
		view, res := g.stateOp(ctx, client, http.MethodGet, key, nil)
		ps.stateOps.Add(1)
		if res == history.ResultOK {
			next := g.nextState(view.State)
			if next == "" {
				pool[i] = fresh()
				continue
			}
			value := fmt.Sprintf("%s-%d", client, n)
			body, _ := json.Marshal(map[string]any{"state": next, "expected_version": view.Version, "value": value})
			_, _ = g.stateOpWrite(ctx, client, key, body, stateDigest(next, view.Version+1, value))
			ps.stateOps.Add(1)
		}
		t := time.NewTimer(time.Duration(5+g.intn(20)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (g *Generator) stateOp(ctx context.Context, client, method, key string, body []byte) (StateView, history.OpResult) {
	var view StateView
	addr, err := g.cl.pick()
	if err != nil {
		return view, history.ResultFail
	}
	start := time.Now()
	o := g.cl.do(ctx, method, addr, "/v1/state/"+url.PathEscape(key), body)
	end := time.Now()
	res := history.ResultTimeout
	switch {
	case o.err != nil:
	case o.status == http.StatusOK && json.Unmarshal(o.body, &view) == nil:
		res = history.ResultOK
	case o.status >= 400 && o.status < 500 && o.status != http.StatusTooManyRequests:
		res = history.ResultFail
	}
	g.record(history.Line{Op: history.OpRead, Client: client, Key: key, Value: stateDigest(view.State, view.Version, view.Value),
		Node: addr, Result: res, Start: start, End: end, State: view.State, Version: view.Version})
	return view, res
}

func (g *Generator) stateOpWrite(ctx context.Context, client, key string, body []byte, digest string) (StateView, history.OpResult) {
	var view StateView
	addr, err := g.cl.pick()
	if err != nil {
		return view, history.ResultFail
	}
	var req struct {
		State           string `json:"state"`
		ExpectedVersion uint64 `json:"expected_version"`
	}
	_ = json.Unmarshal(body, &req)
	start := time.Now()
	o := g.cl.do(ctx, http.MethodPut, addr, "/v1/state/"+url.PathEscape(key), body)
	end := time.Now()
	res := history.ResultTimeout
	switch {
	case o.err != nil:
	case o.status == http.StatusOK:
		res = history.ResultOK
		_ = json.Unmarshal(o.body, &view)
	case o.status == http.StatusConflict || o.status == http.StatusUnprocessableEntity || o.status == http.StatusBadRequest:
		res = history.ResultFail // CAS mismatch or illegal transition: not applied
	case o.status == http.StatusTooManyRequests:
		res = history.ResultFail // explicit backpressure: not applied
	}
	g.record(history.Line{Op: history.OpWrite, Client: client, Key: key, Value: digest, Node: addr, Result: res,
		Start: start, End: end, State: req.State, ExpectedVersion: req.ExpectedVersion})
	return view, res
}
