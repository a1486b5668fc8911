package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

// procs is a tiny real supervisor for tests: one `sleep` process per node,
// restarted when it dies.
type procs struct {
	mu    sync.Mutex
	cmds  map[string]*exec.Cmd
	stop  bool
	wg    sync.WaitGroup
	start map[string]int
	argv  []string
}

func newProcs(t *testing.T, nodes ...string) *procs {
	return newProcsRunning(t, []string{"sleep", "300"}, nodes...)
}

// newProcsRunning is newProcs with another command per node.
func newProcsRunning(t *testing.T, argv []string, nodes ...string) *procs {
	p := &procs{cmds: map[string]*exec.Cmd{}, start: map[string]int{}, argv: argv}
	for _, n := range nodes {
		p.spawn(t, n)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		p.stop = true
		for _, c := range p.cmds {
			c.Process.Signal(syscallSIGCONT)
			c.Process.Kill()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *procs) spawn(t *testing.T, node string) {
	// Start and register under the lock, so that a restart racing the
	// cleanup either is killed by it or does not start at all.
	p.mu.Lock()
	if p.stop {
		p.mu.Unlock()
		return
	}
	c := exec.Command(p.argv[0], p.argv[1:]...)
	// A test binary that panics (a timeout) cannot clean up: the node
	// dies with it.
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		p.mu.Unlock()
		t.Error(err)
		return
	}
	p.cmds[node] = c
	p.start[node]++
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.Wait()
		p.mu.Lock()
		stop := p.stop
		p.mu.Unlock()
		if !stop {
			time.Sleep(50 * time.Millisecond) // restart backoff
			p.spawn(t, node)
		}
	}()
}

func (p *procs) Pid(_ engine.Arm, node string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.cmds[node]
	if !ok {
		return 0, fmt.Errorf("no node %s", node)
	}
	return c.Process.Pid, nil
}

func (p *procs) WaitReady(ctx context.Context, arm engine.Arm, node string) error {
	for {
		pid, err := p.Pid(arm, node)
		if err == nil && (engine.Proc{Pid: pid}).Alive() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// httpNodes starts one HTTP server per node (serving /livez) and a proxy
// for every client→node and node→node edge of the cluster.
func httpNodes(t *testing.T, cluster string, nodes ...string) *proxy.Set {
	return httpNodesServing(t, cluster, []byte("ok"), nodes...)
}

// httpNodesServing is httpNodes with every path answered by body.
func httpNodesServing(t *testing.T, cluster string, body []byte, nodes ...string) *proxy.Set {
	set := proxy.NewSet()
	t.Cleanup(func() { set.Close() })
	for _, n := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		if _, err := set.Add(proxy.EdgeName(cluster, "client", n), ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		for _, from := range nodes {
			if from != n {
				if _, err := set.Add(proxy.EdgeName(cluster, from, n), ln.Addr().String()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return set
}
