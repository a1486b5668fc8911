package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	supervisor "github.com/chaosgate/chaosgate/engine/target/local"
)

// Clusters adapts the local supervisors of the arms to Nodes (for the
// injector) and to engine.Topology (for the runner). It talks to the nodes
// on their own listen addresses, never through the fault proxies, so that
// what it learns is not itself subject to the faults.
type Clusters struct {
	Arms map[engine.Arm]*supervisor.Supervisor
	// Client is the HTTP client for /readyz and /v1/cluster (default: 2s
	// timeout).
	Client *http.Client
}

var (
	_ Nodes           = Clusters{}
	_ engine.Topology = Clusters{}
)

func (c Clusters) sup(arm engine.Arm) (*supervisor.Supervisor, error) {
	s, ok := c.Arms[arm]
	if !ok || s == nil {
		return nil, engine.E(engine.KindNotFound, "clusters", fmt.Errorf("no cluster for arm %s", arm))
	}
	return s, nil
}

func (c Clusters) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{Timeout: 2 * time.Second}
}

func (c Clusters) spec(arm engine.Arm, node string) (supervisor.NodeSpec, error) {
	s, err := c.sup(arm)
	if err != nil {
		return supervisor.NodeSpec{}, err
	}
	for _, n := range s.Nodes() {
		if n.ID == node {
			return n, nil
		}
	}
	return supervisor.NodeSpec{}, engine.E(engine.KindNotFound, "clusters", fmt.Errorf("no node %s in the %s cluster", node, arm))
}

// Nodes lists an arm's node ids in order.
func (c Clusters) Nodes(arm engine.Arm) []string {
	s, err := c.sup(arm)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range s.Nodes() {
		out = append(out, n.ID)
	}
	return out
}

// Pid is the node's current process id.
func (c Clusters) Pid(arm engine.Arm, node string) (int, error) {
	s, err := c.sup(arm)
	if err != nil {
		return 0, err
	}
	pid, ok := s.PIDs()[node]
	if !ok || pid == 0 {
		return 0, engine.E(engine.KindUnavailable, "pid", fmt.Errorf("node %s/%s is not running", arm, node))
	}
	return pid, nil
}

// NodeHTTP is a node's own HTTP listen address.
func (c Clusters) NodeHTTP(arm engine.Arm, node string) (string, error) {
	spec, err := c.spec(arm, node)
	if err != nil {
		return "", err
	}
	return spec.HTTP, nil
}

// WaitReady polls the node's /readyz until it answers 200.
func (c Clusters) WaitReady(ctx context.Context, arm engine.Arm, node string) error {
	spec, err := c.spec(arm, node)
	if err != nil {
		return err
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+spec.HTTP+"/readyz", nil)
		if resp, err := c.client().Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return engine.E(engine.KindUnavailable, "wait ready", fmt.Errorf("%s/%s: %w", arm, node, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Leaders returns partition → leader as the first answering node of the
// arm reports it (GET /v1/cluster).
func (c Clusters) Leaders(ctx context.Context, arm engine.Arm) (map[int]string, error) {
	s, err := c.sup(arm)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range s.Nodes() {
		l, err := c.leadersFrom(ctx, n.HTTP)
		if err == nil {
			return l, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
	}
	return nil, engine.E(engine.KindUnavailable, "leaders of "+arm.String(), errors.Join(errs...))
}

func (c Clusters) leadersFrom(ctx context.Context, addr string) (map[int]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/cluster: HTTP %d", resp.StatusCode)
	}
	var body struct {
		Partitions []struct {
			ID     int    `json:"id"`
			Leader string `json:"leader"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET /v1/cluster: %w", err)
	}
	out := map[int]string{}
	for _, p := range body.Partitions {
		out[p.ID] = p.Leader
	}
	return out, nil
}

// Leader is the leader of one partition (nil: the node that leads the most
// partitions).
func (c Clusters) Leader(ctx context.Context, arm engine.Arm, partition *int) (string, error) {
	l, err := c.Leaders(ctx, arm)
	if err != nil {
		return "", err
	}
	node, _, err := ChooseSplitBrain(l, partition)
	return node, err
}
