// Package brokers starts real message brokers as child processes on
// 127.0.0.1 for tests and benchmarks: nats-server with JetStream (the
// Debian package or the cached 2.15.2 build) and Mosquitto (Debian). Each
// server gets a free port and its own directory; Kill, Stop and Start act on
// its process by pid, and Start brings it back on the same port with the
// same data, as a restarted broker.
package brokers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// NATSBuildVersion is the nats-server release scripts/build-nats-server.sh
// caches.
const NATSBuildVersion = "2.15.2"

// ErrNotInstalled is returned when a broker binary is not found.
var ErrNotInstalled = errors.New("not installed")

func find(name string, extra ...string) (string, error) {
	for _, p := range extra {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s %w (hint: make test-deps, or as root apt-get install -y %s)", name, ErrNotInstalled, map[string]string{"nats-server": "nats-server", "mosquitto": "mosquitto"}[name])
}

// FindNATSServer returns the cached nats-server 2.15.2 build when present,
// else nats-server from PATH or /usr/sbin.
func FindNATSServer() (string, error) {
	var extra []string
	if d := buildcache.Dir(); d != "" {
		extra = append(extra, filepath.Join(d, "nats-server-"+NATSBuildVersion))
	}
	return find("nats-server", extra...)
}

// FindMosquitto returns the mosquitto binary.
func FindMosquitto() (string, error) { return find("mosquitto") }

// Server is one broker process.
type Server struct {
	// Addr is the client address HOST:PORT.
	Addr string
	// Dir holds the configuration, the data and the log.
	Dir  string
	kind string
	bin  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// StartNATS starts a JetStream-enabled nats-server storing under dir.
func StartNATS(dir string) (*Server, error) {
	bin, err := FindNATSServer()
	if err != nil {
		return nil, err
	}
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addrs[0], ":")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The cached 2.15 build fsyncs every write before it acknowledges
	// (2.9 cannot): an acknowledged publish survives a SIGKILL of the server.
	sync := ""
	if strings.Contains(filepath.Base(bin), "nats-server-2.1") {
		sync = ", sync_interval: always"
	}
	conf := fmt.Sprintf("host: %s\nport: %s\njetstream { store_dir: %q%s }\n", host, port, filepath.Join(dir, "store"), sync)
	cf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Addr: addrs[0], Dir: dir, kind: "nats", bin: bin, args: []string{"-c", cf}}
	return s, s.Start()
}

// StartMosquitto starts mosquitto with persistence under dir (QoS 1
// sessions survive a restart).
func StartMosquitto(dir string) (*Server, error) {
	bin, err := FindMosquitto()
	if err != nil {
		return nil, err
	}
	addrs, err := freeport.Addrs(1)
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addrs[0], ":")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`listener %s %s
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 100
log_dest stderr
`, port, host, filepath.Join(dir, "data"))
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Addr: addrs[0], Dir: dir, kind: "mqtt", bin: bin, args: []string{"-c", cf}}
	return s, s.Start()
}

// Kind is "nats" or "mqtt".
func (s *Server) Kind() string { return s.kind }

// Address is the client address HOST:PORT.
func (s *Server) Address() string { return s.Addr }

// Start starts the server process (again) and waits until it accepts
// connections. It does nothing when the process runs.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var last error
	for try := 0; try < 50; try++ { // the port may linger briefly after a kill
		cmd := exec.Command(s.bin, s.args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = brokerAttr()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", s.bin, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if last = waitListening(s.Addr, done, 30*time.Second); last == nil {
			s.cmd, s.done, s.log = cmd, done, logf
			return nil
		}
		_ = cmd.Process.Kill()
		<-done
		time.Sleep(100 * time.Millisecond)
	}
	logf.Close()
	return fmt.Errorf("%s on %s: %w (see %s)", filepath.Base(s.bin), s.Addr, last, filepath.Join(s.Dir, "server.log"))
}

func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited at start")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s", timeout)
		}
	}
}

// Pid is the running process's id (0 when stopped).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process runs.
func (s *Server) Running() bool { return s.Pid() != 0 }

// Kill sends SIGKILL and waits for the process to end.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM, then SIGKILL after 5 s, and waits.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM, 5*time.Second) }

func (s *Server) signal(sig syscall.Signal, grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	err := s.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-s.done:
		case <-time.After(grace):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	} else {
		<-s.done
	}
	s.cmd = nil
	s.log.Close()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
