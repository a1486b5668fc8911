package node

import (
	"context"
	"fmt"
	"net/http"

	"github.com/chaosgate/chaosgate/aggregator/upstream"
)

// upstreamSink is the node's ingest path as the upstream consumers see it:
// the same path as HTTP, gRPC and WebSocket ingest.
type upstreamSink struct{ n *Node }

// Submit decodes each payload (one message of the message contract) and
// ingests the valid ones in one call; every result maps to an outcome.
func (s upstreamSink) Submit(ctx context.Context, payloads [][]byte) []upstream.Answer {
	out := make([]upstream.Answer, len(payloads))
	msgs := make([]Message, 0, len(payloads))
	idx := make([]int, 0, len(payloads))
	for i, p := range payloads {
		ms, err := DecodeMessages(p)
		switch {
		case err != nil:
			out[i] = upstream.Answer{Status: upstream.Permanent, Reason: "invalid: " + err.Error()}
		case len(ms) != 1:
			out[i] = upstream.Answer{Status: upstream.Permanent, Reason: fmt.Sprintf("invalid: an upstream record carries one message, this one carries %d", len(ms))}
		default:
			m := ms[0]
			out[i] = upstream.Answer{MsgID: m.MsgID, Source: m.SourceID, Seq: m.Seq, Key: m.GroupKey}
			msgs = append(msgs, m)
			idx = append(idx, i)
		}
	}
	if len(msgs) == 0 {
		return out
	}
	ictx, cancel := context.WithTimeout(ctx, s.n.cfg.RequestTimeout)
	defer cancel()
	res := s.n.Ingest(ictx, msgs, IngestOptions{Conn: "upstream"})
	for j, r := range res {
		o := &out[idx[j]]
		o.Partition, o.Epoch, o.Node = r.Partition, r.Epoch, r.Node
		switch r.Status {
		case StatusOK:
			o.Status = upstream.Stored
		case StatusDuplicate:
			o.Status, o.Duplicate = upstream.Stored, true
		case StatusStaleEpoch:
			o.Status, o.Reason = upstream.Permanent, "stale_epoch: "+r.Error
		case StatusError:
			switch r.ErrorKind {
			case "late":
				o.Status, o.Reason = upstream.Permanent, "late: "+r.Error
			default:
				o.Status, o.Reason = upstream.Transient, r.ErrorKind+": "+r.Error
			}
		default: // rejected (overload) and anything unknown: try again
			o.Status, o.Reason = upstream.Transient, r.Status+": "+r.Error
		}
	}
	return out
}

// Healthy is the node's readiness: every partition has a leader and this
// node applied what it knows to be committed.
func (s upstreamSink) Healthy() (bool, string) {
	select {
	case <-s.n.stop:
		return false, "node stopping"
	default:
	}
	return s.n.Ready()
}

// startUpstreams opens the dead-letter queue and starts the consumers.
func (n *Node) startUpstreams() error {
	m, err := upstream.New(upstream.Options{Node: n.cfg.ID, Nodes: n.ids, DataDir: n.cfg.DataDir, DLQMax: n.cfg.DLQMax,
		Registerer: n.metrics.reg, Logger: n.log}, upstreamSink{n}, n.cfg.Upstreams)
	if err != nil {
		return err
	}
	n.upstreams = m
	m.Start()
	return nil
}

// Upstreams is the node's upstream manager (the dead-letter queue and the
// broker consumers).
func (n *Node) Upstreams() *upstream.Manager { return n.upstreams }

func (n *Node) upstreamRoutes(mux *http.ServeMux) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.upstreams == nil {
			writeErr(w, errorf(KindUnavailable, "node starting"))
			return
		}
		n.upstreams.Handler().ServeHTTP(w, r)
	})
	for _, p := range []string{"GET /v1/dlq", "GET /v1/dlq/{id}", "POST /v1/dlq/{id}/replay", "GET /v1/upstreams", "POST /v1/upstreams/{name}/{action}"} {
		mux.Handle(p, h)
	}
}
