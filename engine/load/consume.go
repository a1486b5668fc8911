package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine/history"
)

// DrainOptions bound the consumer.
type DrainOptions struct {
	// Quiet: once every partition is read up to its high watermark, stop
	// when no new record arrived for this long, even if some acknowledged
	// messages were not seen (they are the checker's business). Default 3s.
	Quiet time.Duration
	// Max bounds the whole drain (default 2 minutes).
	Max time.Duration
	// PageSize is the limit per stream request (default 1000).
	PageSize int
	// Client names the reader in the history (default "<name>-consumer").
	Client string
}

// DrainStats says what the consumer read.
type DrainStats struct {
	Records  int64         `json:"records"`
	Gaps     int64         `json:"gaps"`
	Unseen   int64         `json:"unseen"` // acknowledged messages not seen when the drain stopped
	Duration time.Duration `json:"duration"`
	Complete bool          `json:"complete"` // every acknowledged message was seen
}

// Drain tails every partition's output stream, recording each record as a
// recv (or gap) history event, until every partition is read up to its high
// watermark and either every acknowledged message was seen or the stream
// stayed quiet. Each call resumes where the previous one stopped.
func (g *Generator) Drain(ctx context.Context, opt DrainOptions) (DrainStats, error) {
	if g.cfg.NoDrain {
		return DrainStats{}, errors.New("load: Drain called on a generator configured with NoDrain")
	}
	if opt.Quiet <= 0 {
		opt.Quiet = 3 * time.Second
	}
	if opt.Max <= 0 {
		opt.Max = 2 * time.Minute
	}
	if opt.PageSize <= 0 {
		opt.PageSize = 1000
	}
	if opt.Client == "" {
		opt.Client = g.cfg.Name + "-consumer"
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opt.Max)
	defer cancel()

	var (
		mu       sync.Mutex
		fatal    error
		st       DrainStats
		caught   = make([]bool, g.parts)
		lastErr  = make([]error, g.parts)
		lastPage = make([]StreamPage, g.parts)
		lastNews = time.Now()
	)
	done := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(done) }) }
	var wg sync.WaitGroup
	for p := 0; p < g.parts; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				default:
				}
				page, err := g.fetch(ctx, p, opt.PageSize)
				if errors.Is(err, ErrStreamRetained) { // retrying cannot bring the records back
					mu.Lock()
					fatal = err
					mu.Unlock()
					finish()
					return
				}
				if err != nil {
					g.log.Debug("stream read", "partition", p, "err", err)
					mu.Lock()
					lastErr[p] = err
					mu.Unlock()
					sleep(ctx, 100*time.Millisecond)
					continue
				}
				for _, r := range page.Records {
					g.recordStream(opt.Client, p, r)
				}
				mu.Lock()
				lastErr[p], lastPage[p] = nil, page
				if n := len(page.Records); n > 0 {
					lastNews = time.Now()
					for _, r := range page.Records {
						if r.Type == "gap" {
							st.Gaps++
						} else {
							st.Records++
						}
					}
					g.mu.Lock()
					g.next[p] = page.Next
					g.mu.Unlock()
				}
				caught[p] = page.Next >= page.HighWatermark
				all := true
				for _, c := range caught {
					all = all && c
				}
				quiet := time.Since(lastNews) >= opt.Quiet
				mu.Unlock()
				if all && (g.unseen() == 0 || quiet) {
					finish()
					return
				}
				if len(page.Records) == 0 {
					sleep(ctx, 100*time.Millisecond)
				}
			}
		}(p)
	}
	wg.Wait()
	st.Unseen = int64(g.unseen())
	st.Complete = st.Unseen == 0
	st.Duration = time.Since(start)
	if fatal != nil {
		st.Complete = false
		return st, fmt.Errorf("load: %w (hint: raise the nodes' --stream-retention or drain sooner)", fatal)
	}
	select {
	case <-done:
		return st, nil
	default:
	}
	mu.Lock()
	behind := drainLag(caught, lastPage, lastErr)
	mu.Unlock()
	return st, fmt.Errorf("load: drain stopped before the streams were read to their high watermarks (%s; %d acknowledged messages unseen): %w", behind, st.Unseen, ctx.Err())
}

// drainLag names the partitions a drain left behind: how far each was read
// against its high watermark, or the error its last read returned.
func drainLag(caught []bool, pages []StreamPage, errs []error) string {
	var parts []string
	for p, c := range caught {
		switch {
		case errs[p] != nil:
			parts = append(parts, fmt.Sprintf("partition %d: %v", p, errs[p]))
		case !c:
			parts = append(parts, fmt.Sprintf("partition %d at offset %d of high watermark %d (leader %q)", p, pages[p].Next, pages[p].HighWatermark, pages[p].Leader))
		}
	}
	if len(parts) == 0 {
		return "every partition at its high watermark, waiting for quiet"
	}
	const most = 4
	if len(parts) > most {
		parts = append(parts[:most], fmt.Sprintf("%d more", len(parts)-most))
	}
	return strings.Join(parts, "; ")
}

// ErrStreamRetained means the cluster's stream retention removed records
// before the consumer read them: they can no longer be checked.
var ErrStreamRetained = errors.New("stream records removed by retention before they were read")

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (g *Generator) fetch(ctx context.Context, p, limit int) (StreamPage, error) {
	var page StreamPage
	addr, err := g.cl.pick()
	if err != nil {
		return page, err
	}
	g.mu.Lock()
	from := g.next[p]
	g.mu.Unlock()
	o := g.cl.do(ctx, http.MethodGet, addr, fmt.Sprintf("/v1/stream/%d?from=%d&limit=%d", p, from, limit), nil)
	if o.err != nil {
		return page, o.err
	}
	if o.status == http.StatusGone {
		return page, fmt.Errorf("%w: partition %d from offset %d: %s", ErrStreamRetained, p, from, truncate(o.body))
	}
	if o.status != http.StatusOK {
		return page, fmt.Errorf("%s: HTTP %d: %s", addr, o.status, truncate(o.body))
	}
	if err := json.Unmarshal(o.body, &page); err != nil {
		return page, fmt.Errorf("%s: stream page: %w", addr, err)
	}
	if len(page.Records) > 0 && page.Records[0].Offset != from {
		return StreamPage{}, fmt.Errorf("%s: asked from offset %d, got %d", addr, from, page.Records[0].Offset)
	}
	if page.Next < from {
		page.Next = from
	}
	return page, nil
}

func (g *Generator) recordStream(client string, p int, r StreamRecord) {
	ev := history.Line{Op: history.OpRecv, T: time.Now(), Client: client, Partition: p, Offset: r.Offset, Key: r.GroupKey,
		Source: r.SourceID, Seq: r.Seq, MsgID: r.MsgID, Epoch: r.Epoch, Node: r.Node, Fingerprint: r.Fingerprint}
	if h, err := history.ParseHLC(r.HLC); err == nil {
		ev.HLC = h
	}
	if r.Type == "gap" {
		ev = history.Line{Op: history.OpGap, T: ev.T, Client: client, Partition: p, Offset: r.Offset, Source: r.SourceID,
			FromSeq: r.FromSeq, ToSeq: r.ToSeq, Epoch: r.Epoch, HLC: ev.HLC, Node: r.Node}
	} else {
		g.acks.Seen(p, r.MsgID)
	}
	g.record(ev)
}

func (g *Generator) unseen() int { return g.acks.Unseen() }

// startAtHighWatermarks sets the consumer's start to each partition's
// current high watermark, retrying while partitions elect leaders.
func (g *Generator) startAtHighWatermarks(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for p := 0; p < g.parts; p++ {
		// Ask past the end: the answer is an empty page with the high
		// watermark, whatever retention has removed from the front.
		g.mu.Lock()
		g.next[p] = math.MaxInt64
		g.mu.Unlock()
		for {
			page, err := g.fetch(ctx, p, 1)
			if err == nil {
				g.mu.Lock()
				g.next[p] = page.HighWatermark
				g.mu.Unlock()
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("load: high watermark of partition %d: %w", p, err)
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}
	return nil
}
