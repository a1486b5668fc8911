// Package consultest runs a real Consul agent (`consul agent -dev`, the
// cached build scripts/build-consul.sh makes) on 127.0.0.1 free ports for
// tests: a test skips outside CI when the binary is missing and fails with
// CI=true.
package consultest

import (
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// Binary is the Consul binary: CHAOSGATE_CONSUL_BIN, else the cached
// build under CHAOSGATE_CACHE (default ~/.cache/chaosgate).
func Binary(t testing.TB) string {
	t.Helper()
	return buildcache.Binary(t, "CHAOSGATE_CONSUL_BIN", "consul-1.22.0", "scripts/build-consul.sh")
}

// Agent is a real `consul agent -dev` on 127.0.0.1.
type Agent struct {
	bin   string
	ports [4]int
	cmd   *exec.Cmd
	done  chan struct{}
}

// Start starts an agent on free ports and waits for its leader; it stops
// when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	a := &Agent{bin: Binary(t)}
	ports, err := freeport.Ports(len(a.ports))
	if err != nil {
		t.Fatal(err)
	}
	copy(a.ports[:], ports)
	a.Restart(t)
	t.Cleanup(a.Stop)
	return a
}

// Addr is the agent's HTTP address (host:port).
func (a *Agent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.ports[0]) }

// Restart starts the agent again on the same ports (a -dev agent starts
// empty) and waits for its leader.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.cmd = exec.Command(a.bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports[0]), "-dns-port", "-1", "-grpc-port", "-1",
		"-serf-lan-port", strconv.Itoa(a.ports[1]), "-serf-wan-port", strconv.Itoa(a.ports[2]),
		"-server-port", strconv.Itoa(a.ports[3]))
	a.cmd.Dir = t.TempDir()
	// The agent dies with the test process even when its cleanups do not
	// run (a panic, a -timeout).
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("starting consul: %v", err)
	}
	a.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(a.cmd, a.done)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + a.Addr() + "/v1/status/leader")
		if err == nil {
			var b [64]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if n > 2 && string(b[:n]) != `""` {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("consul did not elect a leader in 30s")
}

// Stop kills the agent (by its pid) and waits for it.
func (a *Agent) Stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}

// Client is an API client of the agent.
func (a *Agent) Client(t testing.TB) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Put writes key, retrying for up to 20 s while the agent settles.
func Put(t testing.TB, c *api.Client, key string, v []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.KV().Put(&api.KVPair{Key: key, Value: v}, nil)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul put: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
