package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
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
	}{{"sync-1msg-1client", 1, 1}, {"sync-1msg-16clients", 1, 16}, {"batch100-8clients", 100, 8}} {
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
				var seq uint64
				msgs := make([]Message, bc.batch)
				for pb.Next() {
					for i := range msgs {
						seq++
						id := ctr.Add(1) + 1<<40
						msgs[i] = Message{SourceID: src, Seq: seq, MsgID: fmt.Sprint(id), GroupKey: key, Fingerprint: fmt.Sprint(id), Payload: payload}
					}
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
