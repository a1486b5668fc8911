package config

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulOptions tunes WatchConsul.
type ConsulOptions struct {
	// WaitTime bounds one blocking query (default 5 minutes).
	WaitTime time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after an error
	// (defaults 100 ms and 10 s).
	MinBackoff, MaxBackoff time.Duration
}

// WatchConsul keeps store in step with a Consul KV key until ctx ends, using
// blocking queries (WaitIndex). It handles a key created after the start, a
// changed key, a deleted key (the last good config stays), an agent that
// restarts mid-watch (the index goes backwards: the watch starts over) and
// errors (exponential back-off).
func WatchConsul(ctx context.Context, client *api.Client, key string, store *Store, opt ConsulOptions) error {
	if opt.WaitTime <= 0 {
		opt.WaitTime = 5 * time.Minute
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 10 * time.Second
	}
	source := "consul:" + key
	var index, applied uint64
	seen := false
	backoff := opt.MinBackoff
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: opt.WaitTime}).WithContext(ctx)
		kv, meta, err := client.KV().Get(key, q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			store.reject(&Error{Kind: KindSource, File: source, Msg: "consul: " + err.Error(), Hint: "retrying with back-off; the last good config stays"})
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(backoff*2, opt.MaxBackoff)
			continue
		}
		backoff = opt.MinBackoff
		last := meta.LastIndex
		if last == 0 {
			last = 1 // Consul's rule: never block on index 0
		}
		if last < index {
			// The agent restarted (or the raft index was reset): start over.
			index, applied = 0, 0
			continue
		}
		if last == index {
			continue // the wait timed out without a change
		}
		index = last
		if kv == nil {
			if seen {
				seen = false
				applied = 0
				store.reject(&Error{Kind: KindSource, File: source, Msg: "key deleted", Hint: "the last good config stays until the key is written again"})
			}
			continue
		}
		seen = true
		if kv.ModifyIndex == applied {
			continue
		}
		applied = kv.ModifyIndex
		_ = store.Apply(kv.Value, source) // Apply records and logs a rejection
	}
}
