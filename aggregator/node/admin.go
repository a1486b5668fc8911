package node

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// The admin API (served only when the node has an admin token):
//
//	GET  /v1/admin/clock                      the clock skew in force and the physical clock it yields
//	PUT  /v1/admin/clock  {"offset":"-300ms"} skew the physical clock by a signed duration (0 removes it)
//	POST /v1/admin/partitions/{p}/transfer {"to":"n2"}  hand partition p's leadership to node n2 (this node must lead p)
//
// Every call carries "Authorization: Bearer TOKEN" with the token of
// Config.AdminToken. The skew exists because a process cannot have its own
// clock moved without privileges: it offsets the HLC's physical clock input
// (Config.Physical) at run time, which is what a skewed host clock would
// feed it. It is persisted in DATA/clock-skew, so a restarted node keeps
// it, as a node on a skewed host would.

// ClockSkewFile is the file in the data directory that holds the clock skew.
const ClockSkewFile = "clock-skew"

// ClockInfo is the answer of GET and PUT /v1/admin/clock.
type ClockInfo struct {
	// Offset is the skew in force (Go duration, e.g. "-300ms").
	Offset string `json:"offset"`
	// OffsetNS is the same skew in nanoseconds.
	OffsetNS int64 `json:"offset_ns"`
	// PhysicalNS is the physical clock the HLC uses now (Unix ns); WallNS
	// the node's own unskewed wall clock read at the same moment.
	PhysicalNS int64 `json:"physical_ns"`
	WallNS     int64 `json:"wall_ns"`
	// HLC is the clock's latest timestamp.
	HLC string `json:"hlc"`
	// MaxClockOffset is the node's --max-clock-offset.
	MaxClockOffset string `json:"max_clock_offset"`
}

// TransferInfo is the answer of a leadership transfer.
type TransferInfo struct {
	Partition int    `json:"partition"`
	From      string `json:"from"`
	To        string `json:"to"`
	Epoch     uint64 `json:"epoch"`
}

// skewedPhysical wraps the configured physical clock with the run-time
// skew.
func (n *Node) skewedPhysical(base func() int64) func() int64 {
	return func() int64 { return base() + n.skew.Load() }
}

// loadSkew reads the persisted skew (absent: none).
func (n *Node) loadSkew() error {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, ClockSkewFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: malformed clock skew %q: want a signed duration such as -300ms", ClockSkewFile, b)
	}
	n.skew.Store(int64(d))
	if d != 0 {
		n.log.Warn("CLOCK SKEW ON: the physical clock is offset", "offset", d.String())
	}
	return nil
}

// SetClockSkew offsets the physical clock by d (0 removes the skew) and
// persists it.
func (n *Node) SetClockSkew(d time.Duration) error {
	path := filepath.Join(n.cfg.DataDir, ClockSkewFile)
	if d == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	n.skew.Store(int64(d))
	n.log.Warn("clock skew set", "offset", d.String())
	return nil
}

// ClockInfo reports the skew and the physical clock it yields.
func (n *Node) ClockInfo() ClockInfo {
	wall := time.Now().UnixNano()
	phys := n.physical()
	off := time.Duration(n.skew.Load())
	return ClockInfo{Offset: off.String(), OffsetNS: int64(off), PhysicalNS: phys, WallNS: wall, HLC: n.clock.Last().String(),
		MaxClockOffset: n.cfg.MaxClockOffset.String()}
}

// TransferLeadership hands partition p's leadership to node to; this node
// must lead p. It returns once raft reports the transfer done.
func (n *Node) TransferLeadership(p int, to string) (TransferInfo, error) {
	g, err := n.group(p)
	if err != nil {
		return TransferInfo{}, err
	}
	if _, ok := n.cfg.Peers[to]; !ok {
		return TransferInfo{}, errorf(KindInvalid, "no node %q", to)
	}
	if !g.isLeader() {
		return TransferInfo{}, errorf(KindUnavailable, "not the leader of partition %d (leader: %s)", p, g.leader())
	}
	if to == n.cfg.ID {
		return TransferInfo{Partition: p, From: to, To: to, Epoch: g.epoch()}, nil
	}
	g.mu.Lock()
	g.lastTransfer = time.Now() // the balancer leaves it alone for a while
	g.mu.Unlock()
	if err := g.raft.LeadershipTransferToServer(raft.ServerID(to), raft.ServerAddress(to)).Error(); err != nil {
		return TransferInfo{}, errorf(KindUnavailable, "transfer partition %d to %s: %v", p, to, err)
	}
	return TransferInfo{Partition: p, From: n.cfg.ID, To: to, Epoch: g.epoch()}, nil
}

func (n *Node) adminRoutes(mux *http.ServeMux) {
	if n.cfg.AdminToken == "" {
		return
	}
	mux.HandleFunc("GET /v1/admin/clock", n.admin(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.ClockInfo())
	}))
	mux.HandleFunc("PUT /v1/admin/clock", n.admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Offset string `json:"offset"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeErr(w, errorf(KindInvalid, "body: %v (want {\"offset\":\"-300ms\"})", err))
			return
		}
		d, err := time.ParseDuration(req.Offset)
		if err != nil {
			writeErr(w, errorf(KindInvalid, "offset %q: want a signed duration such as -300ms", req.Offset))
			return
		}
		if err := n.SetClockSkew(d); err != nil {
			writeErr(w, errorf(KindUnavailable, "persist the clock skew: %v", err))
			return
		}
		writeJSON(w, http.StatusOK, n.ClockInfo())
	}))
	mux.HandleFunc("POST /v1/admin/partitions/{partition}/transfer", n.admin(func(w http.ResponseWriter, r *http.Request) {
		p, err := strconv.Atoi(r.PathValue("partition"))
		if err != nil {
			writeErr(w, errorf(KindInvalid, "partition %q is not a number", r.PathValue("partition")))
			return
		}
		var req struct {
			To string `json:"to"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeErr(w, errorf(KindInvalid, "body: %v (want {\"to\":\"n2\"})", err))
			return
		}
		ti, err := n.TransferLeadership(p, req.To)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ti)
	}))
}

// admin checks the bearer token.
func (n *Node) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(n.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chaosgate-aggregator-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin API: missing or wrong bearer token"})
			return
		}
		h(w, r)
	}
}
