package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkIngestCommit measures ingest→majority commit (fsynced) on a
// 3-node in-process cluster over real TCP, 128 B payloads, with clients
// sending to the leaders of their keys (as a partition-aware producer) or to
// any node (forwarded). Reported: msgs/s.
func BenchmarkIngestCommit(b *testing.B) {
	payload := strings.Repeat("x", 128)
	for _, bc := range []struct {
		name    string
		batch   int
		clients int
		spread  bool // keys over all partitions, sent to any node (forwarded)
	}{{"sync-1msg-1client", 1, 1, false}, {"sync-1msg-16clients", 1, 16, false}, {"batch100-8clients", 100, 8, false},
		{"batch8-32clients-anynode-64keys", 8, 32, true}} {
		b.Run(bc.name, func(b *testing.B) {
			c := startClusterB(b)
			defer c.stopAll()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			var ctr atomic.Uint64
			var sent, failed atomic.Int64
			var lastErr atomic.Value
			b.SetParallelism(max(1, bc.clients/2))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				src := fmt.Sprint("bench", ctr.Add(1))
				key := src + "-k"
				p := partitionOf(key, 4)
				leader := c.leaderID(p)
				if bc.spread {
					leader = c.ids[int(ctr.Load())%3]
				}
				gen := newGen(4)
				gen.id += ctr.Add(1) << 32
				var seq uint64
				msgs := make([]Message, bc.batch)
				for pb.Next() {
					for i := range msgs {
						if bc.spread {
							msgs[i] = gen.next(src, fmt.Sprint("key", (int(seq)+i*7)%64))
							msgs[i].Payload = payload
							continue
						}
						seq++
						id := ctr.Add(1) + 1<<40
						msgs[i] = Message{SourceID: src, Seq: seq, MsgID: fmt.Sprint(id), GroupKey: key, Fingerprint: fmt.Sprint(id), Payload: payload}
					}
					seq++
					body, _ := json.Marshal(map[string]any{"messages": msgs})
					resp, err := client.Post("http://"+c.http[leader]+"/v1/messages", "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					var ir IngestResponse
					_ = json.NewDecoder(resp.Body).Decode(&ir)
					resp.Body.Close()
					for _, r := range ir.Results {
						if r.Status == StatusOK {
							sent.Add(1)
						} else {
							failed.Add(1)
							lastErr.Store(r.Status + " " + r.Error)
						}
					}
				}
			})
			b.ReportMetric(float64(sent.Load())/b.Elapsed().Seconds(), "msgs/s")
			if n := failed.Load(); n > 0 {
				b.Logf("%d messages not acknowledged, e.g. %v", n, lastErr.Load())
			}
		})
	}
}

// BenchmarkDecodeMessages measures the HTTP JSON decoder and validation on
// a 100-message batch of 128 B payloads.
func BenchmarkDecodeMessages(b *testing.B) {
	gen := newGen(16)
	var msgs []Message
	for i := range 100 {
		m := gen.next("s", fmt.Sprint("k", i))
		m.Payload = strings.Repeat("x", 128)
		msgs = append(msgs, m)
	}
	body, _ := json.Marshal(map[string]any{"messages": msgs})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessages(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkFSMApply measures the replicated state machine (binary decode,
// dedup, reorder, stream write) on 100-message log entries.
func BenchmarkFSMApply(b *testing.B) {
	log, err := openStreamLog(filepath.Join(b.TempDir(), "stream"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.close()
	f, err := newFSM(fsmConfig{Partition: 0, DedupTTL: int64(time.Minute), DedupMax: 100000}, log, fsmHooks{})
	if err != nil {
		b.Fatal(err)
	}
	gen := newGen(1)
	b.ReportAllocs()
	idx := uint64(0)
	for b.Loop() {
		c := command{K: cmdBatch, N: "n1", T: time.Now().UnixNano()}
		for range 100 {
			c.M = append(c.M, stamped{Message: gen.next("s", "k"), H: "1.0"})
		}
		c.M[0].Payload = strings.Repeat("x", 128)
		data := encodeCommand(&c)
		idx++
		f.ApplyBatch([]*raft.Log{{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}})
		f.flush() // the stream write is part of the cost
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}
