package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

// leaderSettle bounds how long a fault that is aimed by leadership waits
// for an arm's election to end: on a loaded host a node may answer that it
// knows no leader, or not answer in time, for a few seconds after a leader
// change.
const leaderSettle = 10 * time.Second

// settledLeaders asks for the arm's partition leaders, again every 250 ms
// while no node reports any, for up to leaderSettle; the last error stands
// after that.
func (in *Injector) settledLeaders(ctx context.Context, arm engine.Arm) (map[int]string, error) {
	deadline := time.Now().Add(leaderSettle)
	for {
		leaders, err := in.cfg.Leaders(ctx, arm)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return leaders, err
		}
		if werr := waitctx.Sleep(ctx, 250*time.Millisecond); werr != nil {
			return nil, err
		}
	}
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
		if leaders, err = in.settledLeaders(ctx, t.Arm); err != nil {
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

// BurstSummary is the outcome of a finished or running overload burst.
func (in *Injector) BurstSummary(id string) (load.Summary, bool) {
	return in.overload.BurstSummary(id)
}
