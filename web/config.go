package web

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	cron "github.com/netresearch/go-cron"
	"go.yaml.in/yaml/v3"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/notify"
)

// Config is chaosgate.yaml: how `chaosgate serve` listens, where it keeps
// its state and what it runs on a schedule.
type Config struct {
	// Listen is the HTTP listen address (default "127.0.0.1:8080": this
	// machine only; name an address, or ":8080", to serve others).
	Listen string
	// TLSCert and TLSKey are a PEM certificate (chain) and its private key:
	// with both, serve speaks HTTPS only.
	TLSCert, TLSKey string
	// SecureCookie marks the login cookie Secure on plain HTTP too: for a
	// server behind a proxy that terminates TLS.
	SecureCookie bool
	// DataDir holds the journal, ledger, keys, run records and schedules.
	DataDir string
	// TokensFile lists the bearer tokens and their roles (default
	// DATA/tokens.yaml, created with fresh tokens on first start).
	TokensFile string
	// Decision is the decision matrix source, hot-reloaded: a file, or
	// consul://HOST:PORT/KEY (empty: defaults).
	Decision string
	// ConsulTokenFile holds the Consul ACL token for a consul:// decision
	// source (empty: CONSUL_HTTP_TOKEN, or none).
	ConsulTokenFile string
	// Target is where runs execute: local or k8s.
	Target string
	// Experiments is a directory of experiment files runs may name.
	Experiments string
	// Schedules are cron game days defined in the file (read-only through
	// the API; schedules created through the API are kept in the data dir).
	Schedules []Schedule
	// Notify says who is told when one of serve's runs ends.
	Notify NotifyConfig
	// Ledger says whether the evidence ledger is anchored in an outside
	// witness (ledger: block; see LedgerConfig).
	Ledger LedgerConfig
}

// NotifyConfig is the notify: block (see package notify): generic
// webhooks signed with the secret in SecretFile, a Slack incoming webhook
// whose URL is in SlackURLFile, the verdicts that notify, the dashboard's
// base URL for the run link, and where the root-cause report of a run
// that did not promote goes: a GitLab merge-request note (gitlab:), a
// GitHub pull-request comment (github:), a Jira issue (jira:).
type NotifyConfig struct {
	Webhooks     []string
	SecretFile   string
	SlackURLFile string
	On           string
	DashboardURL string
	GitLab       notify.GitLabConfig
	GitHub       notify.GitHubConfig
	Jira         notify.JiraConfig
}

// Schedule is one cron game day.
type Schedule struct {
	Name     string    `json:"name"`
	Cron     string    `json:"cron"`
	Scenario string    `json:"scenario"`
	Revision string    `json:"revision,omitempty"`
	Source   string    `json:"source"` // config | api
	Created  time.Time `json:"created,omitzero"`
}

// ConfigError is one problem in a configuration or tokens file, at
// file:line:col, with a hint.
type ConfigError struct {
	File      string
	Line, Col int
	Path      string
	Msg       string
	Hint      string
}

// Error implements error.
func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d", e.File, e.Line, e.Col)
	if e.Path != "" {
		fmt.Fprintf(&b, ": %s", e.Path)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (hint: %s)", e.Hint)
	}
	return b.String()
}

func nodeErr(file string, n *yaml.Node, path, msg, hint string) error {
	e := &ConfigError{File: file, Path: path, Msg: msg, Hint: hint, Line: 1, Col: 1}
	if n != nil && n.Line > 0 {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

// parseDoc decodes data into a YAML node tree and returns its top mapping
// (nil for an empty document).
func parseDoc(data []byte, file string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		e := &ConfigError{File: file, Line: 1, Col: 1, Msg: "not valid YAML: " + err.Error(), Hint: "check indentation and quoting"}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			// yaml errors read "yaml: line N: ..."; keep the line.
			var l int
			if _, serr := fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: "), "line %d:", &l); serr == nil && l > 0 {
				e.Line = l
			}
		}
		return nil, e
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, nodeErr(file, top, "", "the document must be a mapping", "write key: value pairs at the top level")
	}
	return top, nil
}

// fields walks a mapping node, calling f for every key, and rejects
// duplicate and unknown keys.
func fields(file, path string, m *yaml.Node, known []string, f func(key string, v *yaml.Node) error) error {
	if m.Kind != yaml.MappingNode {
		return nodeErr(file, m, path, "want a mapping", "")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode {
			return nodeErr(file, k, path, "keys must be plain strings", "")
		}
		ok := false
		for _, n := range known {
			ok = ok || n == k.Value
		}
		if !ok {
			hint := "known fields: " + strings.Join(known, ", ")
			if s := decision.Suggest(k.Value, known); s != "" {
				hint = fmt.Sprintf("did you mean %q? %s", s, hint)
			}
			return nodeErr(file, k, p, "unknown field", hint)
		}
		if seen[k.Value] {
			return nodeErr(file, k, p, "duplicate field", "")
		}
		seen[k.Value] = true
		if err := f(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

func str(file, path string, v *yaml.Node, dst *string) error {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!int" && v.Tag != "!!float") {
		return nodeErr(file, v, path, "want a string", "quote the value")
	}
	*dst = v.Value
	return nil
}

var configFields = []string{"listen", "tls_cert", "tls_key", "secure_cookie", "data_dir", "tokens_file", "decision", "consul_token_file", "target", "experiments", "schedules", "notify", "ledger"}

// DefaultListen is where serve listens unless told otherwise: this machine
// only.
const DefaultListen = "127.0.0.1:8080"

// LoadConfig parses chaosgate.yaml strictly: unknown or duplicate fields,
// wrong types, bad cron specs and bad targets are errors at file:line:col.
// An empty document is the defaults.
func LoadConfig(data []byte, file string) (*Config, error) {
	c := &Config{Listen: DefaultListen, DataDir: ".chaosgate", Target: "local", Ledger: LedgerConfig{Every: 1}}
	top, err := parseDoc(data, file)
	if err != nil || top == nil {
		return c, err
	}
	seen := map[string]bool{}
	err = fields(file, "", top, configFields, func(k string, v *yaml.Node) error {
		switch k {
		case "listen":
			if err := str(file, k, v, &c.Listen); err != nil {
				return err
			}
			if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
				return nodeErr(file, v, k, fmt.Sprintf("listen address %q is not host:port", c.Listen), `":8080" or "127.0.0.1:8080"`)
			}
		case "tls_cert":
			return str(file, k, v, &c.TLSCert)
		case "tls_key":
			return str(file, k, v, &c.TLSKey)
		case "secure_cookie":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				return nodeErr(file, v, k, "want true or false", "secure_cookie: true")
			}
			c.SecureCookie = strings.EqualFold(v.Value, "true")
		case "data_dir":
			return str(file, k, v, &c.DataDir)
		case "tokens_file":
			return str(file, k, v, &c.TokensFile)
		case "decision":
			return str(file, k, v, &c.Decision)
		case "consul_token_file":
			return str(file, k, v, &c.ConsulTokenFile)
		case "experiments":
			return str(file, k, v, &c.Experiments)
		case "target":
			if err := str(file, k, v, &c.Target); err != nil {
				return err
			}
			if c.Target != "local" && c.Target != "k8s" {
				return nodeErr(file, v, k, fmt.Sprintf("unknown target %q", c.Target), "local or k8s")
			}
		case "schedules":
			if v.Kind != yaml.SequenceNode {
				return nodeErr(file, v, k, "want a list of schedules", "- {name: nightly, cron: \"0 3 * * *\", scenario: default-gameday}")
			}
			for i, item := range v.Content {
				p := fmt.Sprintf("schedules[%d]", i)
				s := Schedule{Source: "config"}
				if err := fields(file, p, item, []string{"name", "cron", "scenario", "revision"}, func(k string, v *yaml.Node) error {
					switch k {
					case "name":
						return str(file, p+".name", v, &s.Name)
					case "cron":
						if err := str(file, p+".cron", v, &s.Cron); err != nil {
							return err
						}
						if _, err := cron.ParseStandard(s.Cron); err != nil {
							return nodeErr(file, v, p+".cron", "bad cron spec: "+err.Error(), `five fields "m h dom mon dow", or @daily, @every 1h`)
						}
					case "scenario":
						return str(file, p+".scenario", v, &s.Scenario)
					case "revision":
						return str(file, p+".revision", v, &s.Revision)
					}
					return nil
				}); err != nil {
					return err
				}
				if err := s.check(); err != nil {
					return nodeErr(file, item, p, err.Error(), "every schedule needs name, cron and scenario")
				}
				if seen[s.Name] {
					return nodeErr(file, item, p+".name", fmt.Sprintf("duplicate schedule name %q", s.Name), "names must be unique")
				}
				seen[s.Name] = true
				c.Schedules = append(c.Schedules, s)
			}
		case "notify":
			return loadNotify(file, v, &c.Notify)
		case "ledger":
			return loadLedger(file, v, &c.Ledger)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.Listen == "" || c.DataDir == "" {
		return nil, nodeErr(file, top, "", "listen and data_dir must not be empty", "omit them for the defaults")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, nodeErr(file, top, "", "tls_cert and tls_key go together", "give both, or neither for plain HTTP")
	}
	return c, nil
}

// loadNotify parses the notify: block: webhook (a URL or a list of URLs),
// secret_file, slack_url_file, on, dashboard_url, gitlab, github and jira.
func loadNotify(file string, m *yaml.Node, n *NotifyConfig) error {
	var secretNode *yaml.Node
	err := fields(file, "notify", m, []string{"webhook", "secret_file", "slack_url_file", "on", "dashboard_url", "gitlab", "github", "jira"}, func(k string, v *yaml.Node) error {
		p := "notify." + k
		switch k {
		case "gitlab":
			return loadNotifyGitLab(file, v, &n.GitLab)
		case "github":
			return loadNotifyGitHub(file, v, &n.GitHub)
		case "jira":
			return loadNotifyJira(file, v, &n.Jira)
		case "webhook":
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				items = v.Content
				if len(items) == 0 {
					return nodeErr(file, v, p, "want a URL or a non-empty list of URLs", "webhook: https://hooks.example.com/chaosgate")
				}
			}
			for i, item := range items {
				ip := p
				if v.Kind == yaml.SequenceNode {
					ip = fmt.Sprintf("%s[%d]", p, i)
				}
				var u string
				if err := str(file, ip, item, &u); err != nil {
					return err
				}
				if _, err := notify.ParseEndpoint(u); err != nil {
					return nodeErr(file, item, ip, err.Error(), "an absolute http or https URL")
				}
				n.Webhooks = append(n.Webhooks, u)
			}
		case "secret_file":
			secretNode = v
			return str(file, p, v, &n.SecretFile)
		case "slack_url_file":
			return str(file, p, v, &n.SlackURLFile)
		case "on":
			if err := str(file, p, v, &n.On); err != nil {
				return err
			}
			if _, err := notify.ParseWhen(n.On); err != nil {
				return nodeErr(file, v, p, err.Error(), "on: block,hold")
			}
		case "dashboard_url":
			if err := str(file, p, v, &n.DashboardURL); err != nil {
				return err
			}
			if _, err := notify.ParseEndpoint(n.DashboardURL); err != nil {
				return nodeErr(file, v, p, err.Error(), "the URL people open the dashboard at, e.g. https://chaosgate.example.com")
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n.SecretFile != "" && len(n.Webhooks) == 0 {
		return nodeErr(file, secretNode, "notify.secret_file", "a secret file without a webhook", "the secret signs webhook requests: add webhook: URL")
	}
	return nil
}

// loadNotifyGitLab parses notify.gitlab: merge_request (URL, PROJECT!IID
// or ci), api_url, token_file, auth.
func loadNotifyGitLab(file string, m *yaml.Node, g *notify.GitLabConfig) error {
	if m.Kind != yaml.MappingNode {
		return nodeErr(file, m, "notify.gitlab", "want a mapping", "gitlab: {merge_request: group/project!12, token_file: /etc/chaosgate/gitlab-token}")
	}
	err := fields(file, "notify.gitlab", m, []string{"merge_request", "api_url", "token_file", "auth"}, func(k string, v *yaml.Node) error {
		p := "notify.gitlab." + k
		switch k {
		case "merge_request":
			if err := str(file, p, v, &g.MergeRequest); err != nil {
				return err
			}
			if !strings.EqualFold(strings.TrimSpace(g.MergeRequest), notify.FromCI) {
				if _, err := notify.ParseMergeRequest(g.MergeRequest); err != nil {
					return nodeErr(file, v, p, err.Error(), "the merge request's URL, group/project!12, or ci in a GitLab CI merge-request pipeline")
				}
			}
		case "api_url":
			return urlField(file, p, v, &g.APIURL, "the REST API base, e.g. https://gitlab.example.com/api/v4")
		case "token_file":
			return str(file, p, v, &g.TokenFile)
		case "auth":
			if err := str(file, p, v, &g.Auth); err != nil {
				return err
			}
			if a := strings.ToLower(g.Auth); a != "private-token" && a != "bearer" {
				return nodeErr(file, v, p, fmt.Sprintf("unknown auth %q", g.Auth), "private-token (PRIVATE-TOKEN header) or bearer (Authorization: Bearer)")
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if g.MergeRequest == "" {
		return nodeErr(file, m, "notify.gitlab.merge_request", "missing", "merge_request: https://gitlab.example.com/group/project/-/merge_requests/12 (or group/project!12, or ci)")
	}
	return nil
}

// loadNotifyGitHub parses notify.github: pull_request (owner/repo#N, URL
// or ci), api_url, token_file.
func loadNotifyGitHub(file string, m *yaml.Node, g *notify.GitHubConfig) error {
	if m.Kind != yaml.MappingNode {
		return nodeErr(file, m, "notify.github", "want a mapping", `github: {pull_request: "owner/repo#42", token_file: /etc/chaosgate/github-token}`)
	}
	err := fields(file, "notify.github", m, []string{"pull_request", "api_url", "token_file"}, func(k string, v *yaml.Node) error {
		p := "notify.github." + k
		switch k {
		case "pull_request":
			if err := str(file, p, v, &g.PullRequest); err != nil {
				return err
			}
			if !strings.EqualFold(strings.TrimSpace(g.PullRequest), notify.FromCI) {
				if _, err := notify.ParsePullRequest(g.PullRequest); err != nil {
					return nodeErr(file, v, p, err.Error(), `"owner/repo#42" (quoted: # starts a YAML comment), the pull request's URL, or ci in GitHub Actions`)
				}
			}
		case "api_url":
			return urlField(file, p, v, &g.APIURL, "https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server")
		case "token_file":
			return str(file, p, v, &g.TokenFile)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if g.PullRequest == "" {
		return nodeErr(file, m, "notify.github.pull_request", "missing", `pull_request: "owner/repo#42" (or its URL, or ci)`)
	}
	return nil
}

// loadNotifyJira parses notify.jira: url, project, user, token_file, api,
// issue_type, labels.
func loadNotifyJira(file string, m *yaml.Node, j *notify.JiraConfig) error {
	if m.Kind != yaml.MappingNode {
		return nodeErr(file, m, "notify.jira", "want a mapping", "jira: {url: https://example.atlassian.net, project: OPS, user: bot@example.com, token_file: /etc/chaosgate/jira-token}")
	}
	err := fields(file, "notify.jira", m, []string{"url", "project", "user", "token_file", "api", "issue_type", "labels"}, func(k string, v *yaml.Node) error {
		p := "notify.jira." + k
		switch k {
		case "url":
			return urlField(file, p, v, &j.URL, "the Jira site, e.g. https://example.atlassian.net")
		case "project":
			if err := str(file, p, v, &j.Project); err != nil {
				return err
			}
			if err := notify.CheckJiraProject(j.Project); err != nil {
				return nodeErr(file, v, p, err.Error(), "the project key, e.g. OPS")
			}
		case "user":
			return str(file, p, v, &j.User)
		case "token_file":
			return str(file, p, v, &j.TokenFile)
		case "api":
			if err := str(file, p, v, &j.API); err != nil {
				return err
			}
			if _, err := notify.ParseJiraAPI(j.API, true); err != nil {
				return nodeErr(file, v, p, err.Error(), "api: 3 (Jira Cloud) or api: 2 (Data Center)")
			}
		case "issue_type":
			return str(file, p, v, &j.IssueType)
		case "labels":
			if v.Kind != yaml.SequenceNode {
				return nodeErr(file, v, p, "want a list of labels", "labels: [chaosgate-gate, team-payments]")
			}
			for i, item := range v.Content {
				ip := fmt.Sprintf("%s[%d]", p, i)
				var l string
				if err := str(file, ip, item, &l); err != nil {
					return err
				}
				if err := notify.CheckJiraLabel(l); err != nil {
					return nodeErr(file, item, ip, err.Error(), "labels are single words, e.g. team-payments")
				}
				j.Labels = append(j.Labels, l)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case j.Project == "":
		return nodeErr(file, m, "notify.jira.project", "missing", "project: OPS (the project key)")
	case j.URL == "":
		return nodeErr(file, m, "notify.jira.url", "missing", "url: https://example.atlassian.net")
	}
	return nil
}

// urlField reads an absolute http or https URL.
func urlField(file, path string, v *yaml.Node, dst *string, hint string) error {
	if err := str(file, path, v, dst); err != nil {
		return err
	}
	if _, err := notify.ParseEndpoint(*dst); err != nil {
		return nodeErr(file, v, path, err.Error(), hint)
	}
	return nil
}

// LoadConfigFile reads and parses a chaosgate.yaml file.
func LoadConfigFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w (hint: pass -c chaosgate.yaml or omit -c for the defaults)", err)
	}
	return LoadConfig(data, path)
}

// check validates a schedule's fields.
func (s Schedule) check() error {
	switch {
	case s.Name == "" || s.Cron == "" || s.Scenario == "":
		return errors.New("name, cron and scenario are required")
	case !validScheduleName(s.Name):
		return fmt.Errorf("name %q: use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters", s.Name)
	}
	if _, err := cron.ParseStandard(s.Cron); err != nil {
		return fmt.Errorf("bad cron spec %q: %v", s.Cron, err)
	}
	return nil
}

// validScheduleName reports whether a schedule name is one path segment
// that needs no escaping anywhere it appears (URLs, forms, file names):
// [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
func validScheduleName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i, c := range n {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}
