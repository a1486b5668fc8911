package kubelettest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/internal/textclip"
)

// PodLogShipper plays a cluster's log agent, as Promtail's or Grafana
// Alloy's Kubernetes pods job does: it tails the container logs the
// kubelets write under their pod logs directories (/var/log/pods on a real
// node; Node.PodLogsDir here) for the pods of one namespace, reads
// the CRI log format, and pushes each line over Loki's push API labelled
// namespace, pod and container, with the time the runtime stamped on it.
type PodLogShipper struct {
	server    *logs.Server
	namespace string
	dirs      []string

	mu      sync.Mutex
	offsets map[string]filePos // file → where reading resumes
	partial map[string]string  // file → a partial (P) line's start
	lines   int
	err     error

	stop context.CancelFunc
	done chan struct{}
}

// ShipPodLogs starts a PodLogShipper for namespace over the cluster's
// nodes' pod logs directories; Stop ends it after a last pass.
func (c *Cluster) ShipPodLogs(server *logs.Server, namespace string) *PodLogShipper {
	var dirs []string
	for _, n := range c.Nodes {
		dirs = append(dirs, n.PodLogsDir)
	}
	return shipPodLogs(server, namespace, dirs)
}

func shipPodLogs(server *logs.Server, namespace string, dirs []string) *PodLogShipper {
	ctx, cancel := context.WithCancel(context.Background())
	s := &PodLogShipper{server: server, namespace: namespace, dirs: dirs, offsets: map[string]filePos{}, partial: map[string]string{},
		stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			s.pass(ctx)
			select {
			case <-ctx.Done():
				s.pass(context.Background())
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ships what is left and ends the shipper. It returns the number of
// lines shipped and the last push or read error.
func (s *PodLogShipper) Stop() (int, error) {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines, s.err
}

// Lines returns the number of lines shipped so far.
func (s *PodLogShipper) Lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

// pass reads every container log of the namespace's pods from where the
// last pass stopped and pushes the complete lines.
func (s *PodLogShipper) pass(ctx context.Context) {
	var files []string
	for _, d := range s.dirs {
		fs, _ := filepath.Glob(filepath.Join(d, s.namespace+"_*", "*", "*.log"))
		files = append(files, fs...)
	}
	var streams []logs.Stream
	for _, f := range files {
		pod, container, ok := podOfLogFile(f, s.namespace)
		if !ok {
			continue
		}
		entries, err := s.read(f)
		if err != nil {
			s.setErr(err)
			continue
		}
		if len(entries) > 0 {
			streams = append(streams, logs.Stream{
				Labels:  map[string]string{"namespace": s.namespace, "pod": pod, "container": container},
				Entries: entries,
			})
		}
	}
	if len(streams) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.server.Push(pctx, streams); err != nil {
		s.setErr(err)
		return
	}
	n := 0
	for _, st := range streams {
		n += len(st.Entries)
	}
	s.mu.Lock()
	s.lines += n
	s.mu.Unlock()
}

// filePos is how far a log file was read, and which file that was: the
// kubelet rotates a container's log by renaming it and having the runtime
// reopen the path, so a new inode (or a file shorter than the position)
// is read from its start.
type filePos struct {
	inode  uint64
	offset int64
}

// read returns the complete CRI lines of f past the last offset.
func (s *PodLogShipper) read(path string) ([]logs.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) { // the pod was deleted meanwhile
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var inode uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		inode = sys.Ino
	}
	s.mu.Lock()
	pos := s.offsets[path]
	s.mu.Unlock()
	off := pos.offset
	if pos.inode != inode || st.Size() < off {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offsets[path] = filePos{inode: inode, offset: off + int64(end) + 1}
	var out []logs.Entry
	for _, line := range strings.Split(string(data[:end]), "\n") {
		at, tag, msg, err := ParseCRILine(line)
		if err != nil {
			s.err = fmt.Errorf("%s (read from byte %d, inode %d, size %d): %w", path, off, inode, st.Size(), err)
			continue
		}
		if tag == "P" { // a long line the runtime split: keep its start
			s.partial[path] += msg
			continue
		}
		msg = s.partial[path] + msg
		delete(s.partial, path)
		out = append(out, logs.Entry{Time: at, Line: msg})
	}
	return out, nil
}

func (s *PodLogShipper) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// podOfLogFile reads the pod and container names from a kubelet log path,
// /var/log/pods/NAMESPACE_POD_UID/CONTAINER/N.log.
func podOfLogFile(path, namespace string) (pod, container string, ok bool) {
	dir := filepath.Base(filepath.Dir(filepath.Dir(path)))
	rest, found := strings.CutPrefix(dir, namespace+"_")
	i := strings.LastIndexByte(rest, '_')
	if !found || i <= 0 {
		return "", "", false
	}
	return rest[:i], filepath.Base(filepath.Dir(path)), true
}

// ParseCRILine reads one line of the CRI container log format the kubelet
// and containerd write: "TIME STREAM TAG MESSAGE", TIME RFC 3339 with
// nanoseconds, STREAM stdout or stderr, TAG F (full) or P (partial).
func ParseCRILine(line string) (at time.Time, tag, msg string, err error) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return at, "", "", fmt.Errorf("CRI log line %q: no time", clipLine(line))
	}
	if at, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return at, "", "", fmt.Errorf("CRI log line %q: time: %w", clipLine(line), err)
	}
	stream, rest, ok := strings.Cut(rest, " ")
	if !ok || (stream != "stdout" && stream != "stderr") {
		return at, "", "", fmt.Errorf("CRI log line %q: stream %q is not stdout or stderr", clipLine(line), stream)
	}
	tag, msg, ok = strings.Cut(rest, " ")
	if !ok && (rest == "F" || rest == "P") { // an empty message
		tag, msg, ok = rest, "", true
	}
	if !ok || (tag != "F" && tag != "P") {
		return at, "", "", fmt.Errorf("CRI log line %q: tag %q is not F or P", clipLine(line), tag)
	}
	return at, tag, msg, nil
}

func clipLine(s string) string { return textclip.String(s, 80) }
