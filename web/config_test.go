package web

import (
	"errors"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/notify"
)

func TestLoadConfigGood(t *testing.T) {
	c, err := LoadConfig([]byte(`listen: 127.0.0.1:9000
data_dir: /var/lib/x
tokens_file: tokens.yaml
decision: decision.yaml
target: k8s
experiments: exp
schedules:
  - {name: nightly, cron: "0 3 * * *", scenario: default-gameday, revision: "sha256:ab"}
  - name: hourly
    cron: "@every 1h"
    scenario: default-gameday-quick
`), "chaosgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.DataDir != "/var/lib/x" || c.Target != "k8s" || c.TokensFile != "tokens.yaml" ||
		c.Decision != "decision.yaml" || c.Experiments != "exp" || len(c.Schedules) != 2 || c.Schedules[1].Cron != "@every 1h" ||
		c.Schedules[0].Revision != "sha256:ab" || c.Schedules[0].Source != "config" {
		t.Fatalf("config: %+v", c)
	}
	d, err := LoadConfig(nil, "empty.yaml")
	if err != nil || d.Listen != "127.0.0.1:8080" || d.DataDir != ".chaosgate" || d.Target != "local" || d.TLSCert != "" || d.SecureCookie {
		t.Fatalf("defaults: %+v %v", d, err)
	}
	tls, err := LoadConfig([]byte("tls_cert: c.pem\ntls_key: k.pem\nsecure_cookie: true\n"), "tls.yaml")
	if err != nil || tls.TLSCert != "c.pem" || tls.TLSKey != "k.pem" || !tls.SecureCookie {
		t.Fatalf("tls: %+v %v", tls, err)
	}
	for _, bad := range []string{"tls_cert: c.pem\n", "secure_cookie: yes please\n"} {
		if _, err := LoadConfig([]byte(bad), "bad.yaml"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLoadConfigErrorsAtLineCol(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "listen: :1\nlisten_addr: x\n", "c.yaml:2:1: listen_addr: unknown field"},
		{"duplicate", "listen: :1\nlisten: :2\n", "c.yaml:2:1: listen: duplicate field"},
		{"bad target", "target: mars\n", `c.yaml:1:9: target: unknown target "mars"`},
		{"wrong type", "listen: [a]\n", "c.yaml:1:9: listen: want a string"},
		{"bad listen", "data_dir: d\nlisten: 8080\n", `c.yaml:2:9: listen: listen address "8080" is not host:port`},
		{"bad cron", "schedules:\n  - {name: a, cron: \"61 * * * *\", scenario: x}\n", "c.yaml:2:21: schedules[0].cron: bad cron spec"},
		{"missing scenario", "schedules:\n  - name: a\n    cron: \"@daily\"\n", "c.yaml:2:5: schedules[0]: name, cron and scenario are required"},
		{"duplicate schedule", "schedules:\n  - {name: a, cron: \"@daily\", scenario: x}\n  - {name: a, cron: \"@daily\", scenario: y}\n", `c.yaml:3:5: schedules[1].name: duplicate schedule name "a"`},
		{"unknown schedule field", "schedules:\n  - {name: a, cron: \"@daily\", scenario: x, when: now}\n", "c.yaml:2:44: schedules[0].when: unknown field"},
		{"not a mapping", "- a\n- b\n", "c.yaml:1:1: the document must be a mapping"},
		{"syntax", "listen: :1\n  data_dir: x\n", "c.yaml:2:1: not valid YAML"},
		{"schedules not a list", "schedules: nightly\n", "c.yaml:1:12: schedules: want a list"},
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

func TestParseTokens(t *testing.T) {
	ts, err := ParseTokens([]byte(`tokens:
  - {name: ci, role: viewer, token: "0123456789abcdef-ci"}
  - {name: ops, role: operator, token: "0123456789abcdef-ops"}
`), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if tk, ok := ts.Lookup("0123456789abcdef-ops"); !ok || tk.Name != "ops" || tk.Role != RoleOperator {
		t.Fatalf("lookup ops: %+v %v", tk, ok)
	}
	for _, bad := range []string{"", "0123456789abcdef-op", "0123456789abcdef-opsx", "0123456789ABCDEF-ops"} {
		if _, ok := ts.Lookup(bad); ok {
			t.Errorf("secret %q accepted", bad)
		}
	}
	for _, tc := range []struct{ doc, want string }{
		{"tokens:\n  - {name: a, role: admin, token: \"0123456789abcdef\"}\n", `t.yaml:2:21: tokens[0].role: unknown role "admin"`},
		{"tokens:\n  - {name: a, role: viewer, token: short}\n", "t.yaml:2:36: tokens[0].token: token must be at least 16"},
		{"tokens:\n  - {name: a, role: viewer, token: \"0123456789abcdef\"}\n  - {name: b, role: viewer, token: \"0123456789abcdef\"}\n", "t.yaml:3:5: tokens[1]: duplicate token"},
		{"tokens: []\n", "t.yaml:1:9: tokens: want a non-empty list"},
		{"", "t.yaml:1:1: no tokens"},
		{"tokens:\n  - {name: a, role: viewer}\n", "t.yaml:2:5: tokens[0]: name, role and token are required"},
	} {
		_, err := ParseTokens([]byte(tc.doc), "t.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.doc, err, tc.want)
		}
	}
}

func TestRolesAllow(t *testing.T) {
	for _, tc := range []struct {
		r, need Role
		ok      bool
	}{
		{RoleViewer, RoleViewer, true}, {RoleViewer, RoleOperator, false}, {RoleViewer, RoleAuditor, false},
		{RoleOperator, RoleViewer, true}, {RoleOperator, RoleOperator, true}, {RoleOperator, RoleAuditor, false},
		{RoleAuditor, RoleViewer, true}, {RoleAuditor, RoleOperator, false}, {RoleAuditor, RoleAuditor, true},
	} {
		if got := tc.r.allows(tc.need); got != tc.ok {
			t.Errorf("%s allows %s = %v, want %v", tc.r, tc.need, got, tc.ok)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{"", "listen: :1\n", "schedules:\n  - {name: a, cron: \"@daily\", scenario: x}\n", "target: k8s\ndata_dir: d\n",
		"schedules: [{name: a, cron: '* * * * *', scenario: b, revision: r}]", "a: [", "listen: &a x\ndata_dir: *a\n", "? [a]\n: b\n",
		"notify:\n  webhook: [http://h/x]\n  secret_file: s\n  on: block,hold\n  dashboard_url: https://d\n", "notify: {slack_url_file: f, on: all}\n",
		"notify:\n  gitlab: {merge_request: g/p!1, auth: bearer}\n  github: {pull_request: \"o/r#2\"}\n  jira: {url: https://j, project: OPS, api: 3, labels: [a]}\n",
		"notify:\n  gitlab: {merge_request: ci, api_url: https://g/api/v4}\n  github: {pull_request: https://github.com/o/r/pull/3}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := LoadConfig(data, "f.yaml")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Line < 1 || ce.Col < 1 || ce.File != "f.yaml" {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		if c.Listen == "" || c.DataDir == "" || (c.Target != "local" && c.Target != "k8s") {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		for _, s := range c.Schedules {
			if s.check() != nil {
				t.Fatalf("accepted an invalid schedule: %+v", s)
			}
		}
		if _, err := notify.ParseWhen(c.Notify.On); err != nil {
			t.Fatalf("accepted notify.on %q: %v", c.Notify.On, err)
		}
		for _, u := range c.Notify.Webhooks {
			if _, err := notify.ParseEndpoint(u); err != nil {
				t.Fatalf("accepted notify.webhook %q: %v", u, err)
			}
		}
		n := c.Notify
		if mr := n.GitLab.MergeRequest; n.GitLab != (notify.GitLabConfig{}) && !strings.EqualFold(strings.TrimSpace(mr), notify.FromCI) {
			if _, err := notify.ParseMergeRequest(mr); err != nil {
				t.Fatalf("accepted notify.gitlab.merge_request %q: %v", mr, err)
			}
		}
		if pr := n.GitHub.PullRequest; n.GitHub != (notify.GitHubConfig{}) && !strings.EqualFold(strings.TrimSpace(pr), notify.FromCI) {
			if _, err := notify.ParsePullRequest(pr); err != nil {
				t.Fatalf("accepted notify.github.pull_request %q: %v", pr, err)
			}
		}
		if j := n.Jira; j.Project != "" || j.URL != "" {
			if notify.CheckJiraProject(j.Project) != nil {
				t.Fatalf("accepted notify.jira.project %q", j.Project)
			}
			if _, err := notify.ParseEndpoint(j.URL); err != nil {
				t.Fatalf("accepted notify.jira.url %q", j.URL)
			}
			if _, err := notify.ParseJiraAPI(j.API, true); err != nil {
				t.Fatalf("accepted notify.jira.api %q", j.API)
			}
			for _, l := range j.Labels {
				if notify.CheckJiraLabel(l) != nil {
					t.Fatalf("accepted notify.jira.labels %q", l)
				}
			}
		}
	})
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{"tokens:\n  - {name: a, role: viewer, token: \"0123456789abcdef\"}\n", "tokens: []", "", "tokens:\n  - name: x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseTokens(data, "t.yaml")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Line < 1 || ce.Col < 1 {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		if ts.Len() == 0 {
			t.Fatal("accepted an empty token set")
		}
		for _, tk := range ts.list {
			if tk.Role < RoleViewer || tk.Role > RoleAuditor || tk.Name == "" {
				t.Fatalf("accepted a bad token: %+v", tk)
			}
		}
	})
}
