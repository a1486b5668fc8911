package web

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision/config"
)

func TestLoadConfigNotify(t *testing.T) {
	c, err := LoadConfig([]byte(`notify:
  webhook: https://hooks.example.com/chaosgate
  secret_file: /etc/chaosgate/notify-secret
  slack_url_file: /etc/chaosgate/slack-url
  on: block,hold
  dashboard_url: https://chaosgate.example.com
`), "chaosgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Notify
	if len(n.Webhooks) != 1 || n.Webhooks[0] != "https://hooks.example.com/chaosgate" || n.SecretFile != "/etc/chaosgate/notify-secret" ||
		n.SlackURLFile != "/etc/chaosgate/slack-url" || n.On != "block,hold" || n.DashboardURL != "https://chaosgate.example.com" {
		t.Fatalf("notify: %+v", n)
	}
	c, err = LoadConfig([]byte("notify:\n  webhook: [\"http://a.example/h\", \"http://b.example/h\"]\n  secret_file: s\n  on: all\n"), "c.yaml")
	if err != nil || len(c.Notify.Webhooks) != 2 || c.Notify.On != "all" {
		t.Fatalf("list of webhooks: %+v %v", c, err)
	}
	if c, err := LoadConfig([]byte("notify:\n  slack_url_file: slack-url\n"), "c.yaml"); err != nil || c.Notify.SlackURLFile != "slack-url" {
		t.Fatalf("Slack only: %+v %v", c, err)
	}
}

func TestLoadConfigNotifyErrorsAtLineCol(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "notify:\n  webhook: http://h/x\n  url: x\n", "c.yaml:3:3: notify.url: unknown field"},
		{"not a mapping", "notify: http://h/x\n", "c.yaml:1:9: notify: want a mapping"},
		{"bad webhook", "notify:\n  webhook: hooks.example.com/x\n", "c.yaml:2:12: notify.webhook: not an http or https URL"},
		{"bad webhook in a list", "notify:\n  webhook:\n    - http://h/x\n    - ftp://h/x\n", "c.yaml:4:7: notify.webhook[1]: not an http or https URL"},
		{"empty list", "notify:\n  webhook: []\n", "c.yaml:2:12: notify.webhook: want a URL or a non-empty list"},
		{"bad on", "notify:\n  on: sometimes\n", `c.yaml:2:7: notify.on: unknown verdict "sometimes"`},
		{"bad dashboard", "notify:\n  dashboard_url: chaosgate.example.com\n", "c.yaml:2:18: notify.dashboard_url: not an http or https URL"},
		{"secret without webhook", "notify:\n  secret_file: s\n", "c.yaml:2:16: notify.secret_file: a secret file without a webhook"},
		{"duplicate", "notify:\n  on: all\n  on: block\n", "c.yaml:3:3: notify.on: duplicate field"},
		{"wrong type", "notify:\n  secret_file: [a]\n", "c.yaml:2:16: notify.secret_file: want a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig([]byte(tc.doc), "c.yaml")
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// TestOnRunEndSeesTheFinishedRecord: the hook gets the saved record of
// every run, after the server is free for the next one.
func TestOnRunEndSeesTheFinishedRecord(t *testing.T) {
	dir := t.TempDir()
	store, err := config.NewStore(nil, "defaults", nil, config.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan RunRecord, 2)
	var srv *Server
	srv, err = New(Options{DataDir: dir, Tokens: testTokens(t), Run: scripted(nil), Decision: store, Target: "local",
		OnRunEnd: func(r *RunRecord) {
			if srv.current() != nil {
				t.Errorf("OnRunEnd called while the run is still current")
			}
			ended <- *r
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	doc, err := srv.resolveScenario("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"block-1", "hold-2"} {
		rec, err := srv.Start(RunRequest{Scenario: "pod-kill", Doc: doc, Revision: rev, Trigger: "api:test"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ended:
			want, _, _ := strings.Cut(rev, "-")
			if r.ID != rec.ID || r.Status != StatusFinished || r.Verdict() != want || r.Finished.IsZero() || r.Report == nil {
				t.Fatalf("OnRunEnd got %+v", r)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("OnRunEnd not called")
		}
	}
}

func TestLoadConfigNotifyGitLabGitHubJira(t *testing.T) {
	c, err := LoadConfig([]byte(`notify:
  gitlab:
    merge_request: https://gitlab.example.com/group/project/-/merge_requests/12
    api_url: https://gitlab.example.com/api/v4
    token_file: /etc/chaosgate/gitlab-token
    auth: bearer
  github:
    pull_request: "chaosgate/chaosgate#42"
    token_file: /etc/chaosgate/github-token
  jira:
    url: https://example.atlassian.net
    project: OPS
    user: bot@example.com
    token_file: /etc/chaosgate/jira-token
    api: 3
    issue_type: Incident
    labels: [team-payments, canary]
`), "chaosgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Notify
	if n.GitLab.MergeRequest != "https://gitlab.example.com/group/project/-/merge_requests/12" || n.GitLab.APIURL != "https://gitlab.example.com/api/v4" ||
		n.GitLab.TokenFile != "/etc/chaosgate/gitlab-token" || n.GitLab.Auth != "bearer" {
		t.Errorf("gitlab: %+v", n.GitLab)
	}
	if n.GitHub.PullRequest != "chaosgate/chaosgate#42" || n.GitHub.TokenFile != "/etc/chaosgate/github-token" {
		t.Errorf("github: %+v", n.GitHub)
	}
	j := n.Jira
	if j.URL != "https://example.atlassian.net" || j.Project != "OPS" || j.User != "bot@example.com" || j.TokenFile != "/etc/chaosgate/jira-token" ||
		j.API != "3" || j.IssueType != "Incident" || strings.Join(j.Labels, ",") != "team-payments,canary" {
		t.Errorf("jira: %+v", j)
	}
	if c, err := LoadConfig([]byte("notify:\n  gitlab: {merge_request: ci}\n  github: {pull_request: CI}\n"), "c.yaml"); err != nil ||
		c.Notify.GitLab.MergeRequest != "ci" || c.Notify.GitHub.PullRequest != "CI" {
		t.Fatalf("ci: %+v %v", c, err)
	}
}

func TestLoadConfigNotifyForgeErrorsAtLineCol(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown gitlab field", "notify:\n  gitlab:\n    merge_request: g/p!1\n    token: x\n", `c.yaml:4:5: notify.gitlab.token: unknown field`},
		{"bad merge request", "notify:\n  gitlab:\n    merge_request: g/p#1\n", "c.yaml:3:20: notify.gitlab.merge_request: \"g/p#1\": want a merge request URL or PROJECT!IID"},
		{"gitlab without merge request", "notify:\n  gitlab:\n    token_file: t\n", "c.yaml:3:5: notify.gitlab.merge_request: missing"},
		{"bad auth", "notify:\n  gitlab: {merge_request: g/p!1, auth: basic}\n", `c.yaml:2:40: notify.gitlab.auth: unknown auth "basic"`},
		{"bad gitlab api url", "notify:\n  gitlab: {merge_request: g/p!1, api_url: gitlab.example.com}\n", "c.yaml:2:43: notify.gitlab.api_url: not an http or https URL"},
		{"pull request comment cut by YAML", "notify:\n  github:\n    pull_request: o/r #42\n", `c.yaml:3:19: notify.github.pull_request: "o/r": want owner/repo#N`},
		{"github not a mapping", "notify:\n  github: o/r#1\n", "c.yaml:2:11: notify.github: want a mapping"},
		{"jira lowercase project", "notify:\n  jira: {url: https://j.example.com, project: ops}\n", `c.yaml:2:47: notify.jira.project: project key "ops"`},
		{"jira without url", "notify:\n  jira:\n    project: OPS\n", "c.yaml:3:5: notify.jira.url: missing"},
		{"jira api", "notify:\n  jira: {url: https://j.example.com, project: OPS, api: 4}\n", `c.yaml:2:57: notify.jira.api: "4": want 2`},
		{"jira label", "notify:\n  jira:\n    url: https://j.example.com\n    project: OPS\n    labels: [ok, \"two words\"]\n", `c.yaml:5:18: notify.jira.labels[1]: label "two words"`},
		{"jira labels not a list", "notify:\n  jira: {url: https://j.example.com, project: OPS, labels: x}\n", "c.yaml:2:60: notify.jira.labels: want a list of labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig([]byte(tc.doc), "c.yaml")
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want prefix %q", err, tc.want)
			}
			if ce.Hint == "" {
				t.Errorf("no hint: %v", err)
			}
		})
	}
}
