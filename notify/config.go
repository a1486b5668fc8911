package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Environment variables that hold secrets when no file is named.
const (
	// EnvSecret is the webhooks' HMAC secret.
	EnvSecret = "CHAOSGATE_NOTIFY_SECRET"
	// EnvSlackURL is the Slack incoming-webhook URL.
	EnvSlackURL = "CHAOSGATE_NOTIFY_SLACK_URL"
	// EnvGitLabToken is the GitLab access token (the variable glab reads).
	EnvGitLabToken = "GITLAB_TOKEN"
	// EnvGitHubToken is the GitHub token (GitHub Actions:
	// env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}).
	EnvGitHubToken = "GITHUB_TOKEN"
	// EnvJiraToken is the Jira API token (Cloud) or personal access token
	// (Data Center).
	EnvJiraToken = "CHAOSGATE_NOTIFY_JIRA_TOKEN"
)

// FromCI is the merge request or pull request value that means "the one
// this CI pipeline runs for" (see GitLabConfig and GitHubConfig).
const FromCI = "ci"

// Config says who is told about runs: the command flags --notify-* and
// the notify: block of chaosgate.yaml.
type Config struct {
	// Webhooks are generic webhook URLs (signed with the secret).
	Webhooks []string
	// SecretFile holds the HMAC secret (else EnvSecret).
	SecretFile string
	// SlackURLFile holds a Slack incoming-webhook URL (else EnvSlackURL).
	SlackURLFile string
	// On is the verdict filter ParseWhen reads ("": block,hold).
	On string
	// DashboardURL is the dashboard's base URL for the run link.
	DashboardURL string
	// GitLab posts the root-cause report as a merge-request note.
	GitLab GitLabConfig
	// GitHub posts the root-cause report as a pull-request comment.
	GitHub GitHubConfig
	// Jira files the root-cause report as an issue.
	Jira JiraConfig
}

// GitLabConfig is the GitLab merge-request note: --notify-gitlab-* and
// notify.gitlab in chaosgate.yaml. Zero: no note.
type GitLabConfig struct {
	// MergeRequest is the merge request: its URL, PROJECT!IID (a
	// numeric project id or the project's path), or FromCI for the merge
	// request of the GitLab CI pipeline (CI_MERGE_REQUEST_IID, in the
	// project CI_MERGE_REQUEST_PROJECT_ID, else CI_PROJECT_ID; in a
	// pipeline that is not for a merge request no note is posted).
	MergeRequest string
	// APIURL is the REST API's base URL, …/api/v4. Default: from the
	// merge request's URL, else CI_API_V4_URL, else DefaultGitLabAPI.
	APIURL string
	// TokenFile holds the access token (mode 0600; else EnvGitLabToken).
	TokenFile string
	// Auth is how the token is sent: "private-token" (the PRIVATE-TOKEN
	// header; personal, project and group access tokens; the default) or
	// "bearer" (Authorization: Bearer; also OAuth tokens).
	Auth string
}

// GitHubConfig is the GitHub pull-request comment: --notify-github-* and
// notify.github in chaosgate.yaml. Zero: no comment.
type GitHubConfig struct {
	// PullRequest is owner/repo#N, the pull request's URL, or FromCI for
	// the pull request of the GitHub Actions run (GITHUB_REPOSITORY; the
	// number from GITHUB_REF refs/pull/N/merge, else the event payload's
	// pull_request.number in GITHUB_EVENT_PATH; in a run that is not for
	// a pull request no comment is posted).
	PullRequest string
	// APIURL is the REST API's base URL. Default: from the pull request's
	// URL, else GITHUB_API_URL, else DefaultGitHubAPI.
	APIURL string
	// TokenFile holds the token (mode 0600; else EnvGitHubToken).
	TokenFile string
}

// JiraConfig is the Jira issue: --notify-jira-* and notify.jira in
// chaosgate.yaml. Zero: no issue.
type JiraConfig struct {
	// URL is the Jira site's base URL.
	URL string
	// Project is the project key.
	Project string
	// User is the Atlassian account email (Jira Cloud: Basic auth with an
	// API token); empty: the token is a Data Center personal access token
	// (Bearer).
	User string
	// TokenFile holds the token (mode 0600; else EnvJiraToken).
	TokenFile string
	// API is "2" (wiki-markup description) or "3" (Atlassian Document
	// Format). Default: 3 with User (Cloud), 2 without (Data Center).
	API string
	// IssueType is the issue type's name (default "Bug").
	IssueType string
	// Labels are added to the labels chaosgate and chaosgate-<verdict>.
	Labels []string
}

// SettingError is a notify setting that is wrong. Setting names it as the
// notify: block of chaosgate.yaml does ("gitlab.token_file"); commands
// name their flag instead.
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Err.Error() }

func (e *SettingError) Unwrap() error { return e.Err }

func settingErr(setting string, err error) error { return &SettingError{Setting: setting, Err: err} }

// maxSecretFile bounds a secret file's size.
const maxSecretFile = 64 << 10

// Build checks c and returns its dispatcher, dead-lettering under
// dataDir; nil when no sink is configured. A sink taken from CI (FromCI)
// outside a merge-request or pull-request run is left out: the
// dispatcher's Notes say so (it may then have no sink). getenv reads the environment
// (nil: os.Getenv). Errors name files and variables, never their content.
func Build(c Config, dataDir, version string, getenv func(string) string) (*Dispatcher, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	when, err := ParseWhen(c.On)
	if err != nil {
		return nil, fmt.Errorf("notify on: %w", err)
	}
	if c.DashboardURL != "" {
		if _, err := ParseEndpoint(c.DashboardURL); err != nil {
			return nil, fmt.Errorf("dashboard URL: %w", err)
		}
	}
	if c.SecretFile != "" && len(c.Webhooks) == 0 {
		return nil, errors.New("a notify secret file without a notify webhook: the secret signs webhook requests")
	}
	opt := Options{DeadLetters: NewDeadLetters(dataDir), Version: version}
	d := &Dispatcher{When: when, Dashboard: strings.TrimSpace(c.DashboardURL)}
	if len(c.Webhooks) > 0 {
		var secret []byte
		switch {
		case c.SecretFile != "":
			if secret, err = readSecretFile(c.SecretFile); err != nil {
				return nil, fmt.Errorf("notify secret file: %w", err)
			}
		case getenv(EnvSecret) != "":
			secret = []byte(strings.TrimSpace(getenv(EnvSecret)))
		default:
			return nil, fmt.Errorf("a notify webhook needs a secret to sign with: a secret file (mode 0600) or %s", EnvSecret)
		}
		for i, raw := range c.Webhooks {
			name := "webhook"
			if len(c.Webhooks) > 1 {
				name = fmt.Sprintf("webhook#%d", i+1)
			}
			s, err := NewWebhook(name, raw, secret, opt)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			d.Sinks = append(d.Sinks, s)
		}
	}
	var slackURL string
	switch {
	case c.SlackURLFile != "":
		b, err := readSecretFile(c.SlackURLFile)
		if err != nil {
			return nil, fmt.Errorf("notify Slack URL file: %w", err)
		}
		slackURL = string(b)
	case getenv(EnvSlackURL) != "":
		slackURL = strings.TrimSpace(getenv(EnvSlackURL))
	}
	if slackURL != "" {
		s, err := NewSlack("slack", slackURL, opt)
		if err != nil {
			// The URL is a secret: the error says what is wrong, not what
			// it is.
			return nil, err
		}
		d.Sinks = append(d.Sinks, s)
	}
	for _, add := range []func(*Dispatcher, Config, Options, func(string) string) error{addGitLab, addGitHub, addJira} {
		if err := add(d, c, opt, getenv); err != nil {
			return nil, err
		}
	}
	if len(d.Sinks) == 0 && len(d.Notes) == 0 {
		return nil, nil
	}
	return d, nil
}

// token reads a sink's token from its file, else from the environment.
func token(file, fileSetting, env string, getenv func(string) string) (string, error) {
	if file != "" {
		b, err := readSecretFile(file)
		if err != nil {
			return "", settingErr(fileSetting, err)
		}
		return string(b), nil
	}
	if t := strings.TrimSpace(getenv(env)); t != "" {
		return t, nil
	}
	return "", settingErr(fileSetting, fmt.Errorf("no token: give a token file (mode 0600) or set %s", env))
}

// addGitLab adds the GitLab merge-request note of c, if any.
func addGitLab(d *Dispatcher, c Config, o Options, getenv func(string) string) error {
	g := c.GitLab
	if g == (GitLabConfig{}) {
		return nil
	}
	if g.MergeRequest == "" {
		return settingErr("gitlab.merge_request", errors.New("the GitLab settings need a merge request: its URL, PROJECT!IID or ci"))
	}
	var bearer bool
	switch strings.ToLower(g.Auth) {
	case "", "private-token":
	case "bearer":
		bearer = true
	default:
		return settingErr("gitlab.auth", fmt.Errorf("%q: want private-token or bearer", clip(g.Auth, 40)))
	}
	var mr MergeRequest
	api := g.APIURL
	if strings.EqualFold(strings.TrimSpace(g.MergeRequest), FromCI) {
		iid := strings.TrimSpace(getenv("CI_MERGE_REQUEST_IID"))
		if iid == "" {
			d.Notes = append(d.Notes, "no GitLab note: this pipeline is not for a merge request (CI_MERGE_REQUEST_IID is not set)")
			return nil
		}
		project := strings.TrimSpace(getenv("CI_MERGE_REQUEST_PROJECT_ID"))
		if project == "" {
			project = strings.TrimSpace(getenv("CI_PROJECT_ID"))
		}
		var err error
		if mr, err = ParseMergeRequest(project + "!" + iid); err != nil {
			return settingErr("gitlab.merge_request", fmt.Errorf("from CI_MERGE_REQUEST_PROJECT_ID/CI_PROJECT_ID and CI_MERGE_REQUEST_IID: %w", err))
		}
		if api == "" {
			api = strings.TrimSpace(getenv("CI_API_V4_URL"))
		}
	} else {
		var err error
		if mr, err = ParseMergeRequest(g.MergeRequest); err != nil {
			return settingErr("gitlab.merge_request", err)
		}
		if api == "" {
			api = mr.APIURL
		}
	}
	if api == "" {
		api = DefaultGitLabAPI
	}
	if _, err := ParseEndpoint(api); err != nil {
		return settingErr("gitlab.api_url", err)
	}
	tok, err := token(g.TokenFile, "gitlab.token_file", EnvGitLabToken, getenv)
	if err != nil {
		return err
	}
	s, err := NewGitLab("gitlab", api, mr, tok, bearer, o)
	if err != nil {
		return settingErr("gitlab", err)
	}
	d.Sinks = append(d.Sinks, s)
	return nil
}

// addGitHub adds the GitHub pull-request comment of c, if any.
func addGitHub(d *Dispatcher, c Config, o Options, getenv func(string) string) error {
	g := c.GitHub
	if g == (GitHubConfig{}) {
		return nil
	}
	if g.PullRequest == "" {
		return settingErr("github.pull_request", errors.New("the GitHub settings need a pull request: owner/repo#N, its URL or ci"))
	}
	var pr PullRequest
	api := g.APIURL
	if strings.EqualFold(strings.TrimSpace(g.PullRequest), FromCI) {
		repo := strings.TrimSpace(getenv("GITHUB_REPOSITORY"))
		if repo == "" {
			d.Notes = append(d.Notes, "no GitHub comment: not in a GitHub Actions run (GITHUB_REPOSITORY is not set)")
			return nil
		}
		num, note := prNumberFromActions(getenv)
		if num == "" {
			d.Notes = append(d.Notes, "no GitHub comment: "+note)
			return nil
		}
		var err error
		if pr, err = ParsePullRequest(repo + "#" + num); err != nil {
			return settingErr("github.pull_request", fmt.Errorf("from GITHUB_REPOSITORY and the pull request number: %w", err))
		}
		if api == "" {
			api = strings.TrimSpace(getenv("GITHUB_API_URL"))
		}
	} else {
		var err error
		if pr, err = ParsePullRequest(g.PullRequest); err != nil {
			return settingErr("github.pull_request", err)
		}
		if api == "" {
			api = pr.APIURL
		}
		if api == "" {
			api = strings.TrimSpace(getenv("GITHUB_API_URL"))
		}
	}
	if api == "" {
		api = DefaultGitHubAPI
	}
	if _, err := ParseEndpoint(api); err != nil {
		return settingErr("github.api_url", err)
	}
	tok, err := token(g.TokenFile, "github.token_file", EnvGitHubToken, getenv)
	if err != nil {
		return err
	}
	s, err := NewGitHub("github", api, pr, tok, o)
	if err != nil {
		return settingErr("github", err)
	}
	d.Sinks = append(d.Sinks, s)
	return nil
}

// prNumberFromActions finds the pull request of a GitHub Actions run:
// GITHUB_REF refs/pull/N/merge (pull_request events), else the event
// payload's pull_request.number (pull_request_target, reviews). note says
// why there is none.
func prNumberFromActions(getenv func(string) string) (num, note string) {
	ref := strings.TrimSpace(getenv("GITHUB_REF"))
	if rest, ok := strings.CutPrefix(ref, "refs/pull/"); ok {
		if n, tail, ok := strings.Cut(rest, "/"); ok && (tail == "merge" || tail == "head") {
			return n, ""
		}
	}
	path := strings.TrimSpace(getenv("GITHUB_EVENT_PATH"))
	if path == "" {
		return "", "this run is not for a pull request (GITHUB_REF " + strconv.Quote(clip(ref, 60)) + ", no GITHUB_EVENT_PATH)"
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "reading GITHUB_EVENT_PATH: " + err.Error()
	}
	defer f.Close()
	n, err := PullRequestOfEvent(f)
	if err != nil {
		return "", "GITHUB_EVENT_PATH: " + err.Error()
	}
	if n == 0 {
		return "", "this run is not for a pull request (GITHUB_REF " + strconv.Quote(clip(ref, 60)) + ", no pull_request in the event)"
	}
	return strconv.Itoa(n), ""
}

// PullRequestOfEvent reads a GitHub Actions event payload (the file at
// GITHUB_EVENT_PATH, at most 32 MiB) and returns its pull_request.number;
// 0 when the event has no pull request.
func PullRequestOfEvent(r io.Reader) (int, error) {
	var ev struct {
		PullRequest *struct {
			Number int `json:"number"`
		} `json:"pull_request"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 32<<20)).Decode(&ev); err != nil {
		return 0, fmt.Errorf("not a JSON event payload: %w", err)
	}
	if ev.PullRequest == nil || ev.PullRequest.Number <= 0 || ev.PullRequest.Number > 1<<31-1 {
		return 0, nil
	}
	return ev.PullRequest.Number, nil
}

// addJira adds the Jira issue of c, if any.
func addJira(d *Dispatcher, c Config, o Options, getenv func(string) string) error {
	j := c.Jira
	if j.URL == "" && j.Project == "" && j.User == "" && j.TokenFile == "" && j.API == "" && j.IssueType == "" && len(j.Labels) == 0 {
		return nil
	}
	if j.Project == "" {
		return settingErr("jira.project", errors.New("the Jira settings need a project key, e.g. OPS"))
	}
	if err := CheckJiraProject(j.Project); err != nil {
		return settingErr("jira.project", err)
	}
	if j.URL == "" {
		return settingErr("jira.url", errors.New("the Jira settings need the site's URL, e.g. https://example.atlassian.net"))
	}
	if _, err := ParseEndpoint(j.URL); err != nil {
		return settingErr("jira.url", err)
	}
	version, err := ParseJiraAPI(j.API, j.User != "")
	if err != nil {
		return settingErr("jira.api", err)
	}
	for _, l := range j.Labels {
		if err := CheckJiraLabel(l); err != nil {
			return settingErr("jira.labels", err)
		}
	}
	tok, err := token(j.TokenFile, "jira.token_file", EnvJiraToken, getenv)
	if err != nil {
		return err
	}
	s, err := NewJira("jira", JiraIssue{URL: j.URL, Project: j.Project, IssueType: j.IssueType, Labels: j.Labels, APIVersion: version, User: j.User}, tok, o)
	if err != nil {
		return settingErr("jira", err)
	}
	d.Sinks = append(d.Sinks, s)
	return nil
}

// ParseJiraAPI reads the Jira REST API version, "2" or "3"; "" is 3 for
// Jira Cloud (a user email is set) and 2 for Data Center.
func ParseJiraAPI(s string, cloud bool) (int, error) {
	switch strings.TrimSpace(s) {
	case "":
		if cloud {
			return 3, nil
		}
		return 2, nil
	case "2":
		return 2, nil
	case "3":
		return 3, nil
	}
	return 0, fmt.Errorf("%q: want 2 (wiki-markup description; Data Center and Cloud) or 3 (Atlassian Document Format; Cloud)", clip(s, 20))
}

// readSecretFile reads a secret from a regular file that group and others
// may not read, trimmed of surrounding white space.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: a secret must not be readable or writable by group or others (hint: chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d KiB: not a secret", path, maxSecretFile>>10)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}
