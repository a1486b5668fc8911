package load

import (
	"sync"
	"time"
)

// DefaultTraceSample is how many traced requests a Generator keeps by
// default.
const DefaultTraceSample = 100

// TracedRequest is one answered request and the W3C trace id its
// traceparent header carried: the node that served it logged that id.
type TracedRequest struct {
	TraceID  string    `json:"trace_id"`
	T        time.Time `json:"t"`
	Addr     string    `json:"addr"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Status   int       `json:"status"`
	Messages int       `json:"messages,omitempty"`
}

// Traces is a generator's sample of traced requests.
type Traces struct {
	// Requests is how many answered message requests there were in all.
	Requests int64 `json:"requests"`
	// Every is the sampling stride the sample ended with: one request in
	// Every was kept.
	Every int64 `json:"every"`
	// Sample holds at most the configured number of requests, in the
	// order they were answered, evenly spread over all of them.
	Sample []TracedRequest `json:"sample"`
}

// traceSample keeps every stride-th request; when it holds twice its
// bound it drops every other one and doubles the stride, so what it keeps
// stays evenly spread over the whole run in bounded memory.
type traceSample struct {
	mu     sync.Mutex
	max    int
	n      int64
	stride int64
	kept   []TracedRequest
}

func (s *traceSample) add(r TracedRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stride == 0 {
		s.stride = 1
	}
	s.n++
	if (s.n-1)%s.stride != 0 {
		return
	}
	s.kept = append(s.kept, r)
	if len(s.kept) >= 2*max(s.max, 1) {
		half := s.kept[:0]
		for i := 0; i < len(s.kept); i += 2 {
			half = append(half, s.kept[i])
		}
		s.kept = half
		s.stride *= 2
	}
}

// Traces returns the sample of answered message requests and their trace
// ids (at most Config.TraceSample, evenly spread).
func (g *Generator) Traces() Traces {
	s := &g.traces
	s.mu.Lock()
	defer s.mu.Unlock()
	t := Traces{Requests: s.n, Every: max(s.stride, 1)}
	kept := s.kept
	if len(kept) > s.max {
		// Thin to the bound, evenly.
		out := make([]TracedRequest, 0, s.max)
		for i := 0; i < s.max; i++ {
			out = append(out, kept[i*len(kept)/s.max])
		}
		kept = out
		t.Every = s.n / int64(max(len(kept), 1))
	}
	t.Sample = append([]TracedRequest{}, kept...)
	return t
}
