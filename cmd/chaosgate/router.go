package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/router"
)

// newRouterCmd is `chaosgate router`: the L7 router in front of a user's
// canary and stable deployments.
func newRouterCmd() *cobra.Command {
	var (
		listen, admin   string
		canary, control []string
		weight          int
		headers         []string
		sticky          string
		timeout         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "router --canary URL --control URL [--canary-weight N]",
		Short: "Route real requests between a canary and its control by weight and by header",
		Long: `router is a reverse proxy in front of two deployments of one service. Each
request goes to one arm:

  1. a header match (--header x-canary=always, repeatable) sends it to the canary;
  2. with --sticky-header x-deployment-id, a request carrying that header goes
     where the hash of its value says: one value always reaches the same arm,
     the values split by the canary weight, and a higher weight only moves
     values from the control to the canary;
  3. otherwise the weight alone decides: exactly N of every 100 requests.

An arm's replicas (--canary and --control take several URLs) are used in turn;
a replica that refuses the connection is skipped. Every response says which
arm served it in the X-Chaosgate-Arm header.

The admin API listens on its own address (--admin), so the routed traffic
cannot move the weight:

  GET  /split    the weight, the rules and the requests counted per arm
  PUT  /split    {"canary_weight": 10, "reset_counts": true}
  GET  /metrics  chaosgate_router_requests_total{arm,reason,code},
                 chaosgate_router_upstream_seconds{arm}, chaosgate_router_canary_weight

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 usage error or an address in use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := router.Config{CanaryWeight: weight, StickyHeader: sticky, Timeout: timeout}
			var err error
			if cfg.Canary, err = upstreamURLs("--canary", canary); err != nil {
				return withExitCode(exitUsage, err)
			}
			if cfg.Control, err = upstreamURLs("--control", control); err != nil {
				return withExitCode(exitUsage, err)
			}
			for _, h := range headers {
				m, err := router.ParseHeaderMatch(h)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--header: %w", err))
				}
				cfg.Headers = append(cfg.Headers, m)
			}
			r, err := router.New(cfg)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			return serveRouter(cmd.Context(), cmd, r, listen, admin)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address the routed requests arrive on")
	f.StringVar(&admin, "admin", "127.0.0.1:8081", "address of the admin API (split and metrics)")
	f.StringSliceVar(&canary, "canary", nil, "the canary's replicas (http://HOST:PORT, comma-separated or repeated)")
	f.StringSliceVar(&control, "control", nil, "the control's (stable) replicas")
	f.IntVar(&weight, "canary-weight", 0, "the canary's share of the requests no header match claims, in percent")
	f.StringArrayVar(&headers, "header", nil, "NAME=VALUE: requests whose header NAME equals VALUE go to the canary (repeatable)")
	f.StringVar(&sticky, "sticky-header", "", "split by the hash of this header's value (e.g. x-deployment-id)")
	f.DurationVar(&timeout, "upstream-timeout", 30*time.Second, "how long to wait for an upstream's response headers")
	return cmd
}

// upstreamURLs parses the replicas of one arm.
func upstreamURLs(flag string, raw []string) ([]*url.URL, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s URL is required (hint: %s http://127.0.0.1:9001)", flag, flag)
	}
	var out []*url.URL
	for _, s := range raw {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s %q: not an http(s) URL with a host (hint: http://127.0.0.1:9001)", flag, s)
		}
		out = append(out, u)
	}
	return out, nil
}

// serveRouter serves the routed requests and the admin API until ctx ends.
func serveRouter(ctx context.Context, cmd *cobra.Command, r *router.Router, listen, admin string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return withExitCode(exitUsage, fmt.Errorf("--listen %s: %w", listen, err))
	}
	aln, err := net.Listen("tcp", admin)
	if err != nil {
		ln.Close()
		return withExitCode(exitUsage, fmt.Errorf("--admin %s: %w", admin, err))
	}
	front := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	adm := &http.Server{Handler: r.Admin(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- front.Serve(ln) }()
	go func() { errc <- adm.Serve(aln) }()
	c := r.Config()
	fmt.Fprintf(cmd.OutOrStdout(), "routing on http://%s: %d%% canary (%d canary, %d control replicas); admin on http://%s\n",
		ln.Addr(), c.CanaryWeight, len(c.Canary), len(c.Control), aln.Addr())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	front.Shutdown(sctx)
	adm.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
