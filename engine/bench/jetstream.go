package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// NATSBuildVersion is the nats-server release scripts/build-nats-server.sh
// builds into the cache; it can fsync every write.
const NATSBuildVersion = "2.15.2"

// CachedNATSServer is where scripts/build-nats-server.sh puts its build.
func CachedNATSServer() string {
	base := os.Getenv("CHAOSGATE_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(c, "chaosgate")
	}
	return filepath.Join(base, "bin", "nats-server-"+NATSBuildVersion)
}

// NATSServerVersion runs bin --version and returns e.g. "2.9.10".
func NATSServerVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %v: %s", bin, err, lastLines(out))
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v"); ok && strings.Count(v, ".") == 2 {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s --version: no version in %q", bin, strings.TrimSpace(string(out)))
}

// SupportsSyncInterval reports whether nats-server version (e.g. "2.9.10")
// has jetstream.sync_interval (2.10 and later).
func SupportsSyncInterval(version string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 2 || (major == 2 && minor >= 10)
}

// FindNATSServer returns the nats-server binary: the cached build of
// NATSBuildVersion (scripts/build-nats-server.sh) when present, else one on
// PATH, else the Debian package installed with apt-get when the process
// runs as root (2.9: no fsync-per-write tier).
func FindNATSServer(ctx context.Context) (string, error) {
	if p := CachedNATSServer(); p != "" {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if os.Geteuid() != 0 {
		return "", errors.New("nats-server not found (hint: apt-get install -y nats-server, as root)")
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "nats-server"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, lastLines(out))
		}
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server", nil
	}
	return exec.LookPath("nats-server")
}

func lastLines(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, "\n"); i > 0 && len(s)-i < 300 {
		return s[i+1:]
	}
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

// JetStreamCluster is a local 3-server JetStream cluster.
type JetStreamCluster struct {
	URLs  []string
	procs []*exec.Cmd
	done  []chan struct{}
}

// StartJetStream starts n nats-server processes with JetStream, clustered
// over 127.0.0.1 routes, with stores and logs under dir. syncInterval is
// JetStream's sync_interval ("always", a duration, or empty for the
// server's default).
func StartJetStream(ctx context.Context, bin, dir string, n int, syncInterval string) (*JetStreamCluster, error) {
	ports, err := freeport.Addrs(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, "nats-route://"+ports[n+i])
	}
	syncSetting := ""
	if syncInterval != "" {
		syncSetting = fmt.Sprintf(", sync_interval: %q", syncInterval)
	}
	c := &JetStreamCluster{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("js%d", i+1)
		nd := filepath.Join(dir, name)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return nil, err
		}
		host, port, _ := strings.Cut(ports[i], ":")
		chost, cport, _ := strings.Cut(ports[n+i], ":")
		conf := fmt.Sprintf(`server_name: %s
host: %s
port: %s
jetstream { store_dir: %q%s }
cluster {
  name: chaosgate-bench
  host: %s
  port: %s
  routes: [%s]
}
`, name, host, port, filepath.Join(nd, "store"), syncSetting, chost, cport, strings.Join(routes, ", "))
		cf := filepath.Join(nd, "nats.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(nd, "server.log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-c", cf)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			logf.Close()
			c.Stop()
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
		c.procs = append(c.procs, cmd)
		c.done = append(c.done, done)
		c.URLs = append(c.URLs, "nats://"+ports[i])
	}
	for i, addr := range ports[:n] {
		if err := waitListening(ctx, addr, c.done[i]); err != nil {
			c.Stop()
			return nil, fmt.Errorf("nats-server js%d: %w (see %s)", i+1, err, filepath.Join(dir, fmt.Sprintf("js%d", i+1), "server.log"))
		}
	}
	return c, nil
}

// waitListening waits until addr accepts TCP connections, the process
// exits, or 30 s pass.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited at start")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after 30s", addr)
		}
	}
}

// Stop terminates the servers (SIGTERM, then SIGKILL after 5 s).
func (c *JetStreamCluster) Stop() {
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range c.procs {
		select {
		case <-c.done[i]:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-c.done[i]
		}
	}
}

// jetStreamSender connects, creates an R3 stream with a duplicate window
// and returns a send function publishing with Nats-Msg-Id.
func jetStreamSender(ctx context.Context, urls []string, stream string, w Workload) (sendFunc, func(), error) {
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.CreateStream(cctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Replicas: 3,
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("create JetStream stream: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	ids, err := load.NewIDGen(513)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	payload := []byte(strings.Repeat("x", w.Payload))
	keys := make([]string, w.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s.k%d", stream, i+1)
	}
	var rr atomic.Uint64
	send := func(ctx context.Context, n int) (int, error) {
		futs := make([]jetstream.PubAckFuture, 0, n)
		for i := 0; i < n; i++ {
			k := rr.Add(1)
			f, err := js.PublishAsync(keys[k%uint64(len(keys))], payload, jetstream.WithMsgID(ids.Next()))
			if err != nil {
				break
			}
			futs = append(futs, f)
		}
		return awaitAcks(futs)
	}
	return send, nc.Close, nil
}

// awaitAcks waits up to 10 s for the broker's acknowledgements of futs and
// returns how many arrived, with the first error the broker sent (or a
// timeout).
func awaitAcks(futs []jetstream.PubAckFuture) (int, error) {
	acked := 0
	var firstErr error
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for _, f := range futs {
		select {
		case <-f.Ok():
			acked++
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-t.C:
			return acked, errors.New("publish ack timeout")
		}
	}
	return acked, firstErr
}
