package evidence

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "CHAOSGATE_EVIDENCE_CRASH_CHILD"

// crashChild appends in a loop from four writers and prints "ack <index>
// <run id>" for every acknowledged append, until it is killed.
func crashChild() {
	spec := strings.SplitN(os.Getenv(crashChildEnv), "|", 3)
	keys, err := LoadKeys(spec[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := Open(context.Background(), spec[1], Options{Keys: keys, Create: true, MaxBatch: 64})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				run := fmt.Sprintf("%s-%d-%d", spec[2], w, i)
				p := samplePredicate(i)
				p.RunID = run
				r, err := l.Record(context.Background(), "v1", p)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s\n", r.Index, run)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashSafetySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test spawns processes; skipped with -short")
	}
	k := newKeys(t, "example.test/crash")
	dir := filepath.Join(t.TempDir(), "ledger")
	acked := map[uint64]string{}
	rng := rand.New(rand.NewPCG(7, 9))
	const rounds = 12
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+k.Info.Dir+"|"+dir+"|r"+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first acknowledgement, then kill at a random moment.
		deadline := time.After(20 * time.Second)
		got := 0
		killAt := time.Duration(5+rng.IntN(150)) * time.Millisecond
		var timer <-chan time.Time
	collect:
		for {
			select {
			case s, ok := <-lines:
				if !ok {
					break collect
				}
				var idx uint64
				var run string
				if _, err := fmt.Sscanf(s, "ack %d %s", &idx, &run); err != nil {
					t.Fatalf("child printed %q", s)
				}
				if prev, dup := acked[idx]; dup && prev != run {
					t.Fatalf("index %d acknowledged twice: %s and %s", idx, prev, run)
				}
				acked[idx] = run
				got++
				if timer == nil {
					timer = time.After(killAt)
				}
			case <-timer:
				_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				timer = nil
			case <-deadline:
				_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				_ = cmd.Wait()
				t.Fatalf("round %d: child made no progress; stderr: %s", round, stderr.String())
			}
		}
		_ = cmd.Wait()
		if got == 0 {
			t.Fatalf("round %d: no acknowledgements; stderr: %s", round, stderr.String())
		}
		// Reopen: the ledger verifies and holds every acknowledged append.
		l, err := Open(context.Background(), dir, Options{Keys: k})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if _, err := l.Verify(context.Background(), round%4 == 0); err != nil {
			l.Close()
			t.Fatalf("round %d: verify after SIGKILL: %v", round, err)
		}
		for idx, run := range acked {
			e, err := l.Entry(context.Background(), idx)
			if err != nil {
				l.Close()
				t.Fatalf("round %d: acknowledged entry %d lost: %v", round, idx, err)
			}
			if e.Record.RunID != run {
				l.Close()
				t.Fatalf("round %d: entry %d holds run %q, acknowledged %q", round, idx, e.Record.RunID, run)
			}
		}
		if l.Size() < uint64(len(acked)) {
			t.Fatalf("size %d < %d acknowledged", l.Size(), len(acked))
		}
		l.Close()
	}
	t.Logf("%d rounds, %d acknowledged appends all present", rounds, len(acked))
}
