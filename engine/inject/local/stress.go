package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// Admin is how the injector reaches a node's admin API (the reference
// aggregator's /v1/admin/...): its own HTTP address, the file holding the
// bearer token and its data directory (where the node persists the clock
// skew, so a crashed run's skew can be removed even when the node is gone).
type Admin struct {
	Addr      string `json:"addr"`
	TokenFile string `json:"token_file"`
	DataDir   string `json:"data_dir"`
}

// skewFile is the node's persisted clock skew (aggregator/node.ClockSkewFile).
const skewFile = "clock-skew"

// SkewUndo is what Recover needs of a clock skew: the skewed node's admin
// endpoint, and the partition handed to it.
type SkewUndo struct {
	Node      string `json:"node"`
	Admin     Admin  `json:"admin"`
	Partition *int   `json:"partition,omitempty"`
	From      string `json:"from,omitempty"`
}

// burst is one overload burst in progress.
type burst struct {
	gen    *load.Generator
	start  time.Time
	before nodeLoad
	done   chan struct{}
	sum    load.Summary
	err    error
}

// nodeLoad sums what an arm's nodes report about load shedding.
type nodeLoad struct {
	rejected, requests, code429 float64
	queued, inflight            float64
	nodes                       int
}

// prepareClockSkew chooses the node to skew and, with handover, the
// partition it will lead: a partition whose leader is another node, chosen
// from the fault's seed (the same choice on every arm whose leaders agree).
func (in *Injector) prepareClockSkew(ctx context.Context, t engine.Target, f engine.Fault, a *engine.Applied, u *Undo) error {
	if in.cfg.Admin == nil {
		return engine.E(engine.KindInvalid, "prepare", errors.New("no node admin API configured"))
	}
	if f.Offset == 0 {
		return engine.E(engine.KindInvalid, "prepare", errors.New("clock skew of 0"))
	}
	var leaders map[int]string
	if f.Handover || f.Mode != "fixed" {
		if in.cfg.Leaders == nil {
			return engine.E(engine.KindInvalid, "prepare", errors.New("no leader source configured"))
		}
		var err error
		if leaders, err = in.cfg.Leaders(ctx, t.Arm); err != nil {
			return engine.E(engine.KindUnavailable, "leaders of "+t.Arm.String(), err)
		}
	}
	node, part, from, err := ChooseSkew(seed(f), t.Nodes, f.Mode, f.Nodes, leaders, f.Handover)
	if err != nil {
		return err
	}
	adm, err := in.cfg.Admin(t.Arm, node)
	if err != nil {
		return engine.E(engine.KindUnavailable, "admin API of "+t.Arm.String()+"/"+node, err)
	}
	su := SkewUndo{Node: node, Admin: adm, Partition: part, From: from}
	u.Skew = &su
	a.Affected = []string{node}
	a.Detail = fmt.Sprintf("physical clock of %s offset %s", node, f.Offset)
	if part != nil {
		a.Detail += fmt.Sprintf("; leadership of partition %d handed from %s to %s", *part, from, node)
	}
	return nil
}

// ChooseSkew picks the node a clock skew acts on and, with handover, the
// partition it is handed and that partition's leader. Mode fixed skews
// nodes[0]; mode one picks a partition from the seed and a node that
// follows it (its leader's successor).
func ChooseSkew(seed string, all []string, mode string, nodes []string, leaders map[int]string, handover bool) (string, *int, string, error) {
	parts := make([]int, 0, len(leaders))
	for p, l := range leaders {
		if l != "" {
			parts = append(parts, p)
		}
	}
	sort.Ints(parts)
	var node string
	if mode == "fixed" {
		if len(nodes) == 0 {
			return "", nil, "", engine.E(engine.KindInvalid, "clock skew", errors.New("mode fixed names no node"))
		}
		node = nodes[0]
	} else {
		if len(parts) == 0 {
			return "", nil, "", engine.E(engine.KindUnavailable, "clock skew", errors.New("no partition has a leader"))
		}
		p := parts[pick(seed, len(parts))]
		var followers []string
		for _, n := range all {
			if n != leaders[p] {
				followers = append(followers, n)
			}
		}
		if len(followers) == 0 {
			return "", nil, "", engine.E(engine.KindInvalid, "clock skew", errors.New("no node follows partition "+strconv.Itoa(p)))
		}
		node = followers[pick(seed+"/node", len(followers))]
	}
	if !handover {
		return node, nil, "", nil
	}
	var cands []int
	for _, p := range parts {
		if leaders[p] != node {
			cands = append(cands, p)
		}
	}
	if len(cands) == 0 {
		return "", nil, "", engine.E(engine.KindUnavailable, "clock skew", fmt.Errorf("%s leads every partition: nothing to hand over", node))
	}
	p := cands[pick(seed, len(cands))]
	return node, &p, leaders[p], nil
}

// injectClockSkew sets the skew, waits until the node reports it, then
// hands the node its partition.
func (in *Injector) injectClockSkew(ctx context.Context, t engine.Target, f engine.Fault, u Undo) error {
	su := u.Skew
	var ci clockInfo
	if err := adminCall(ctx, su.Admin, http.MethodPut, "/v1/admin/clock", map[string]string{"offset": f.Offset.String()}, &ci); err != nil {
		return engine.E(engine.KindUnavailable, "skew the clock of "+t.Arm.String()+"/"+su.Node, err)
	}
	if time.Duration(ci.OffsetNS) != f.Offset {
		return engine.E(engine.KindInternal, "skew the clock of "+t.Arm.String()+"/"+su.Node, fmt.Errorf("node reports offset %s, want %s", ci.Offset, f.Offset))
	}
	if su.Partition == nil {
		return nil
	}
	p := *su.Partition
	// Let the predecessor stamp a while on its true clock first: a node
	// whose clock was set back hands out no wall time above the one it had
	// reached for |offset|, so for that long every stamp of the
	// predecessor is one a build that ignores received timestamps falls
	// below once it leads.
	if err := waitctx.Sleep(ctx, min(f.Offset.Abs(), time.Second)); err != nil {
		return err
	}
	// The leader may have changed since Prepare: ask whoever leads now. A
	// handover that does not happen (raft refuses a transfer to a node
	// that lags) leaves the skew applied; the confirmation says so.
	deadline := time.Now().Add(8 * time.Second)
	for {
		leaders, err := in.cfg.Leaders(ctx, t.Arm)
		if err == nil && leaders[p] == su.Node {
			in.mu.Lock()
			in.handed[f.ID] = true
			in.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return nil
		}
		if err == nil && leaders[p] != "" {
			adm, aerr := in.cfg.Admin(t.Arm, leaders[p])
			if aerr == nil {
				_ = adminCall(ctx, adm, http.MethodPost, fmt.Sprintf("/v1/admin/partitions/%d/transfer", p), map[string]string{"to": su.Node}, nil)
			}
		}
		if err := waitctx.Sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
}

// recoverClockSkew removes the skew: through the admin API, or, when the
// node is gone (a crashed run's cluster), from its data directory so that
// a node started on it runs unskewed.
func recoverClockSkew(ctx context.Context, su *SkewUndo) error {
	if su == nil {
		return nil
	}
	var ci clockInfo
	err := adminCall(ctx, su.Admin, http.MethodPut, "/v1/admin/clock", map[string]string{"offset": "0s"}, &ci)
	if err == nil {
		if ci.OffsetNS != 0 {
			return engine.E(engine.KindInternal, "unskew "+su.Node, fmt.Errorf("node still reports offset %s", ci.Offset))
		}
		return nil
	}
	if su.Admin.DataDir != "" {
		if rerr := os.Remove(filepath.Join(su.Admin.DataDir, skewFile)); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			if !reachable(ctx, su.Admin.Addr) {
				return nil // the node is gone; its data no longer holds the skew
			}
		}
	}
	return engine.E(engine.KindUnavailable, "unskew "+su.Node, err)
}

func reachable(ctx context.Context, addr string) bool {
	if addr == "" {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+addr+"/livez", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// confirmClockSkew reads the node's physical clock back and compares it
// with this process's wall clock (the midpoint of the request).
func (in *Injector) confirmClockSkew(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	su := u.Skew
	if su == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no node recorded"}
	}
	var ci clockInfo
	t0 := time.Now()
	err := adminCall(ctx, su.Admin, http.MethodGet, "/v1/admin/clock", nil, &ci)
	t1 := time.Now()
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "reading the node's clock: " + err.Error()}
	}
	mid := t0.Add(t1.Sub(t0) / 2)
	measured := time.Duration(ci.PhysicalNS - mid.UnixNano())
	tol := max(20*time.Millisecond, t1.Sub(t0))
	m := fmt.Sprintf("%s's physical clock reads %s against wall time (±%s; skew in force %s)", su.Node, measured.Round(time.Millisecond), tol.Round(time.Millisecond), ci.Offset)
	out := engine.Confirmed
	if (measured - a.Fault.Offset).Abs() > tol {
		out = engine.Mismatch
	}
	if su.Partition != nil && in.cfg.Leaders != nil {
		// The balancer may hand the partition back to its preferred node
		// soon after; what counts is that the skewed node led it.
		in.mu.Lock()
		led := in.handed[a.ID]
		in.mu.Unlock()
		if led {
			m += fmt.Sprintf("; partition %d handed over from %s to %s", *su.Partition, su.From, su.Node)
		} else {
			m += fmt.Sprintf("; partition %d was not handed over to %s (raft refused the transfer)", *su.Partition, su.Node)
			if out == engine.Confirmed {
				out = engine.Inconclusive
			}
		}
	}
	return engine.ConfirmResult{Outcome: out, Measurement: m}
}

type clockInfo struct {
	Offset     string `json:"offset"`
	OffsetNS   int64  `json:"offset_ns"`
	PhysicalNS int64  `json:"physical_ns"`
	WallNS     int64  `json:"wall_ns"`
}

// adminCall makes one authenticated admin API call.
func adminCall(ctx context.Context, adm Admin, method, path string, body, out any) error {
	tok, err := os.ReadFile(adm.TokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, method, "http://"+adm.Addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(rb)))
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

// Default settings of an overload burst.
const (
	defaultBurstBatch   = 20
	burstSources        = 16
	burstRequestTimeout = 2 * time.Second
)

// injectOverload starts the burst against the arm (its load generator
// settings come from Config.Burst, stats sampling and caps for I6
// included) and returns at once; it runs for the fault's duration.
func (in *Injector) injectOverload(ctx context.Context, t engine.Target, f engine.Fault) error {
	in.mu.Lock()
	_, running := in.bursts[f.ID]
	in.mu.Unlock()
	if running {
		return nil
	}
	if in.cfg.Burst == nil {
		return engine.E(engine.KindInvalid, "overload", errors.New("no load generator configured for bursts"))
	}
	if f.Rate <= 0 || f.Duration <= 0 {
		return engine.E(engine.KindInvalid, "overload", fmt.Errorf("rate %g over %s", f.Rate, f.Duration))
	}
	lc, err := in.cfg.Burst(t.Arm)
	if err != nil {
		return engine.E(engine.KindUnavailable, "overload of "+t.Arm.String(), err)
	}
	h := fnv.New32a()
	h.Write([]byte(f.ID))
	lc.Name = fmt.Sprintf("burst-%08x", h.Sum32())
	lc.IDNode = 1000 + int64(t.Arm)
	lc.Sources, lc.Dup, lc.Reorder, lc.StateClients = burstSources, 0, 0, 0
	lc.Batch, lc.PayloadSize = f.Batch, f.Payload
	if lc.Batch <= 0 {
		lc.Batch = defaultBurstBatch
	}
	// A burst sheds what the arm refuses: one retry at most, none after
	// the burst, so it ends with the fault.
	lc.Timeout, lc.MaxRetries, lc.RetryGrace = burstRequestTimeout, 1, time.Millisecond
	lc.NoDrain, lc.FromStart = true, true
	g, err := load.New(ctx, lc)
	if err != nil {
		return engine.E(engine.KindUnavailable, "overload of "+t.Arm.String(), err)
	}
	b := &burst{gen: g, start: time.Now(), before: in.nodeLoad(ctx, t), done: make(chan struct{})}
	in.mu.Lock()
	in.bursts[f.ID] = b
	in.mu.Unlock()
	go func() {
		defer close(b.done)
		defer g.Close()
		// Never cancelled mid-flight: a request cut off would leave its
		// messages with no outcome the history can tell.
		b.sum, b.err = g.Run(context.WithoutCancel(ctx), load.Phase{Name: "overload", Arm: t.Arm.String(), Duration: f.Duration, Rate: f.Rate})
	}()
	return nil
}

// confirmOverload measures the burst from a moment after it began until
// the arm felt it or the burst ended: the rate it achieved, what the arm
// rejected (429) and the queue the arm holds. On a loaded host a burst's
// first requests can take longer than that moment to reach the arm, so
// one early look would call a burst that the arm then felt a mismatch.
func (in *Injector) confirmOverload(ctx context.Context, a engine.Applied) engine.ConfirmResult {
	in.mu.Lock()
	b := in.bursts[a.ID]
	in.mu.Unlock()
	if b == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no burst running"}
	}
	wait := min(700*time.Millisecond, a.Fault.Duration/2)
	if err := waitctx.Sleep(ctx, time.Until(b.start.Add(wait))); err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	for {
		res, final := in.lookAtBurst(ctx, a, b)
		if res.Outcome == engine.Confirmed || final {
			return res
		}
		select {
		case <-ctx.Done():
			return res
		case <-b.done:
		case <-time.After(overloadLookInterval):
		}
	}
}

// overloadLookInterval is the pause between two looks at a burst that the
// arm has not yet felt.
const overloadLookInterval = 250 * time.Millisecond

// lookAtBurst is one look at a running (or just finished) burst; final
// says that no later look can change the outcome (the burst ended).
func (in *Injector) lookAtBurst(ctx context.Context, a engine.Applied, b *burst) (engine.ConfirmResult, bool) {
	final := false
	s, ok := b.gen.Live()
	select {
	case <-b.done:
		s, ok, final = b.sum, true, true
	default:
	}
	if !ok {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "the burst has not started"}, false
	}
	now := in.nodeLoad(ctx, a.Target)
	el := time.Since(b.start).Seconds()
	rate := float64(s.Messages) / el
	m := fmt.Sprintf("burst offered %.0f msg/s (asked %.0f) in %d requests over %.1fs: %d acked, %d rejected, %d timed out, p99 %s",
		rate, a.Fault.Rate, s.Requests, el, s.OK, s.Rejected, s.Timeouts, s.P99.Round(time.Millisecond))
	shed := now.rejected - b.before.rejected
	if now.nodes > 0 {
		m += fmt.Sprintf("; the arm's nodes: %.0f HTTP 429, %.0f messages rejected by admission, %.0f parked in queues, %.0f requests in flight",
			now.code429-b.before.code429, shed, now.queued, now.inflight)
	} else {
		m += "; the arm's nodes did not answer a scrape"
	}
	// Confirmed: the burst reached the arm and the arm felt it (it shed,
	// queued, held requests or timed out). The rate the burst achieved is
	// not required: its sources wait for answers, so an arm that holds
	// their requests slows the burst down, and on a loaded host the last
	// arm's burst may offer a small share of the rate while the arm's
	// nodes hold hundreds of requests. A mismatch is a burst that did not
	// reach the arm, or reached it as a trickle it did not feel, by the
	// time it ended.
	out := engine.Inconclusive
	reached := s.OK+s.Rejected+s.Timeouts > 0 || now.inflight > 0 || now.requests > b.before.requests
	felt := s.Rejected > 0 || s.Timeouts > 0 || shed > 0 || now.code429 > b.before.code429 || now.queued > 0 || now.inflight >= float64(2*max(1, now.nodes))
	switch {
	case felt:
		out = engine.Confirmed
	case !reached || rate < 0.1*a.Fault.Rate:
		out = engine.Mismatch
	}
	return engine.ConfirmResult{Outcome: out, Measurement: m}, final
}

// recoverOverload waits for the burst to end (it ends with the fault's
// duration; requests in flight end within their timeout). A burst of a
// crashed run died with it: nothing to undo.
func (in *Injector) recoverOverload(ctx context.Context, a engine.Applied) error {
	in.mu.Lock()
	b := in.bursts[a.ID]
	in.mu.Unlock()
	if b == nil {
		return nil
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return engine.E(engine.KindUnavailable, "overload "+a.ID, fmt.Errorf("burst still running: %w", ctx.Err()))
	}
	return nil
}

// BurstSummary is the outcome of a finished or running overload burst.
func (in *Injector) BurstSummary(id string) (load.Summary, bool) {
	in.mu.Lock()
	b := in.bursts[id]
	in.mu.Unlock()
	if b == nil {
		return load.Summary{}, false
	}
	select {
	case <-b.done:
		return b.sum, true
	default:
		return b.gen.Live()
	}
}

// nodeLoad scrapes every node of the arm for its shedding counters.
func (in *Injector) nodeLoad(ctx context.Context, t engine.Target) nodeLoad {
	var out nodeLoad
	if in.cfg.NodeHTTP == nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range t.Nodes {
		addr, err := in.cfg.NodeHTTP(t.Arm, n)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, ok := scrapeLoad(ctx, addr)
			if !ok {
				return
			}
			mu.Lock()
			out.rejected += l.rejected
			out.requests += l.requests
			out.code429 += l.code429
			out.queued += l.queued
			out.inflight += l.inflight
			out.nodes++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func scrapeLoad(ctx context.Context, addr string) (nodeLoad, bool) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nodeLoad{}, false
	}
	defer resp.Body.Close()
	var l nodeLoad
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		switch {
		case strings.HasPrefix(name, "chaosgate_aggregator_rejected_total"):
			l.rejected += v
		case strings.HasPrefix(name, "chaosgate_aggregator_http_requests_total") && strings.Contains(name, `route="messages"`):
			l.requests += v
			if strings.Contains(name, `code="429"`) {
				l.code429 += v
			}
		case name == "chaosgate_aggregator_queued_unbounded":
			l.queued += v
		case name == "chaosgate_aggregator_inflight_requests":
			l.inflight += v
		}
	}
	return l, true
}
