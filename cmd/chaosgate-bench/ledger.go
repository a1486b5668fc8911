package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"k8s.io/klog/v2"

	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/evidence"
)

// benchLedgerConfig are the knobs of `chaosgate-bench ledger`.
type benchLedgerConfig struct {
	dir         string
	single      int
	concurrent  int
	writers     int
	verifySizes []int
	proofs      int
	traceIDs    int
	peer        bool
	output      string
}

// benchRow is one measured figure, for chaosgate and its peer.
type benchRow struct {
	Metric    string `json:"metric"`
	Chaosgate string `json:"chaosgate"`
	Tessera   string `json:"tessera"`
	Note      string `json:"note,omitempty"`
}

// benchLedgerReport is the JSON output.
type benchLedgerReport struct {
	Workload string     `json:"workload"`
	Machine  string     `json:"machine"`
	Rows     []benchRow `json:"rows"`
	Peer     string     `json:"peer"`
}

func newBenchLedgerCmd() *cobra.Command {
	cfg := benchLedgerConfig{}
	var sizes string
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Evidence ledger: durable appends/s, verify time, proof time and size, side by side with tessera's POSIX log",
		Long: `chaosgate-bench ledger measures, in one run, the chaosgate evidence ledger (bbolt, group
commit, a signed checkpoint and block per commit) and github.com/transparency-dev/tessera
v1.0.4's POSIX log on the same workload: DSSE envelopes of chaosgate evidence
statements (pre-signed from a pool of 1,024 distinct statements), each with --trace-ids
random trace ids (default 20: a game day's statement lists 10 of each arm's sampled
requests for the ledger's trace index).

  durable appends/s   one writer (each append waits for its fsync'd commit) and
                      --writers concurrent writers (batched: group commit / tessera batching)
  verify              ledgers of --verify-sizes entries: chaosgate verify (hashes,
                      blocks, checkpoints) and verify --from-scratch (also every
                      interior hash and every DSSE signature); tessera fsck (tiles)
  proofs              inclusion proof generation time and size at the largest size

Goals: ≥ 5,000 durable appends/s with batching, verify 1M entries < 10 s, proofs O(log n).
Timings are of this machine under its current load; nothing is asserted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.output != "table" && cfg.output != "json" {
				return fmt.Errorf("-o %q: want table or json", cfg.output)
			}
			for _, s := range strings.Split(sizes, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 {
					return fmt.Errorf("--verify-sizes %q: want comma-separated positive integers", sizes)
				}
				cfg.verifySizes = append(cfg.verifySizes, n)
			}
			if cfg.single < 1 || cfg.concurrent < 1 || cfg.writers < 1 || cfg.proofs < 1 {
				return errors.New("--single, --concurrent, --writers and --proofs must be positive")
			}
			if cfg.traceIDs < 0 {
				return errors.New("--trace-ids must not be negative")
			}
			// tessera's fsck logs every check through klog; keep the bench output readable.
			klog.LogToStderr(false)
			klog.SetOutput(io.Discard)
			rep, err := runBenchLedger(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printBenchLedger(cmd.OutOrStdout(), rep, cfg.output)
		},
	}
	cmd.Flags().StringVar(&cfg.dir, "dir", "", "work directory (default: a temp dir, removed afterwards)")
	cmd.Flags().IntVar(&cfg.single, "single", 300, "appends by the single writer")
	cmd.Flags().IntVar(&cfg.concurrent, "concurrent", 20000, "appends by the concurrent writers")
	cmd.Flags().IntVar(&cfg.writers, "writers", 128, "concurrent writers")
	cmd.Flags().StringVar(&sizes, "verify-sizes", "100000,1000000", "ledger sizes to verify")
	cmd.Flags().IntVar(&cfg.proofs, "proofs", 1000, "random inclusion proofs to generate")
	cmd.Flags().IntVar(&cfg.traceIDs, "trace-ids", 2*gameday.IndexedTraceIDs, "random trace ids per statement (default: as many as a game day's statement lists for the trace index)")
	cmd.Flags().BoolVar(&cfg.peer, "peer", true, "also run tessera's POSIX log")
	cmd.Flags().StringVarP(&cfg.output, "output", "o", "table", "output format: table or json")
	return cmd
}

type benchWorkload struct {
	keys  *evidence.Keys
	envs  []*evidence.Envelope
	bytes [][]byte
}

func newBenchWorkload(ctx context.Context, dir string, traceIDsPerStatement int) (*benchWorkload, error) {
	keys, err := evidence.GenerateKeys(filepath.Join(dir, "keys"), "bench.chaosgate.local/ledger")
	if err != nil {
		return nil, err
	}
	w := &benchWorkload{keys: keys}
	rng := mrand.New(mrand.NewPCG(7, 11))
	for i := 0; i < 1024; i++ {
		// Random like real trace ids: each lands anywhere in the trace
		// index.
		traceIDs := make([]string, traceIDsPerStatement)
		for j := range traceIDs {
			traceIDs[j] = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		}
		p := &evidence.Predicate{
			RunID:      fmt.Sprintf("bench-%d", i),
			Experiment: evidence.Experiment{Name: fmt.Sprintf("gameday-%d", i%16), ScenarioHash: string(evidence.DigestOf([]byte{byte(i)})), Kind: "gameday"},
			Targets:    []evidence.Target{{Arm: "canary", Name: "n1"}, {Arm: "control", Name: "n1"}},
			Injections: []evidence.Injection{{Kind: "podKill", Arm: "canary", Target: "n1", Confirmed: "confirmed"}},
			Decision:   &evidence.Decision{Verdict: "promote", Score: 0.97, Coverage: 0.92, ConfigHash: "sha256:" + strings.Repeat("ab", 32)},
			TraceIDs:   traceIDs,
			Versions:   map[string]string{"chaosgate": version},
		}
		st, err := evidence.BuildStatement(fmt.Sprintf("v1.%d", i%32), p)
		if err != nil {
			return nil, err
		}
		env, err := keys.SignStatement(ctx, st)
		if err != nil {
			return nil, err
		}
		b, err := evidence.EnvelopeBytes(env)
		if err != nil {
			return nil, err
		}
		w.envs = append(w.envs, env)
		w.bytes = append(w.bytes, b)
	}
	return w, nil
}

func runBenchLedger(ctx context.Context, cfg benchLedgerConfig, progress io.Writer) (*benchLedgerReport, error) {
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "chaosgate-bench-ledger-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "bench ledger: "+format+"\n", args...) }
	w, err := newBenchWorkload(ctx, dir, cfg.traceIDs)
	if err != nil {
		return nil, err
	}
	rep := &benchLedgerReport{
		Workload: fmt.Sprintf("DSSE envelopes of chaosgate evidence statements with %d trace ids each, %d B average, pool of %d distinct pre-signed envelopes", cfg.traceIDs, avgLen(w.bytes), len(w.bytes)),
		Machine:  fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Peer:     "github.com/transparency-dev/tessera v1.0.4, storage/posix",
	}
	if !cfg.peer {
		rep.Peer = "not run (--peer=false)"
	}
	row := func(metric, ours, theirs, note string) {
		rep.Rows = append(rep.Rows, benchRow{Metric: metric, Chaosgate: ours, Tessera: theirs, Note: note})
		logf("%s: chaosgate %s, tessera %s", metric, ours, theirs)
	}
	skipped := "-"

	// 1. Durable appends, one writer.
	logf("single writer, %d appends", cfg.single)
	oursSingle, oursLat, err := benchOursAppends(ctx, filepath.Join(dir, "single"), w, cfg.single, 1)
	if err != nil {
		return nil, err
	}
	theirsSingle, theirsLat := skipped, skipped
	if cfg.peer {
		r, lat, err := benchTesseraAppends(ctx, filepath.Join(dir, "tessera-single"), w, cfg.single, 1, false)
		if err != nil {
			theirsSingle = "error: " + err.Error()
		} else {
			theirsSingle, theirsLat = rate(r), lat
		}
	}
	row("durable appends/s, 1 writer", rate(oursSingle.rate), theirsSingle, "each append waits for its own durable commit")
	row("append latency p50/p99, 1 writer", oursLat, theirsLat, "")

	// 2. Durable appends, concurrent writers (batched).
	logf("%d writers, %d appends", cfg.writers, cfg.concurrent)
	oursConc, oursConcLat, err := benchOursAppends(ctx, filepath.Join(dir, "concurrent"), w, cfg.concurrent, cfg.writers)
	if err != nil {
		return nil, err
	}
	theirsConc, theirsConcLat := skipped, skipped
	if cfg.peer {
		r, lat, err := benchTesseraAppends(ctx, filepath.Join(dir, "tessera-concurrent"), w, cfg.concurrent, cfg.writers, false)
		if err != nil {
			theirsConc = "error: " + err.Error()
		} else {
			theirsConc, theirsConcLat = rate(r), lat
		}
	}
	row(fmt.Sprintf("durable appends/s, %d writers (batched)", cfg.writers), rate(oursConc.rate), theirsConc,
		fmt.Sprintf("chaosgate: %.0f appends per commit on average, each commit signs a checkpoint and a block (goal ≥ 5,000/s)", oursConc.perBatch))
	row(fmt.Sprintf("append latency p50/p99, %d writers", cfg.writers), oursConcLat, theirsConcLat, "tessera: until the index is assigned and integrated")

	// 3. Verify at each size; proofs at the largest.
	var largest *evidence.Ledger
	var largestDir string
	var tesseraLargest string
	for _, n := range cfg.verifySizes {
		logf("building ledgers of %d entries", n)
		ld := filepath.Join(dir, fmt.Sprintf("verify-%d", n))
		bs, _, err := benchOursAppends(ctx, ld, w, n, 2*runtime.NumCPU()*64)
		if err != nil {
			return nil, err
		}
		l, err := evidence.Open(ctx, ld, evidence.Options{Public: w.keys.Verifier(), ReadOnly: true})
		if err != nil {
			return nil, err
		}
		runtime.GC()
		t0, c0 := time.Now(), cpuTime()
		if _, err := l.Verify(ctx, false); err != nil {
			l.Close()
			return nil, err
		}
		dVerify, cVerify := time.Since(t0), cpuTime()-c0
		runtime.GC()
		t0, c0 = time.Now(), cpuTime()
		if _, err := l.Verify(ctx, true); err != nil {
			l.Close()
			return nil, err
		}
		dScratch, cScratch := time.Since(t0), cpuTime()-c0
		theirsFsck, theirsBuild, theirsBuildVerified := skipped, skipped, skipped
		if cfg.peer {
			// The same build with tessera checking each envelope first, as
			// a log that refuses forged evidence must: the like-for-like
			// figure beside the raw one.
			r, _, err := benchTesseraAppends(ctx, filepath.Join(dir, fmt.Sprintf("tessera-verified-%d", n)), w, n, 2*runtime.NumCPU()*64, true)
			if err != nil {
				theirsBuildVerified = "error: " + err.Error()
			} else {
				theirsBuildVerified = rate(r)
			}
			td := filepath.Join(dir, fmt.Sprintf("tessera-verify-%d", n))
			r, _, err = benchTesseraAppends(ctx, td, w, n, 2*runtime.NumCPU()*64, false)
			if err != nil {
				theirsFsck = "error: " + err.Error()
			} else {
				theirsBuild = rate(r)
				runtime.GC()
				c0 := cpuTime()
				d, err := tesseraFsck(ctx, td, w.keys)
				if err != nil {
					theirsFsck = "error: " + err.Error()
				} else {
					theirsFsck = wallCPU(d, cpuTime()-c0)
				}
				tesseraLargest = td
			}
		}
		row(fmt.Sprintf("build %d entries, appends/s", n), rate(bs.rate), theirsBuild,
			"chaosgate checks each envelope's Ed25519 signature and statement before it stores it; tessera stores opaque bytes")
		row(fmt.Sprintf("build %d entries, each envelope checked first, appends/s", n), rate(bs.rate), theirsBuildVerified,
			"tessera with the same check (evidence.VerifyEnvelope) before each Add, as a log that refuses forged evidence would run it")
		row(fmt.Sprintf("verify %d entries (wall / CPU)", n), wallCPU(dVerify, cVerify), theirsFsck,
			"chaosgate: leaf hashes, envelope SHA-256s, blocks, checkpoint signatures and roots; tessera: fsck of tiles and entry bundles (goal < 10 s at 1M)")
		row(fmt.Sprintf("verify --from-scratch %d entries (wall / CPU)", n), wallCPU(dScratch, cScratch), skipped,
			"also every interior hash and every DSSE Ed25519 signature (one per entry, parallel on all CPUs)")
		if largest != nil {
			largest.Close()
		}
		largest, largestDir = l, ld
	}
	if largest != nil {
		defer largest.Close()
		n := largest.Size()
		rng := mrand.New(mrand.NewPCG(1, 2))
		var total time.Duration
		var hashes, bytesTotal int
		for i := 0; i < cfg.proofs; i++ {
			idx := rng.Uint64N(n)
			t0 := time.Now()
			p, err := largest.TlogProof(ctx, idx, 0)
			if err != nil {
				return nil, err
			}
			total += time.Since(t0)
			hashes += len(p.Hashes)
			bytesTotal += len(p.Hashes) * 32
		}
		theirs := skipped
		if tesseraLargest != "" {
			d, h, err := tesseraProofs(ctx, tesseraLargest, n, cfg.proofs)
			if err != nil {
				theirs = "error: " + err.Error()
			} else {
				theirs = fmt.Sprintf("%s, %.1f hashes (%.0f B)", d, h, h*32)
			}
		}
		row(fmt.Sprintf("inclusion proof at %d entries (avg of %d)", n, cfg.proofs),
			fmt.Sprintf("%s, %.1f hashes (%.0f B)", (total/time.Duration(cfg.proofs)).Round(time.Microsecond), float64(hashes)/float64(cfg.proofs), float64(bytesTotal)/float64(cfg.proofs)),
			theirs, fmt.Sprintf("O(log n): ⌈log2 %d⌉ = %d", n, int(math.Ceil(math.Log2(float64(n))))))
		var ctotal time.Duration
		var chashes int
		for i := 0; i < cfg.proofs; i++ {
			from := rng.Uint64N(n) + 1
			t0 := time.Now()
			p, err := largest.ConsistencyProof(ctx, from, n)
			if err != nil {
				return nil, err
			}
			ctotal += time.Since(t0)
			chashes += len(p)
		}
		row(fmt.Sprintf("consistency proof to %d entries (avg of %d)", n, cfg.proofs),
			fmt.Sprintf("%s, %.1f hashes", (ctotal/time.Duration(cfg.proofs)).Round(time.Microsecond), float64(chashes)/float64(cfg.proofs)), skipped, "")
		row(fmt.Sprintf("disk for %d entries, allocated / apparent", n), dirSize(largestDir), dirSize(tesseraLargest),
			"allocated: the blocks the files take on disk (du); apparent: the sum of their sizes (ls). The bbolt file grows in 16 MiB steps whose unwritten tail takes no blocks; tessera writes many small files")
	}
	return rep, nil
}

type appendStats struct {
	rate     float64
	perBatch float64
}

func avgLen(bs [][]byte) int {
	t := 0
	for _, b := range bs {
		t += len(b)
	}
	return t / len(bs)
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wallCPU formats a wall-clock and a CPU duration: on a loaded machine the
// CPU time is the steadier figure.
func wallCPU(wall, cpu time.Duration) string {
	return fmt.Sprintf("%s / %s", wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
}

func rate(r float64) string { return fmt.Sprintf("%.0f", r) }

func latencies(lat []time.Duration) string {
	if len(lat) == 0 {
		return "-"
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	return fmt.Sprintf("%s / %s", p(0.5).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond))
}

// benchOursAppends appends n envelopes from writers goroutines into a new
// ledger at dir and returns the rate and latencies.
func benchOursAppends(ctx context.Context, dir string, w *benchWorkload, n, writers int) (appendStats, string, error) {
	l, err := evidence.Open(ctx, dir, evidence.Options{Keys: w.keys, Create: true, MaxBatch: 4096})
	if err != nil {
		return appendStats{}, "", err
	}
	defer l.Close()
	lat, elapsed, err := runWriters(n, writers, func(i int) error {
		_, err := l.Append(ctx, w.envs[i%len(w.envs)])
		return err
	})
	if err != nil {
		return appendStats{}, "", err
	}
	return appendStats{rate: float64(n) / elapsed.Seconds(), perBatch: float64(n) / float64(l.BlockCount())}, latencies(lat), nil
}

// runWriters calls fn(i) for i in [0, n) from writers goroutines, timing each call.
func runWriters(n, writers int, fn func(i int) error) ([]time.Duration, time.Duration, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start), firstErr
}

// tesseraSigner returns a fresh note signer for the peer log.
func tesseraSigner() (note.Signer, note.Verifier, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "bench.tessera.local/log")
	if err != nil {
		return nil, nil, err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, err
	}
	v, err := note.NewVerifier(vkey)
	return s, v, err
}

var tesseraVerifiers sync.Map // dir → note.Verifier

// benchTesseraAppends appends n envelopes to a new tessera POSIX log at dir.
// A single writer uses batches of one (each Add is sequenced and integrated
// on its own); concurrent writers use batches of up to 1,024 entries or 10 ms.
func benchTesseraAppends(ctx context.Context, dir string, w *benchWorkload, n, writers int, verify bool) (float64, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	signer, verifier, err := tesseraSigner()
	if err != nil {
		return 0, "", err
	}
	tesseraVerifiers.Store(dir, verifier)
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return 0, "", err
	}
	opts := tessera.NewAppendOptions().WithCheckpointSigner(signer).WithCheckpointInterval(100 * time.Millisecond)
	if writers == 1 {
		opts = opts.WithBatching(1, time.Millisecond)
	} else {
		opts = opts.WithBatching(1024, 10*time.Millisecond).WithPushback(uint(max(4096, 2*writers)))
	}
	app, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		return 0, "", err
	}
	pub := w.keys.Verifier()
	lat, elapsed, err := runWriters(n, writers, func(i int) error {
		if verify {
			// What chaosgate's ledger checks before it stores an envelope:
			// its signature under the evidence key and its statement.
			if _, err := pub.VerifyEnvelope(ctx, w.envs[i%len(w.envs)]); err != nil {
				return err
			}
		}
		for {
			_, err := app.Add(ctx, tessera.NewEntry(w.bytes[i%len(w.bytes)]))()
			if errors.Is(err, tessera.ErrPushback) {
				time.Sleep(time.Millisecond)
				continue
			}
			return err
		}
	})
	if err != nil {
		_ = shutdown(context.Background())
		return 0, "", err
	}
	// Wait until a checkpoint covering every entry is published, so the log
	// can be checked and proven against.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cp, err := reader.ReadCheckpoint(ctx)
		if err == nil {
			lines := strings.SplitN(string(cp), "\n", 3)
			if len(lines) > 2 {
				if s, _ := strconv.ParseUint(lines[1], 10, 64); s >= uint64(n) {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			_ = shutdown(context.Background())
			return 0, "", errors.New("tessera did not publish a checkpoint covering every entry within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := shutdown(context.Background()); err != nil {
		return 0, "", fmt.Errorf("tessera shutdown: %w", err)
	}
	return float64(n) / elapsed.Seconds(), latencies(lat), nil
}

func tesseraBundleHasher(b []byte) ([][]byte, error) {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(b); err != nil {
		return nil, err
	}
	out := make([][]byte, len(eb.Entries))
	for i, e := range eb.Entries {
		out[i] = rfc6962.DefaultHasher.HashLeaf(e)
	}
	return out, nil
}

func tesseraFsck(ctx context.Context, dir string, _ *evidence.Keys) (time.Duration, error) {
	v, ok := tesseraVerifiers.Load(dir)
	if !ok {
		return 0, errors.New("no verifier for " + dir)
	}
	f := client.FileFetcher{Root: dir}
	t0 := time.Now()
	if err := fsck.New("bench.tessera.local/log", v.(note.Verifier), f, tesseraBundleHasher, fsck.Opts{N: uint(runtime.NumCPU())}).Check(ctx); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func tesseraProofs(ctx context.Context, dir string, size uint64, n int) (time.Duration, float64, error) {
	f := client.FileFetcher{Root: dir}
	rng := mrand.New(mrand.NewPCG(1, 2))
	var total time.Duration
	var hashes int
	for i := 0; i < n; i++ {
		idx := rng.Uint64N(size)
		t0 := time.Now()
		// A fresh builder per proof: its node cache would otherwise make
		// later proofs free.
		pb, err := client.NewProofBuilder(ctx, size, f.ReadTile)
		if err != nil {
			return 0, 0, err
		}
		p, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			return 0, 0, err
		}
		total += time.Since(t0)
		hashes += len(p)
	}
	return (total / time.Duration(n)).Round(time.Microsecond), float64(hashes) / float64(n), nil
}

// dirSize is the disk a directory's files take: the blocks allocated to
// them and the sum of their sizes.
func dirSize(dir string) string {
	if dir == "" {
		return "-"
	}
	var allocated, apparent int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			apparent += fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				allocated += st.Blocks * 512
			} else {
				allocated += fi.Size()
			}
		}
		return nil
	})
	return fmt.Sprintf("%.0f / %.0f MiB", float64(allocated)/(1<<20), float64(apparent)/(1<<20))
}

func printBenchLedger(w io.Writer, rep *benchLedgerReport, output string) error {
	if output == "json" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	fmt.Fprintf(w, "workload: %s\nmachine:  %s\npeer:     %s\n\n", rep.Workload, rep.Machine, rep.Peer)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tCHAOSGATE\tTESSERA POSIX\tNOTE")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Metric, r.Chaosgate, r.Tessera, r.Note)
	}
	return tw.Flush()
}
