package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/web"
)

// newServeCmd builds `chaosgate serve -c chaosgate.yaml`: the API, the
// dashboard, the block explorer, the cron game days and the gate endpoints
// for Argo Rollouts and Flagger.
func newServeCmd() *cobra.Command {
	var cfgFile, httpAddr, dataDir, target, experiments, tokens, decisionFile, consulTokenFile, binary, tlsCert, tlsKey string
	var secureCookie bool
	var trustedCIDRs []string
	var k k8sOpts
	cmd := &cobra.Command{
		Use:   "serve [-c chaosgate.yaml]",
		Short: "Serve the API, dashboard, block explorer, schedules and gate endpoints",
		Long: `serve runs chaosgate's HTTP side: the REST API under /api/v1 with live run
events (server-sent events), the kill switch, cron game days, the gate
endpoints for Argo Rollouts (GET /api/v1/gate/{revision}) and Flagger
(POST /api/v1/gate/flagger/{confirm-promotion,pre-rollout,rollback}), the
on-call dashboard and the block explorer. /livez, /readyz and /metrics need
no token; everything else takes "Authorization: Bearer <token>" with the
roles viewer, operator (starts and aborts runs, manages schedules) and
auditor (ledger and explorer). Without a tokens file, serve creates
DATA/tokens.yaml (mode 0600) with one fresh token per role; a tokens file
that group or others may read is refused.

serve listens on 127.0.0.1:8080 (this machine only) unless --http names
another address; --tls-cert/--tls-key serve HTTPS. The data directory is
kept private (mode 0700). The ledger is verified with the public keys in
DATA/keys (created there on first start), never with keys the ledger
records about itself. With --target k8s, --namespace is required and runs
act in that namespace only.

Flags override the config file. Exit codes: 0 after a clean shutdown
(SIGINT/SIGTERM), 2 for a configuration or startup error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := &web.Config{Listen: web.DefaultListen, DataDir: ".chaosgate", Target: "local"}
			if cfgFile != "" {
				var err error
				if cfg, err = web.LoadConfigFile(cfgFile); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			f := cmd.Flags()
			for name, dst := range map[string]*string{"http": &cfg.Listen, "data-dir": &cfg.DataDir, "target": &cfg.Target,
				"experiments": &cfg.Experiments, "tokens": &cfg.TokensFile, "decision": &cfg.Decision, "consul-token-file": &cfg.ConsulTokenFile, "tls-cert": &cfg.TLSCert, "tls-key": &cfg.TLSKey} {
				if f.Changed(name) {
					v, _ := f.GetString(name)
					*dst = v
				}
			}
			if f.Changed("secure-cookie") {
				cfg.SecureCookie = secureCookie
			}
			if cfg.Target != "local" && cfg.Target != "k8s" {
				return withExitCode(exitUsage, fmt.Errorf("--target %q: want local or k8s", cfg.Target))
			}
			if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
				return withExitCode(exitUsage, errors.New("--tls-cert and --tls-key go together (hint: give both for HTTPS, or neither)"))
			}
			if cfg.Target == "k8s" && k.namespace == "" {
				return withExitCode(exitUsage, errors.New("--target k8s needs --namespace NS: serve runs faults in that namespace only (hint: the namespace of deploy/serve/rbac.yaml's Role)"))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			trusted, err := parseTrustedNets(trustedCIDRs)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			return serve(ctx, cmd.ErrOrStderr(), cfg, serveExtras{binary: binary, k8s: &k, ready: nil, configFile: cfgFile, webhookTrusted: trusted})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgFile, "config", "c", "", "chaosgate.yaml (listen, data_dir, tokens_file, decision, target, experiments, schedules, notify, ledger)")
	f.StringVar(&httpAddr, "http", web.DefaultListen, "listen address (default this machine only; \":8080\" for every interface)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with (with --tls-key)")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.BoolVar(&secureCookie, "secure-cookie", false, "mark the login cookie Secure on plain HTTP too (behind a proxy that terminates TLS)")
	f.StringVar(&dataDir, "data-dir", ".chaosgate", "data directory: journal, ledger, keys, run records, schedules")
	f.StringVar(&target, "target", "local", "where runs execute: local or k8s")
	f.StringVar(&experiments, "experiments", "", "directory of experiment files runs and schedules may name")
	f.StringVar(&tokens, "tokens", "", "bearer tokens file (default DATA/tokens.yaml, created on first start)")
	f.StringVar(&decisionFile, "decision", "", "decision matrix, hot-reloaded: a file or consul://HOST:PORT/KEY (default: the built-in defaults)")
	f.StringVar(&consulTokenFile, "consul-token-file", "", "file holding the Consul ACL token for a consul:// --decision (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&binary, "binary", "", "chaosgate binary the local aggregator nodes run (default: this executable)")
	f.StringSliceVar(&trustedCIDRs, "webhook-trusted-cidr", nil, "networks (CIDR, repeatable) whose Flagger webhook requests need no token: Flagger cannot send one from a Secret; admit only Flagger to serve with a NetworkPolicy")
	k.flags(cmd)
	return cmd
}

// parseTrustedNets parses --webhook-trusted-cidr values.
func parseTrustedNets(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("--webhook-trusted-cidr %q: %v (hint: a network such as 10.42.0.0/16 or 127.0.0.1/32)", c, err)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("--webhook-trusted-cidr %q trusts every address (hint: name the network Flagger's pods run in)", c)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// serveExtras are serve's settings that are not in chaosgate.yaml.
type serveExtras struct {
	binary string
	k8s    *k8sOpts
	// ready, when set, receives the bound address once serving (tests).
	ready chan<- string
	// configFile is the chaosgate.yaml cfg came from (for messages).
	configFile string
	// webhookTrusted is --webhook-trusted-cidr.
	webhookTrusted []netip.Prefix
}

func serve(ctx context.Context, stderr io.Writer, cfg *web.Config, x serveExtras) error {
	log := newLogger(slog.LevelInfo)
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	if err := privateDir(stderr, dir); err != nil {
		return withExitCode(exitUsage, fmt.Errorf("--data-dir: %w", err))
	}
	// The keys that sign this data dir's evidence are created now if
	// missing, so that the ledger is always verified with them.
	keys, created, err := evidence.LoadOrGenerateKeys(filepath.Join(dir, evidence.KeysSubdir), evidence.DefaultOrigin)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	if created {
		fmt.Fprintf(stderr, "created the evidence keys in %s\n", filepath.Join(dir, evidence.KeysSubdir))
	}
	if cfg.Target == "local" {
		if err := reapLeftovers(ctx, stderr, dir, nil, log); err != nil {
			return err
		}
	}
	tokPath, create := cfg.TokensFile, false
	if tokPath == "" {
		tokPath, create = filepath.Join(dir, "tokens.yaml"), true
	}
	tokens, created, err := web.LoadOrCreateTokens(tokPath, create)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	if created {
		fmt.Fprintf(stderr, "created %s with a viewer, an operator and an auditor token (mode 0600)\n", tokPath)
	}
	onRunEnd, err := serveNotifier(stderr, cfg.Notify, dir, log)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	if onRunEnd, err = serveAnchorer(stderr, cfg.Ledger, x.configFile, dir, onRunEnd); err != nil {
		return withExitCode(exitUsage, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The decision matrix: the defaults, or a file or Consul key kept in
	// step (hot reload) while serve runs.
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	source := "built-in defaults"
	var store *config.Store
	watchDone := make(<-chan struct{})
	if cfg.Decision != "" {
		src, err := config.ParseSource(cfg.Decision)
		if err != nil {
			stopWatch()
			return withExitCode(exitUsage, fmt.Errorf("--decision: %w", err))
		}
		src.ConsulTokenFile = cfg.ConsulTokenFile
		if store, watchDone, err = config.OpenSource(wctx, src, reg, log); err != nil {
			stopWatch()
			return withExitCode(exitUsage, err)
		}
		source = src.String()
	} else {
		if store, err = config.NewStore(nil, source, reg, config.SystemClock{}, log); err != nil {
			stopWatch()
			return withExitCode(exitUsage, err)
		}
		closed := make(chan struct{})
		close(closed)
		watchDone = closed
	}
	defer func() { stopWatch(); <-watchDone }()

	var run web.RunFunc
	if cfg.Target == "k8s" {
		run = k8sServeRunner(dir, x.k8s, store.Current, map[string]string{"chaosgate": version}, log)
	} else {
		run = web.LocalRunner(dir, x.binary, store.Current, map[string]string{"chaosgate": version}, log)
	}
	var namespaces []string
	if cfg.Target == "k8s" && x.k8s != nil && x.k8s.namespace != "" {
		namespaces = []string{x.k8s.namespace}
	}
	srv, err := web.New(web.Options{Version: version, DataDir: dir, Tokens: tokens, Run: run, Decision: store, DecisionSource: source,
		Experiments: cfg.Experiments, Target: cfg.Target, Schedules: cfg.Schedules, Registry: reg, Log: log,
		PublicKeys: keys.Verifier(), SecureCookie: cfg.SecureCookie || cfg.TLSCert != "", Namespaces: namespaces, OnRunEnd: onRunEnd,
		WebhookTrustedNets: x.webhookTrusted})
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close(context.Background())
		return withExitCode(exitUsage, fmt.Errorf("--http %s: %w", cfg.Listen, err))
	}
	hs := web.HTTPServer(srv.Handler())
	scheme := "http"
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			srv.Close(context.Background())
			return withExitCode(exitUsage, fmt.Errorf("--tls-cert/--tls-key: %w", err))
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
		scheme = "https"
	} else if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		fmt.Fprintf(stderr, "chaosgate serve: warning: plain HTTP on %s: tokens cross the network in clear text (hint: --tls-cert/--tls-key, or a TLS proxy with --secure-cookie)\n", ln.Addr())
	}
	fmt.Fprintf(stderr, "chaosgate serve: listening on %s://%s (data dir %s, target %s)\n", scheme, ln.Addr(), dir, cfg.Target)
	if x.ready != nil {
		x.ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "chaosgate serve: shutting down (a run in progress recovers its faults)")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cerr := srv.Close(sctx)
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	hs.Shutdown(hctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return withExitCode(exitUsage, err)
	}
	if cerr != nil {
		return withExitCode(exitUsage, cerr)
	}
	return nil
}

// privateDir creates dir with mode 0700, or narrows an existing one that
// group or others may enter to 0700 (saying so): the data directory holds
// the signing keys, the tokens, the journal and the run records.
func privateDir(stderr io.Writer, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, perm&0o700); err != nil {
			return fmt.Errorf("%s has mode %04o and cannot be made private: %w (hint: chmod 700 %s)", dir, perm, err, dir)
		}
		fmt.Fprintf(stderr, "chaosgate serve: %s had mode %04o; now %04o (the data directory holds keys and tokens)\n", dir, perm, perm&0o700)
	}
	return nil
}

// k8sServeRunner runs serve's requests on the Kubernetes target as game
// days, like run and gate --target k8s: the load and probes on the
// workloads' pods, Chaos Mesh faults at every canary step, the judge, the
// evidence under the canary workload's revision.
func k8sServeRunner(dataDir string, k *k8sOpts, dcfg func() *decision.Config, versions map[string]string, log *slog.Logger) web.RunFunc {
	return web.GameDayRunner(web.GameDayRunnerOptions{DataDir: dataDir, Decision: dcfg, Versions: versions, Log: log,
		Target: func(ctx context.Context, req web.RunRequest, log *slog.Logger) (web.RunTarget, error) {
			return k8sTargetSetup(ctx, k, req.Doc, req.ID, dataDir, req.Revision, log)
		}})
}
