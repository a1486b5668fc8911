package notify

import (
	"context"
	"sync"
	"time"
)

// DefaultTimeout bounds a whole dispatch, every sink and every retry.
const DefaultTimeout = time.Minute

// Dispatcher sends a notification to every sink at once.
type Dispatcher struct {
	Sinks []Sink
	// When filters by verdict (zero: DefaultWhen).
	When When
	// Dashboard is the dashboard's base URL for the run link ("": none).
	Dashboard string
	// Timeout bounds a dispatch (zero: DefaultTimeout).
	Timeout time.Duration
	// Notes say what Build left out and why, e.g. a GitLab merge request
	// taken from CI ("ci") in a pipeline that is not for a merge request.
	// Commands print them; serve logs them.
	Notes []string
}

// Wants reports whether a run with verdict notifies.
func (d *Dispatcher) Wants(verdict string) bool {
	if d == nil || len(d.Sinks) == 0 {
		return false
	}
	w := d.When
	if w == 0 {
		w = DefaultWhen
	}
	return w.Match(verdict)
}

// Notify builds the notification of r and dispatches it.
func (d *Dispatcher) Notify(ctx context.Context, r Run) []Delivery {
	if d == nil {
		return nil
	}
	return d.Dispatch(ctx, New(r, d.Dashboard))
}

// Dispatch sends n to every sink concurrently and waits for all of them,
// at most Timeout (sinks end their retries at the deadline and
// dead-letter). It returns one Delivery per sink, in the order of Sinks,
// or nil when n's verdict does not notify.
func (d *Dispatcher) Dispatch(ctx context.Context, n Notification) []Delivery {
	if !d.Wants(n.Verdict) {
		return nil
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]Delivery, len(d.Sinks))
	var wg sync.WaitGroup
	for i, s := range d.Sinks {
		wg.Go(func() { out[i] = deliver(ctx, s, n) })
	}
	wg.Wait()
	return out
}

func deliver(ctx context.Context, s Sink, n Notification) Delivery {
	if dv, ok := s.(Deliverer); ok {
		return dv.Deliver(ctx, n)
	}
	start := time.Now()
	err := s.Send(ctx, n)
	d := Delivery{Sink: s.Name(), Elapsed: time.Since(start)}
	if err != nil {
		d.Err = &DeliveryError{Sink: s.Name(), Err: err}
	}
	return d
}
