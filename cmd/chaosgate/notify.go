package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
	gitlab                                  notify.GitLabConfig
	github                                  notify.GitHubConfig
	jira                                    notify.JiraConfig
}

// notifySettingFlags names the flag of each notify setting, for errors.
var notifySettingFlags = map[string]string{
	"gitlab.merge_request": "--notify-gitlab-mr", "gitlab.api_url": "--notify-gitlab-api-url",
	"gitlab.token_file": "--notify-gitlab-token-file", "gitlab.auth": "--notify-gitlab-auth", "gitlab": "--notify-gitlab-*",
	"github.pull_request": "--notify-github-pr", "github.api_url": "--notify-github-api-url",
	"github.token_file": "--notify-github-token-file", "github": "--notify-github-*",
	"jira.project": "--notify-jira-project", "jira.url": "--notify-jira-url", "jira.api": "--notify-jira-api",
	"jira.token_file": "--notify-jira-token-file", "jira.labels": "--notify-jira-labels", "jira": "--notify-jira-*",
}

func (n *notifyFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&n.webhooks, "notify-webhook", nil, "when the run ends with a verdict --notify-on selects, POST a signed chaosgate.notification/v1 to this URL (repeatable; signed with --notify-secret-file or CHAOSGATE_NOTIFY_SECRET)")
	f.StringVar(&n.secretFile, "notify-secret-file", "", "file (mode 0600) holding the HMAC secret that signs webhook requests (default: CHAOSGATE_NOTIFY_SECRET)")
	f.StringVar(&n.slackURLFile, "notify-slack-url-file", "", "file (mode 0600) holding a Slack incoming-webhook URL to post to (default: CHAOSGATE_NOTIFY_SLACK_URL)")
	f.StringVar(&n.on, "notify-on", "block,hold", "verdicts that notify: block, hold, promote (comma-separated) or all")
	f.StringVar(&n.dashboard, "dashboard-url", "", "base URL of the dashboard (chaosgate serve): notifications link the run's page, URL/runs/ID, and its ledger entry, URL/explorer/entries/INDEX")
	f.StringVar(&n.gitlab.MergeRequest, "notify-gitlab-mr", "", "post the root-cause report as a note on this GitLab merge request: its URL, PROJECT!IID (group/project!12, 4711!12), or ci (CI_MERGE_REQUEST_IID of this pipeline)")
	f.StringVar(&n.gitlab.APIURL, "notify-gitlab-api-url", "", "GitLab REST API base URL, .../api/v4 (default: from the merge request URL, else CI_API_V4_URL, else https://gitlab.com/api/v4)")
	f.StringVar(&n.gitlab.TokenFile, "notify-gitlab-token-file", "", "file (mode 0600) holding the GitLab access token (default: GITLAB_TOKEN)")
	f.StringVar(&n.gitlab.Auth, "notify-gitlab-auth", "", "how the GitLab token is sent: private-token (PRIVATE-TOKEN header, default) or bearer (Authorization: Bearer, for OAuth tokens)")
	f.StringVar(&n.github.PullRequest, "notify-github-pr", "", "post the root-cause report as a comment on this GitHub pull request: owner/repo#N, its URL, or ci (the pull request of this GitHub Actions run)")
	f.StringVar(&n.github.APIURL, "notify-github-api-url", "", "GitHub REST API base URL (default: from the pull request URL, else GITHUB_API_URL, else https://api.github.com; GitHub Enterprise Server: https://HOST/api/v3)")
	f.StringVar(&n.github.TokenFile, "notify-github-token-file", "", "file (mode 0600) holding the GitHub token (default: GITHUB_TOKEN)")
	f.StringVar(&n.jira.Project, "notify-jira-project", "", "file the root-cause report as an issue in this Jira project (its key, e.g. OPS); needs --notify-jira-url")
	f.StringVar(&n.jira.URL, "notify-jira-url", "", "Jira site base URL (https://example.atlassian.net, or your Data Center's)")
	f.StringVar(&n.jira.User, "notify-jira-user", "", "Jira Cloud: the Atlassian account email the API token belongs to (Basic auth); omit for a Data Center personal access token (Bearer)")
	f.StringVar(&n.jira.TokenFile, "notify-jira-token-file", "", "file (mode 0600) holding the Jira API token or personal access token (default: CHAOSGATE_NOTIFY_JIRA_TOKEN)")
	f.StringVar(&n.jira.API, "notify-jira-api", "", "Jira REST API version: 2 (wiki-markup description) or 3 (Atlassian Document Format); default 3 with --notify-jira-user, else 2")
	f.StringVar(&n.jira.IssueType, "notify-jira-issue-type", "", "Jira issue type name (default Bug)")
	f.StringSliceVar(&n.jira.Labels, "notify-jira-labels", nil, "labels added to the Jira issue besides chaosgate and chaosgate-VERDICT (comma-separated, no spaces)")
}

// dispatcher checks the flags and returns the dispatcher (nil: no sink
// configured), dead-lettering under dataDir. What it leaves out (a
// merge request taken from CI outside a merge-request pipeline) is said
// on w.
func (n *notifyFlags) dispatcher(dataDir string, w io.Writer) (*notify.Dispatcher, error) {
	d, err := notify.Build(notify.Config{Webhooks: n.webhooks, SecretFile: n.secretFile, SlackURLFile: n.slackURLFile,
		On: n.on, DashboardURL: n.dashboard, GitLab: n.gitlab, GitHub: n.github, Jira: n.jira}, dataDir, version, os.Getenv)
	if err != nil {
		var se *notify.SettingError
		if errors.As(err, &se) {
			if flag, ok := notifySettingFlags[se.Setting]; ok {
				return nil, fmt.Errorf("%s: %w", flag, se.Err)
			}
		}
		return nil, fmt.Errorf("--notify-*: %w", err)
	}
	if d == nil {
		return nil, nil
	}
	for _, note := range d.Notes {
		fmt.Fprintln(w, note)
	}
	if len(d.Sinks) == 0 {
		return nil, nil
	}
	return d, nil
}

// rootCausePath is where the root-cause report goes next to the report
// file jsonFile: report.json → report.root-cause.md.
func rootCausePath(jsonFile string) string {
	return strings.TrimSuffix(jsonFile, filepath.Ext(jsonFile)) + ".root-cause.md"
}

// writeRootCause writes the root-cause report (notify.RootCause) of a
// judged run that did not promote next to its report file, and removes
// the one an earlier run left there when this one promoted or was not
// judged: the file always speaks of the report beside it. It says on w
// what it wrote; a failure is said too but changes nothing else.
func writeRootCause(w io.Writer, jsonFile, dashboard string, judged bool, run notify.Run) {
	if jsonFile == "" {
		return
	}
	path := rootCausePath(jsonFile)
	if !judged || (run.Report.Verdict != "block" && run.Report.Verdict != "hold") {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(w, "root-cause report: removing the one of an earlier run: %v\n", err)
		}
		return
	}
	md := notify.RootCause(notify.New(run, strings.TrimSpace(dashboard)))
	if err := writeFileWith(path, func(f io.Writer) error { _, err := io.WriteString(f, md); return err }); err != nil {
		fmt.Fprintf(w, "root-cause report not written: %v\n", err)
		return
	}
	fmt.Fprintf(w, "root-cause report: %s\n", path)
}

// notifyRunOutput writes the root-cause report next to jsonFile (gate
// --json) and notifies the end of a local run (run, gate, demo). A run
// without a verdict (interrupted, or the platform could not judge) sends
// nothing.
func notifyRunOutput(ctx context.Context, w io.Writer, d *notify.Dispatcher, flags notifyFlags, jsonFile, scenario string, res runOutput, runErr error) {
	judged := !res.Interrupted && (runErr == nil || res.Aborted != "")
	run := notify.Run{Report: res.Report, Scenario: scenario, Reason: res.Reason, Failing: res.Failing, Time: time.Now()}
	writeRootCause(w, jsonFile, flags.dashboard, judged, run)
	notifyEnd(ctx, w, d, judged, run)
}

// notifyRunResult does the same for a run on the Kubernetes target.
func notifyRunResult(ctx context.Context, w io.Writer, d *notify.Dispatcher, flags notifyFlags, jsonFile, scenario string, res *web.RunResult) {
	judged := !res.Interrupted && (res.Error == "" || res.Aborted != "")
	run := notify.Run{Report: res.Report, Scenario: scenario, Reason: res.Reason, Failing: res.Failing, Time: time.Now()}
	writeRootCause(w, jsonFile, flags.dashboard, judged, run)
	notifyEnd(ctx, w, d, judged, run)
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
		On: cfg.On, DashboardURL: cfg.DashboardURL, GitLab: cfg.GitLab, GitHub: cfg.GitHub, Jira: cfg.Jira}, dataDir, version, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if d == nil {
		return nil, nil
	}
	for _, note := range d.Notes {
		fmt.Fprintf(stderr, "chaosgate serve: %s\n", note)
	}
	if len(d.Sinks) == 0 {
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
