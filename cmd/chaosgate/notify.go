package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/notify"
	"github.com/chaosgate/chaosgate/web"
)

// notifyFlags are the --notify-* flags of run, gate and demo.
type notifyFlags struct {
	webhooks                                []string
	secretFile, slackURLFile, on, dashboard string
}

func (n *notifyFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&n.webhooks, "notify-webhook", nil, "when the run ends with a verdict --notify-on selects, POST a signed chaosgate.notification/v1 to this URL (repeatable; signed with --notify-secret-file or CHAOSGATE_NOTIFY_SECRET)")
	f.StringVar(&n.secretFile, "notify-secret-file", "", "file (mode 0600) holding the HMAC secret that signs webhook requests (default: CHAOSGATE_NOTIFY_SECRET)")
	f.StringVar(&n.slackURLFile, "notify-slack-url-file", "", "file (mode 0600) holding a Slack incoming-webhook URL to post to (default: CHAOSGATE_NOTIFY_SLACK_URL)")
	f.StringVar(&n.on, "notify-on", "block,hold", "verdicts that notify: block, hold, promote (comma-separated) or all")
	f.StringVar(&n.dashboard, "dashboard-url", "", "base URL of the dashboard (chaosgate serve): notifications link the run's page, URL/runs/ID")
}

// dispatcher checks the flags and returns the dispatcher (nil: no sink
// configured), dead-lettering under dataDir.
func (n *notifyFlags) dispatcher(dataDir string) (*notify.Dispatcher, error) {
	d, err := notify.Build(notify.Config{Webhooks: n.webhooks, SecretFile: n.secretFile, SlackURLFile: n.slackURLFile,
		On: n.on, DashboardURL: n.dashboard}, dataDir, version, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("--notify-*: %w", err)
	}
	return d, nil
}

// notifyRunOutput notifies the end of a local run (run, gate, demo). A
// run without a verdict (interrupted, or the platform could not judge)
// sends nothing.
func notifyRunOutput(ctx context.Context, w io.Writer, d *notify.Dispatcher, scenario string, res runOutput, runErr error) {
	judged := !res.Interrupted && (runErr == nil || res.Aborted != "")
	notifyEnd(ctx, w, d, judged, notify.Run{Report: res.Report, Scenario: scenario, Reason: res.Reason, Failing: res.Failing, Time: time.Now()})
}

// notifyRunResult notifies the end of a run on the Kubernetes target.
func notifyRunResult(ctx context.Context, w io.Writer, d *notify.Dispatcher, scenario string, res *web.RunResult) {
	judged := !res.Interrupted && (res.Error == "" || res.Aborted != "")
	notifyEnd(ctx, w, d, judged, notify.Run{Report: res.Report, Scenario: scenario, Reason: res.Reason, Failing: res.Failing, Time: time.Now()})
}

// notifyEnd dispatches the notification of a judged run and says on w how
// each delivery went. It never changes the run's outcome.
func notifyEnd(ctx context.Context, w io.Writer, d *notify.Dispatcher, judged bool, run notify.Run) {
	if d == nil || !judged {
		return
	}
	if !d.Wants(run.Report.Verdict) {
		fmt.Fprintf(w, "no notification: verdict %s (--notify-on %s)\n", run.Report.Verdict, d.When)
		return
	}
	for _, dl := range d.Notify(ctx, run) {
		fmt.Fprintln(w, dl)
	}
}

// serveNotifier returns serve's OnRunEnd hook for the notify: block of
// chaosgate.yaml (nil when it configures no sink).
func serveNotifier(stderr io.Writer, cfg web.NotifyConfig, dataDir string, log *slog.Logger) (func(*web.RunRecord), error) {
	d, err := notify.Build(notify.Config{Webhooks: cfg.Webhooks, SecretFile: cfg.SecretFile, SlackURLFile: cfg.SlackURLFile,
		On: cfg.On, DashboardURL: cfg.DashboardURL}, dataDir, version, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if d == nil {
		return nil, nil
	}
	var names []string
	for _, s := range d.Sinks {
		names = append(names, s.Name())
	}
	fmt.Fprintf(stderr, "chaosgate serve: notifying %s when a run ends with %s\n", strings.Join(names, ", "), d.When)
	return func(r *web.RunRecord) {
		if r.Report == nil || (r.Status != web.StatusFinished && r.Status != web.StatusAborted) {
			return
		}
		run := notify.Run{Report: *r.Report, Scenario: r.Scenario, Reason: r.Reason, Failing: r.Failing, Time: r.Finished}
		for _, dl := range d.Notify(context.Background(), run) {
			if dl.Err != nil {
				log.Error("notification failed", "run", r.ID, "sink", dl.Sink, "attempts", dl.Attempts, "err", dl.Err)
			} else {
				log.Info("notified", "run", r.ID, "sink", dl.Sink, "attempts", dl.Attempts)
			}
		}
	}, nil
}
