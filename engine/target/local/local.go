// Package local supervises a local cluster of reference-aggregator nodes as
// child processes of the chaosgate binary, the way Kubernetes would: it
// restarts a node that dies with exponential backoff, waits for /readyz,
// publishes DIR/cluster.json, reports node events, and stops everything on
// context cancellation (SIGTERM, then SIGKILL after a grace period).
//
// Each node's listen addresses and the addresses it dials for every peer are
// separate settings, so a fault proxy can sit on any node→node edge.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/internal/freeport"
)

// NodeSpec is how one node is started.
type NodeSpec struct {
	ID   string
	HTTP string // listen address
	GRPC string // listen address
	Raft string // listen address
	// Peers maps every node id (this one included) to the raft address this
	// node dials for it; PeerHTTP likewise for request forwarding. Empty
	// entries default to the peer's listen address.
	Peers    map[string]string
	PeerHTTP map[string]string
	// Defects are passed as --defect NAME each.
	Defects []string
	// Args are extra arguments appended to the node command line.
	Args []string
}

// NodeEventKind says what happened to a node.
type NodeEventKind uint8

// Node lifecycle events.
const (
	NodeStarted   NodeEventKind = 1 + iota // the process was spawned
	NodeReady                              // /readyz answered 200
	NodeExited                             // the process exited (crash, kill or stop)
	NodeRestarted                          // a restarted node is ready again
)

// String names the event kind.
func (k NodeEventKind) String() string {
	switch k {
	case NodeStarted:
		return "started"
	case NodeReady:
		return "ready"
	case NodeExited:
		return "exited"
	case NodeRestarted:
		return "restarted"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// NodeEvent reports a node lifecycle change.
type NodeEvent struct {
	Kind     NodeEventKind
	Node     string
	PID      int
	At       time.Time
	Restarts int    // how many times this node was restarted so far
	Exit     string // exit status for NodeExited
}

// Config describes the cluster to supervise.
type Config struct {
	// Binary is the chaosgate executable; empty means os.Executable().
	Binary string
	// Dir holds cluster.json and one directory per node (nX/node.log, nX/data).
	Dir string
	// Nodes are the node specs (see Plan).
	Nodes []NodeSpec
	// Partitions is passed as --partitions when > 0.
	Partitions int
	// ReadyTimeout bounds the wait for every node's /readyz at start.
	ReadyTimeout time.Duration
	// Grace is the time between SIGTERM and SIGKILL on stop.
	Grace time.Duration
	// BackoffInitial and BackoffMax bound the restart delay, which doubles
	// after each crash and resets once a node stayed up for BackoffReset.
	BackoffInitial, BackoffMax, BackoffReset time.Duration
	// OnEvent, if set, is called (from supervisor goroutines, serially) for
	// every node event. It must not block for long.
	OnEvent func(NodeEvent)
	// Logger receives supervisor logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("local: find chaosgate binary: %w", err)
		}
		c.Binary = exe
	}
	if c.Dir == "" {
		return errors.New("local: Config.Dir is required")
	}
	if len(c.Nodes) == 0 {
		return errors.New("local: no nodes")
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 5 * time.Second
	}
	if c.BackoffInitial <= 0 {
		c.BackoffInitial = 250 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.BackoffReset <= 0 {
		c.BackoffReset = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		if n.ID == "" || n.HTTP == "" || n.GRPC == "" || n.Raft == "" {
			return fmt.Errorf("local: node %q needs an id and http, grpc and raft addresses", n.ID)
		}
		if seen[n.ID] {
			return fmt.Errorf("local: duplicate node id %q", n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}

// Plan lays out n nodes n1..nN on 127.0.0.1. basePort > 0 gives node i
// (from 0) http basePort+3i, grpc basePort+3i+1, raft basePort+3i+2;
// basePort 0 picks free ports. Every node dials its peers directly.
func Plan(n, basePort int) ([]NodeSpec, error) {
	if n < 1 {
		return nil, errors.New("local: need at least one node")
	}
	specs := make([]NodeSpec, n)
	for i := range specs {
		s := &specs[i]
		s.ID = fmt.Sprintf("n%d", i+1)
		if basePort > 0 {
			s.HTTP = fmt.Sprintf("127.0.0.1:%d", basePort+3*i)
			s.GRPC = fmt.Sprintf("127.0.0.1:%d", basePort+3*i+1)
			s.Raft = fmt.Sprintf("127.0.0.1:%d", basePort+3*i+2)
			continue
		}
		ports, err := freeport.Addrs(3)
		if err != nil {
			return nil, err
		}
		s.HTTP, s.GRPC, s.Raft = ports[0], ports[1], ports[2]
	}
	return specs, nil
}

// ClusterFile is the JSON shape of DIR/cluster.json.
type ClusterFile struct {
	Nodes []ClusterNode `json:"nodes"`
}

// ClusterNode is one node of cluster.json.
type ClusterNode struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	GRPC string `json:"grpc"`
	Raft string `json:"raft"`
	PID  int    `json:"pid"`
}

// ReadClusterFile loads a cluster.json written by a supervisor.
func ReadClusterFile(path string) (ClusterFile, error) {
	var cf ClusterFile
	b, err := os.ReadFile(path)
	if err != nil {
		return cf, fmt.Errorf("cluster file: %w", err)
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return cf, fmt.Errorf("cluster file %s: %w (hint: expected {\"nodes\":[{\"id\",\"http\",\"grpc\",\"raft\",\"pid\"}]})", path, err)
	}
	if len(cf.Nodes) == 0 {
		return cf, fmt.Errorf("cluster file %s: no nodes", path)
	}
	for i, n := range cf.Nodes {
		if n.ID == "" || n.HTTP == "" {
			return cf, fmt.Errorf("cluster file %s: nodes[%d] needs id and http", path, i)
		}
	}
	return cf, nil
}

type node struct {
	spec     NodeSpec
	dir      string
	mu       sync.Mutex
	cmd      *exec.Cmd
	pid      int
	restarts int
	ready    bool
}

// Supervisor runs the nodes of one cluster.
type Supervisor struct {
	cfg   Config
	nodes []*node
	byID  map[string]*node

	evMu  sync.Mutex // serialises OnEvent calls
	fileM sync.Mutex // serialises cluster.json writes
	wg    sync.WaitGroup
	stop  chan struct{}
	once  sync.Once
	done  chan struct{}
	allOK chan struct{}
}

// Start launches every node, waits until all are ready and cluster.json is
// written, and returns the running supervisor. Cancelling ctx (or calling
// Stop) stops the nodes; Wait blocks until they are gone.
func Start(ctx context.Context, cfg Config) (*Supervisor, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	s := &Supervisor{cfg: cfg, byID: map[string]*node{}, stop: make(chan struct{}), done: make(chan struct{}), allOK: make(chan struct{})}
	for _, spec := range cfg.Nodes {
		n := &node{spec: spec, dir: filepath.Join(cfg.Dir, spec.ID)}
		if err := os.MkdirAll(filepath.Join(n.dir, "data"), 0o755); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		s.nodes = append(s.nodes, n)
		s.byID[spec.ID] = n
	}
	readyCh := make(chan string, len(s.nodes))
	for _, n := range s.nodes {
		s.wg.Add(1)
		go s.run(n, readyCh)
	}
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.stop:
		}
	}()
	go func() { s.wg.Wait(); close(s.done) }()

	timer := time.NewTimer(cfg.ReadyTimeout)
	defer timer.Stop()
	for ready := 0; ready < len(s.nodes); {
		select {
		case <-readyCh:
			ready++
		case <-timer.C:
			s.Stop()
			<-s.done
			return nil, fmt.Errorf("local: nodes not ready within %s: %s (see %s/nX/node.log)", cfg.ReadyTimeout, strings.Join(s.notReady(), ", "), cfg.Dir)
		case <-ctx.Done():
			s.Stop()
			<-s.done
			return nil, ctx.Err()
		}
	}
	if err := s.writeClusterFile(); err != nil {
		s.Stop()
		<-s.done
		return nil, err
	}
	close(s.allOK)
	return s, nil
}

func (s *Supervisor) notReady() []string {
	var out []string
	for _, n := range s.nodes {
		n.mu.Lock()
		if !n.ready {
			out = append(out, n.spec.ID)
		}
		n.mu.Unlock()
	}
	return out
}

// ClusterFilePath is DIR/cluster.json.
func (s *Supervisor) ClusterFilePath() string { return filepath.Join(s.cfg.Dir, "cluster.json") }

// Nodes returns the node specs in order.
func (s *Supervisor) Nodes() []NodeSpec {
	out := make([]NodeSpec, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.spec
	}
	return out
}

// PIDs returns the current pid of every running node.
func (s *Supervisor) PIDs() map[string]int {
	out := map[string]int{}
	for _, n := range s.nodes {
		n.mu.Lock()
		if n.pid != 0 {
			out[n.spec.ID] = n.pid
		}
		n.mu.Unlock()
	}
	return out
}

// Signal sends sig to the node's current process (SIGKILL for a crash,
// SIGSTOP/SIGCONT for a pause). A killed node is restarted.
func (s *Supervisor) Signal(id string, sig syscall.Signal) (int, error) {
	n, ok := s.byID[id]
	if !ok {
		return 0, fmt.Errorf("local: unknown node %q", id)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0, fmt.Errorf("local: node %s is not running", id)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return 0, fmt.Errorf("local: signal %s: %w", id, err)
	}
	return n.pid, nil
}

// Stop terminates every node: SIGTERM, then SIGKILL after the grace period.
// It returns at once; Wait blocks until all are gone.
func (s *Supervisor) Stop() { s.once.Do(func() { close(s.stop) }) }

// Wait blocks until every node process has exited after Stop.
func (s *Supervisor) Wait() { <-s.done }

func (s *Supervisor) emit(ev NodeEvent) {
	s.cfg.Logger.Info("node "+ev.Kind.String(), "node", ev.Node, "pid", ev.PID, "restarts", ev.Restarts, "exit", ev.Exit)
	if s.cfg.OnEvent == nil {
		return
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	s.cfg.OnEvent(ev)
}

func (s *Supervisor) args(n *node) []string {
	spec := n.spec
	peers := make([]string, 0, len(s.nodes))
	peerHTTP := make([]string, 0, len(s.nodes))
	for _, o := range s.nodes {
		raft, h := o.spec.Raft, o.spec.HTTP
		if a := spec.Peers[o.spec.ID]; a != "" {
			raft = a
		}
		if a := spec.PeerHTTP[o.spec.ID]; a != "" {
			h = a
		}
		peers = append(peers, o.spec.ID+"="+raft)
		peerHTTP = append(peerHTTP, o.spec.ID+"="+h)
	}
	args := []string{"aggregator", "--id", spec.ID, "--http", spec.HTTP, "--grpc", spec.GRPC, "--raft", spec.Raft,
		"--peers", strings.Join(peers, ","), "--peer-http", strings.Join(peerHTTP, ","), "--data-dir", filepath.Join(n.dir, "data")}
	if s.cfg.Partitions > 0 {
		args = append(args, "--partitions", strconv.Itoa(s.cfg.Partitions))
	}
	for _, d := range spec.Defects {
		args = append(args, "--defect", d)
	}
	return append(args, spec.Args...)
}

type proc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	status string        // exit status, valid after done
}

// run keeps one node alive until stop.
func (s *Supervisor) run(n *node, readyCh chan<- string) {
	defer s.wg.Done()
	backoff := s.cfg.BackoffInitial
	everReady := false
	for spawns := 0; ; spawns++ {
		if spawns > 0 {
			n.mu.Lock()
			n.restarts++
			n.mu.Unlock()
		}
		started := time.Now()
		p, err := s.spawn(n)
		if err != nil {
			s.cfg.Logger.Error("start node", "node", n.spec.ID, "err", err)
		} else {
			readyDone := make(chan struct{})
			wasReady := everReady
			go func() {
				defer close(readyDone)
				if !s.waitReady(n, p.done) {
					return
				}
				n.mu.Lock()
				n.ready = true
				restarts := n.restarts
				n.mu.Unlock()
				if !wasReady {
					s.emit(NodeEvent{Kind: NodeReady, Node: n.spec.ID, PID: p.cmd.Process.Pid, At: time.Now(), Restarts: restarts})
					readyCh <- n.spec.ID
					return
				}
				select {
				case <-s.allOK:
					if err := s.writeClusterFile(); err != nil {
						s.cfg.Logger.Error("rewrite cluster.json", "err", err)
					}
				default:
				}
				s.emit(NodeEvent{Kind: NodeRestarted, Node: n.spec.ID, PID: p.cmd.Process.Pid, At: time.Now(), Restarts: restarts})
			}()
			select {
			case <-p.done:
			case <-s.stop:
				s.terminate(p)
			}
			<-readyDone
			n.mu.Lock()
			if n.ready {
				everReady = true
			}
			n.cmd, n.pid, n.ready = nil, 0, false
			restarts := n.restarts
			n.mu.Unlock()
			s.emit(NodeEvent{Kind: NodeExited, Node: n.spec.ID, PID: p.cmd.Process.Pid, At: time.Now(), Restarts: restarts, Exit: p.status})
		}
		select {
		case <-s.stop:
			return
		default:
		}
		if time.Since(started) > s.cfg.BackoffReset {
			backoff = s.cfg.BackoffInitial
		}
		t := time.NewTimer(backoff)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if backoff *= 2; backoff > s.cfg.BackoffMax {
			backoff = s.cfg.BackoffMax
		}
	}
}

func (s *Supervisor) spawn(n *node) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(n.dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open node log: %w", err)
	}
	cmd := exec.Command(s.cfg.Binary, s.args(n)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	fmt.Fprintf(logf, "--- %s supervisor: exec %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), s.cfg.Binary, strings.Join(cmd.Args[1:], " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("exec %s: %w", s.cfg.Binary, err)
	}
	n.mu.Lock()
	n.cmd, n.pid = cmd, cmd.Process.Pid
	restarts := n.restarts
	n.mu.Unlock()
	s.emit(NodeEvent{Kind: NodeStarted, Node: n.spec.ID, PID: cmd.Process.Pid, At: time.Now(), Restarts: restarts})
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "--- %s supervisor: pid %d exited: %v\n", time.Now().UTC().Format(time.RFC3339Nano), cmd.Process.Pid, cmd.ProcessState)
		logf.Close()
		if err != nil {
			p.status = err.Error()
		} else {
			p.status = "exit status 0"
		}
		close(p.done)
	}()
	return p, nil
}

// terminate sends SIGTERM, then SIGKILL after the grace period.
func (s *Supervisor) terminate(p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(s.cfg.Grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		p.status += " (killed after the grace period)"
	}
}

// waitReady polls /readyz until 200, the process exits or the supervisor stops.
func (s *Supervisor) waitReady(n *node, exited <-chan struct{}) bool {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + n.spec.HTTP + "/readyz"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return false
		case <-exited:
			return false
		case <-tick.C:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
}

func (s *Supervisor) writeClusterFile() error {
	s.fileM.Lock()
	defer s.fileM.Unlock()
	cf := ClusterFile{}
	for _, n := range s.nodes {
		n.mu.Lock()
		cf.Nodes = append(cf.Nodes, ClusterNode{ID: n.spec.ID, HTTP: n.spec.HTTP, GRPC: n.spec.GRPC, Raft: n.spec.Raft, PID: n.pid})
		n.mu.Unlock()
	}
	sort.Slice(cf.Nodes, func(i, j int) bool { return cf.Nodes[i].ID < cf.Nodes[j].ID })
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(s.ClusterFilePath(), append(b, '\n'))
}

// WriteFileAtomic writes data to path via a synced temporary file and a rename.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("local: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("local: fsync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("local: rename %s: %w", path, err)
	}
	return nil
}

// BinaryForTests returns the chaosgate binary that tests start nodes with:
// $CHAOSGATE_BIN (exported by make test) when set, otherwise a fresh
// `go build` of cmd/chaosgate into dir.
func BinaryForTests(dir string) (string, error) {
	if bin := os.Getenv("CHAOSGATE_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("CHAOSGATE_BIN: %w", err)
		}
		return bin, nil
	}
	bin := filepath.Join(dir, "chaosgate")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/chaosgate/chaosgate/cmd/chaosgate").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}
