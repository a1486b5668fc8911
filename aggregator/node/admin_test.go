package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testAdminToken = "0123456789abcdef0123"

func adminDo(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The admin API skews the physical clock the HLC reads (persisted across
// a restart), reads it back, removes it, and hands a partition's
// leadership to another node — only for a caller with the token.
func TestAdminClockSkewAndLeadershipTransfer(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.AdminToken = testAdminToken; cfg.BalanceInterval = time.Hour })
	base := "http://" + c.http["n2"]
	if code, _ := adminDo(t, "GET", base+"/v1/admin/clock", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d", code)
	}
	if code, _ := adminDo(t, "PUT", base+"/v1/admin/clock", "wrong-token-wrong-token", map[string]string{"offset": "-1s"}); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: HTTP %d", code)
	}
	if code, _ := adminDo(t, "PUT", base+"/v1/admin/clock", testAdminToken, map[string]string{"offset": "soon"}); code != http.StatusBadRequest {
		t.Fatalf("bad offset: HTTP %d", code)
	}
	code, body := adminDo(t, "PUT", base+"/v1/admin/clock", testAdminToken, map[string]string{"offset": "-300ms"})
	var ci ClockInfo
	if code != 200 || json.Unmarshal(body, &ci) != nil || ci.OffsetNS != int64(-300*time.Millisecond) {
		t.Fatalf("skew: HTTP %d %s", code, body)
	}
	if d := time.Duration(ci.PhysicalNS - ci.WallNS); d > -290*time.Millisecond || d < -310*time.Millisecond {
		t.Fatalf("physical clock %s from wall, want -300ms", d)
	}
	skewFile := filepath.Join(c.node("n2").cfg.DataDir, ClockSkewFile)
	if b, err := os.ReadFile(skewFile); err != nil || string(bytes.TrimSpace(b)) != "-300ms" {
		t.Fatalf("persisted skew: %q %v", b, err)
	}
	_, metrics, _ := doJSON(t, "GET", base+"/metrics", nil)
	if !bytes.Contains(metrics, []byte("chaosgate_aggregator_clock_skew_seconds -0.3")) {
		t.Fatalf("metrics lack the skew: %s", grepLines(string(metrics), "clock"))
	}
	// Leadership of a partition n2 follows moves to n2.
	p := -1
	for q := 0; q < 4; q++ {
		if c.leaderOf(q) != "n2" {
			p = q
			break
		}
	}
	if p < 0 {
		// n2 won every election: hand partition 0 to n3 first, so there is
		// a leadership to move to n2.
		p = 0
		if code, body := adminDo(t, "POST", "http://"+c.http["n2"]+"/v1/admin/partitions/0/transfer", testAdminToken, map[string]string{"to": "n3"}); code != 200 {
			t.Fatalf("transfer away from n2: HTTP %d %s", code, body)
		}
		deadline := time.Now().Add(10 * time.Second)
		for c.leaderOf(p) == "n2" {
			if time.Now().After(deadline) {
				t.Fatalf("n2 still leads partition %d", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	from := c.leaderOf(p)
	url := "http://" + c.http[from] + "/v1/admin/partitions/" + strconv.Itoa(p) + "/transfer"
	if code, body := adminDo(t, "POST", "http://"+c.http["n2"]+"/v1/admin/partitions/"+strconv.Itoa(p)+"/transfer", testAdminToken, map[string]string{"to": "n3"}); code == 200 {
		t.Fatalf("a follower transferred: %s", body)
	}
	if code, body := adminDo(t, "POST", url, testAdminToken, map[string]string{"to": "n2"}); code != 200 {
		t.Fatalf("transfer: HTTP %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.leaderOf(p) != "n2" {
		if time.Now().After(deadline) {
			t.Fatalf("n2 does not lead partition %d", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Removing the skew removes the file.
	if code, body := adminDo(t, "PUT", base+"/v1/admin/clock", testAdminToken, map[string]string{"offset": "0s"}); code != 200 || json.Unmarshal(body, &ci) != nil || ci.OffsetNS != 0 {
		t.Fatalf("unskew: HTTP %d %s", code, body)
	}
	if _, err := os.Stat(skewFile); !os.IsNotExist(err) {
		t.Fatalf("skew file after removal: %v", err)
	}
}

// Without a token the node serves no admin API at all.
func TestAdminAPIOffWithoutToken(t *testing.T) {
	c := startCluster(t, 1, nil)
	if code, _ := adminDo(t, "GET", "http://"+c.http["n1"]+"/v1/admin/clock", testAdminToken, nil); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Fatalf("admin API served without a token: HTTP %d", code)
	}
}

// --dial-source must be an IP address: a host name or a typo is refused
// when the node starts, naming the flag and what it wants.
func TestDialSourceMustBeAnIP(t *testing.T) {
	cfg := Config{ID: "n1", DataDir: t.TempDir(), Partitions: 1, Peers: map[string]string{"n1": "127.0.0.1:1"}, DialSource: "node-1"}
	cfg.Defaults()
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--dial-source") || !strings.Contains(err.Error(), "IP address") {
		t.Fatalf("--dial-source node-1: %v", err)
	}
	cfg.DialSource = "127.0.0.3"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--dial-source 127.0.0.3: %v", err)
	}
}
