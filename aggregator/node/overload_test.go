package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vmHWM returns the peak resident set size of pid in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to measure RSS: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("VmHWM missing")
	return 0
}

// A flood far beyond what the cluster can commit is refused explicitly
// (429 with Retry-After and retry_after_ms), every acknowledged message is
// in the streams, and each node's peak RSS stays under its cap.
func TestOverloadRejectsExplicitlyBoundedMemoryNoAckedLoss(t *testing.T) {
	const capBytes = 256 << 20 // the default --rss-cap
	// 48 sources at 10 msgs/s each: the sustainable rate is 480 msgs/s; the
	// flood offers several thousand per second (about 10x and more).
	pc := startProcCluster(t, 3, func(cc *childConfig) { cc.RSSCap, cc.SourceRate = capBytes, 10 })
	payload := strings.Repeat("p", 1024)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	acked := map[string]Message{}
	codes := map[int]int{}
	var offered int
	retryAfterSeen := false
	why := map[string]int{}
	stop := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := newGen(4)
			gen.id += uint64(w) << 32
			src := fmt.Sprint("flood", w)
			var pending []Message
			for i := 0; time.Now().Before(stop); i++ {
				for len(pending) < 200 {
					pending = append(pending, gen.next(src, fmt.Sprintf("k%d", (i+len(pending))%31)))
					pending[len(pending)-1].Payload = payload
				}
				body, _ := json.Marshal(map[string]any{"messages": pending})
				resp, err := client.Post("http://"+pc.http[pc.ids[(w+i)%3]]+"/v1/messages", "application/json", bytes.NewReader(body))
				if err != nil {
					continue
				}
				var ir IngestResponse
				_ = json.NewDecoder(resp.Body).Decode(&ir)
				resp.Body.Close()
				mu.Lock()
				offered += len(pending)
				codes[resp.StatusCode]++
				if resp.StatusCode == 503 && len(ir.Results) > 0 {
					for _, r := range ir.Results {
						if r.Status == StatusError {
							why[r.ErrorKind+": "+r.Error[:min(60, len(r.Error))]]++
							break
						}
					}
				}
				if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "" {
					retryAfterSeen = true
				}
				var again []Message
				if len(ir.Results) == len(pending) {
					for j, r := range ir.Results {
						if r.Status == StatusOK || r.Status == StatusDuplicate {
							acked[r.MsgID] = pending[j]
						} else {
							again = append(again, pending[j]) // retry: same msg_id and seq
						}
					}
				} else {
					again = pending
				}
				mu.Unlock()
				pending = again
			}
		}()
	}
	wg.Wait()
	t.Logf("offered %d messages in 4s (%.0f/s), acknowledged %d (%.0f/s), responses by status %v",
		offered, float64(offered)/4, len(acked), float64(len(acked))/4, codes)
	t.Logf("503 causes: %v", why)
	if codes[429] == 0 || !retryAfterSeen {
		t.Fatalf("no explicit rejection under overload: %v", codes)
	}
	for id, cmd := range pc.cmds {
		hwm := vmHWM(t, cmd.Process.Pid)
		t.Logf("node %s peak RSS %d MiB (cap %d MiB)", id, hwm>>20, capBytes>>20)
		if hwm > capBytes {
			t.Errorf("node %s peak RSS %d MiB exceeds the %d MiB cap", id, hwm>>20, capBytes>>20)
		}
	}
	pc.waitHTTPReady()
	if lost := pc.lost(t, pc.ids[0], acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost under overload", len(lost))
	}
}
