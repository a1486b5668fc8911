package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaosgate/chaosgate/decision"
)

// Source is where a decision config comes from: a file, or a key of
// Consul's KV store.
type Source struct {
	// File is the path of decision.yaml (empty for Consul).
	File string
	// ConsulAddr (host:port), ConsulScheme (http or https) and ConsulKey
	// name the key for Consul.
	ConsulAddr, ConsulScheme, ConsulKey string
	// ConsulTokenFile holds the ACL token (empty: CONSUL_HTTP_TOKEN, or
	// none). The token is read when the source is opened and never logged.
	ConsulTokenFile string
}

// ParseSource reads a config source: a file path, or
// consul://HOST:PORT/KEY (consul+https:// for TLS). The key may hold
// slashes.
func ParseSource(s string) (Source, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		if s == "" {
			return Source{}, errors.New("no decision config source")
		}
		return Source{File: s}, nil
	}
	var httpScheme string
	switch scheme {
	case "consul":
		httpScheme = "http"
	case "consul+https":
		httpScheme = "https"
	default:
		return Source{}, fmt.Errorf("decision config source %q: unknown scheme %q (hint: a file path, consul://HOST:PORT/KEY or consul+https://HOST:PORT/KEY)", s, scheme)
	}
	u, err := url.Parse("http://" + rest)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Source{}, fmt.Errorf("decision config source %q: want %s://HOST:PORT/KEY", s, scheme)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key == "" || strings.HasSuffix(key, "/") {
		return Source{}, fmt.Errorf("decision config source %q: no key after the address (hint: %s://%s/chaosgate/decision.yaml)", s, scheme, u.Host)
	}
	if u.Port() == "" {
		u.Host += ":8500"
	}
	return Source{ConsulAddr: u.Host, ConsulScheme: httpScheme, ConsulKey: key}, nil
}

// IsConsul reports whether the source is a Consul key.
func (s Source) IsConsul() bool { return s.ConsulKey != "" }

// String names the source as the store and the dashboard show it:
// the file path, or consul:KEY.
func (s Source) String() string {
	if s.IsConsul() {
		return "consul:" + s.ConsulKey
	}
	return s.File
}

// consulClient is an API client for the source's agent.
func (s Source) consulClient() (*api.Client, error) {
	cfg := api.DefaultConfig() // reads CONSUL_HTTP_TOKEN and the TLS variables
	cfg.Address, cfg.Scheme = s.ConsulAddr, s.ConsulScheme
	if s.ConsulTokenFile != "" {
		tok, err := os.ReadFile(s.ConsulTokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul token file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(tok))
	}
	return api.NewClient(cfg)
}

// consulTimeout bounds the first read of a Consul key.
const consulTimeout = 10 * time.Second

// loadConsul reads the key once.
func (s Source) loadConsul(ctx context.Context, client *api.Client) (*decision.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, consulTimeout)
	defer cancel()
	kv, _, err := client.KV().Get(s.ConsulKey, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, &Error{Kind: KindSource, File: s.String(), Msg: fmt.Sprintf("reading from the Consul agent at %s: %v", s.ConsulAddr, err),
			Hint: "is the agent running and the ACL token (--consul-token-file or CONSUL_HTTP_TOKEN) allowed to read the key?"}
	}
	if kv == nil {
		return nil, &Error{Kind: KindSource, File: s.String(), Msg: fmt.Sprintf("no key %q on the Consul agent at %s", s.ConsulKey, s.ConsulAddr),
			Hint: fmt.Sprintf("write it first: consul kv put %s @decision.yaml", s.ConsulKey)}
	}
	return Load(kv.Value, s.String())
}

// LoadSource reads the config once (commands that judge once, like
// decide).
func LoadSource(ctx context.Context, s Source) (*decision.Config, error) {
	if !s.IsConsul() {
		return LoadFile(s.File)
	}
	client, err := s.consulClient()
	if err != nil {
		return nil, err
	}
	return s.loadConsul(ctx, client)
}

// OpenSource reads the config now (an error when it is missing or
// invalid) and returns a store that stays in step with the source until
// ctx ends: a watched file, or Consul blocking queries. done is closed
// when the watch has stopped.
func OpenSource(ctx context.Context, s Source, reg prometheus.Registerer, log *slog.Logger) (store *Store, done <-chan struct{}, err error) {
	var initial *decision.Config
	var client *api.Client
	if s.IsConsul() {
		if client, err = s.consulClient(); err != nil {
			return nil, nil, err
		}
		initial, err = s.loadConsul(ctx, client)
	} else {
		initial, err = LoadFile(s.File)
	}
	if err != nil {
		return nil, nil, err
	}
	if store, err = NewStore(initial, s.String(), reg, SystemClock{}, log); err != nil {
		return nil, nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		var werr error
		if s.IsConsul() {
			werr = WatchConsul(ctx, client, s.ConsulKey, store, ConsulOptions{})
		} else {
			werr = WatchFile(ctx, s.File, store, 200*time.Millisecond)
		}
		if werr != nil && !errors.Is(werr, context.Canceled) {
			log.Error("decision config watch stopped", "source", s.String(), "err", werr)
		}
	}()
	return store, ch, nil
}
