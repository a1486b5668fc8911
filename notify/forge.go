package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Default API base URLs.
const (
	// DefaultGitLabAPI is gitlab.com's REST API.
	DefaultGitLabAPI = "https://gitlab.com/api/v4"
	// DefaultGitHubAPI is github.com's REST API. GitHub Enterprise Server
	// answers at https://HOST/api/v3.
	DefaultGitHubAPI = "https://api.github.com"
	// GitHubAPIVersion is the REST API version chaosgate's requests are
	// written for (the X-GitHub-Api-Version header).
	GitHubAPIVersion = "2022-11-28"
)

// Body limits of the services, in characters (UTF-16 code units, the
// stricter count).
const (
	githubCommentMax = 65536
	gitlabNoteMax    = 1000000
)

// MergeRequest names a GitLab merge request.
type MergeRequest struct {
	// APIURL is the REST API base URL (…/api/v4) when the merge request
	// was given as a URL ("" otherwise).
	APIURL string
	// Project is the project's numeric id or its full path
	// (group/subgroup/project).
	Project string
	// IID is the merge request's number within its project.
	IID int
}

// String is the merge request as GitLab references it: PROJECT!IID.
func (m MergeRequest) String() string { return m.Project + "!" + strconv.Itoa(m.IID) }

// ParseMergeRequest reads a GitLab merge request: its web URL
// (https://gitlab.example.com/group/project/-/merge_requests/12), or
// PROJECT!IID where PROJECT is a numeric project id or a full project path
// (group/project!12, 4711!12). Errors quote at most a short part of s.
func ParseMergeRequest(s string) (MergeRequest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MergeRequest{}, errors.New("empty merge request: want its URL or PROJECT!IID, e.g. group/project!12")
	}
	if strings.Contains(s, "://") {
		u, err := ParseEndpoint(s)
		if err != nil {
			return MergeRequest{}, fmt.Errorf("merge request URL: %w", err)
		}
		path := u.Path
		var project, rest string
		var ok bool
		if project, rest, ok = strings.Cut(path, "/-/merge_requests/"); !ok {
			if project, rest, ok = strings.Cut(path, "/merge_requests/"); !ok {
				return MergeRequest{}, errors.New("not a merge request URL: want https://HOST/GROUP/PROJECT/-/merge_requests/IID")
			}
		}
		iidText, _, _ := strings.Cut(rest, "/")
		m := MergeRequest{APIURL: u.Scheme + "://" + u.Host + "/api/v4", Project: strings.Trim(project, "/")}
		if err := checkProjectPath(m.Project); err != nil {
			return MergeRequest{}, err
		}
		if m.IID, err = parseNumber(iidText, "merge request IID"); err != nil {
			return MergeRequest{}, err
		}
		return m, nil
	}
	i := strings.LastIndexByte(s, '!')
	if i < 0 {
		return MergeRequest{}, fmt.Errorf("%q: want a merge request URL or PROJECT!IID, e.g. group/project!12", clip(s, 60))
	}
	m := MergeRequest{Project: s[:i]}
	var err error
	if m.IID, err = parseNumber(s[i+1:], "merge request IID"); err != nil {
		return MergeRequest{}, err
	}
	if err := checkProjectPath(m.Project); err != nil {
		return MergeRequest{}, err
	}
	return m, nil
}

// checkProjectPath accepts a numeric project id or a GitLab path: one to
// twenty segments of letters, digits, '_', '-' and '.', none starting
// with '-' or made of dots only.
func checkProjectPath(p string) error {
	if p == "" {
		return errors.New("no project before the merge request IID: want group/project!12 or PROJECT-ID!12")
	}
	segs := strings.Split(p, "/")
	if len(segs) > 20 || len(p) > 1024 {
		return errors.New("project path too long")
	}
	for _, seg := range segs {
		if seg == "" || strings.Trim(seg, ".") == "" || seg[0] == '-' {
			return fmt.Errorf("project path %q: empty or invalid segment", clip(p, 60))
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
				return fmt.Errorf("project path %q: %q is not allowed (letters, digits, '_', '-', '.' and '/')", clip(p, 60), r)
			}
		}
	}
	return nil
}

// parseNumber reads a positive decimal number (digits only).
func parseNumber(s, what string) (int, error) {
	if s == "" || len(s) > 10 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s %q: want a positive number", what, clip(s, 20))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1<<31-1 {
		return 0, fmt.Errorf("%s %q: want a positive number", what, clip(s, 20))
	}
	return n, nil
}

// PullRequest names a GitHub pull request.
type PullRequest struct {
	// APIURL is the REST API base URL when the pull request was given as
	// a URL: https://api.github.com for github.com, https://HOST/api/v3
	// for GitHub Enterprise Server ("" otherwise).
	APIURL string
	// Owner is the account or organization, Repo the repository.
	Owner, Repo string
	// Number is the pull request's number (#N).
	Number int
}

// String is the pull request as GitHub references it: owner/repo#N.
func (p PullRequest) String() string { return p.Owner + "/" + p.Repo + "#" + strconv.Itoa(p.Number) }

// ParsePullRequest reads a GitHub pull request: owner/repo#N or its web
// URL (https://github.com/owner/repo/pull/N, or the same on a GitHub
// Enterprise Server host).
func ParsePullRequest(s string) (PullRequest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PullRequest{}, errors.New("empty pull request: want owner/repo#N or its URL")
	}
	var p PullRequest
	var num string
	if strings.Contains(s, "://") {
		u, err := ParseEndpoint(s)
		if err != nil {
			return PullRequest{}, fmt.Errorf("pull request URL: %w", err)
		}
		segs := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(segs) < 4 || segs[2] != "pull" {
			return PullRequest{}, errors.New("not a pull request URL: want https://github.com/OWNER/REPO/pull/N")
		}
		p.Owner, p.Repo, num = segs[0], segs[1], segs[3]
		switch h := strings.ToLower(u.Hostname()); h {
		case "github.com", "www.github.com":
			p.APIURL = DefaultGitHubAPI
		default:
			p.APIURL = u.Scheme + "://" + u.Host + "/api/v3"
		}
	} else {
		repo, n, ok := strings.Cut(s, "#")
		owner, name, ok2 := strings.Cut(repo, "/")
		if !ok || !ok2 {
			return PullRequest{}, fmt.Errorf("%q: want owner/repo#N, e.g. chaosgate/chaosgate#42", clip(s, 60))
		}
		p.Owner, p.Repo, num = owner, name, n
	}
	if err := checkGitHubName(p.Owner, "owner", 39, false); err != nil {
		return PullRequest{}, err
	}
	if err := checkGitHubName(p.Repo, "repository", 100, true); err != nil {
		return PullRequest{}, err
	}
	var err error
	if p.Number, err = parseNumber(num, "pull request number"); err != nil {
		return PullRequest{}, err
	}
	return p, nil
}

// checkGitHubName accepts an account or repository name: letters,
// digits, '-', '_' (and '.' in a repository), at most n characters.
func checkGitHubName(s, what string, n int, dots bool) error {
	if s == "" || len(s) > n || s == "." || s == ".." {
		return fmt.Errorf("%s %q: empty, too long or invalid", what, clip(s, 60))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || dots && r == '.') {
			return fmt.Errorf("%s %q: %q is not allowed", what, clip(s, 60), r)
		}
	}
	return nil
}

// NewGitLab is a sink that posts the root-cause report (RootCause) as a
// note on a GitLab merge request:
//
//	POST {apiURL}/projects/{id or URL-encoded path}/merge_requests/{iid}/notes
//	PRIVATE-TOKEN: <token>   (bearer: Authorization: Bearer <token>)
//	{"body": "<markdown>"}
//
// apiURL is the REST API base (…/api/v4). The token never appears in
// errors or dead letters. Retries and dead letters are those of every
// HTTPSink.
func NewGitLab(name, apiURL string, mr MergeRequest, token string, bearer bool, o Options) (*HTTPSink, error) {
	base, err := ParseEndpoint(apiURL)
	if err != nil {
		return nil, fmt.Errorf("GitLab API URL: %w", err)
	}
	if err := checkProjectPath(mr.Project); err != nil {
		return nil, err
	}
	if mr.IID <= 0 {
		return nil, errors.New("GitLab merge request: no IID")
	}
	if err := checkToken(token); err != nil {
		return nil, fmt.Errorf("GitLab token: %w", err)
	}
	u, err := url.Parse(strings.TrimRight(base.String(), "/") + "/projects/" + url.PathEscape(mr.Project) + "/merge_requests/" + strconv.Itoa(mr.IID) + "/notes")
	if err != nil {
		return nil, errors.New("GitLab API URL: cannot build the notes URL")
	}
	if name == "" {
		name = "gitlab"
	}
	s := newHTTPSink(name, u, publicURL(u), func(n Notification) ([]byte, error) {
		return json.Marshal(map[string]string{"body": truncate(RootCause(n), gitlabNoteMax)})
	}, o)
	s.header = http.Header{"Accept": {"application/json"}}
	if bearer {
		s.header.Set("Authorization", "Bearer "+token)
	} else {
		s.header.Set("Private-Token", token)
	}
	s.credentials = []string{token}
	return s, nil
}

// NewGitHub is a sink that posts the root-cause report (RootCause) as a
// comment on a GitHub pull request (the issues API: every pull request is
// an issue):
//
//	POST {apiURL}/repos/{owner}/{repo}/issues/{number}/comments
//	Authorization: Bearer <token>
//	Accept: application/vnd.github+json
//	X-GitHub-Api-Version: 2022-11-28
//	{"body": "<markdown>"}
//
// apiURL is https://api.github.com, or https://HOST/api/v3 for GitHub
// Enterprise Server. A 403 that is a rate limit (Retry-After, or
// X-RateLimit-Remaining: 0) is waited out like a 429.
func NewGitHub(name, apiURL string, pr PullRequest, token string, o Options) (*HTTPSink, error) {
	base, err := ParseEndpoint(apiURL)
	if err != nil {
		return nil, fmt.Errorf("GitHub API URL: %w", err)
	}
	if err := checkGitHubName(pr.Owner, "owner", 39, false); err != nil {
		return nil, err
	}
	if err := checkGitHubName(pr.Repo, "repository", 100, true); err != nil {
		return nil, err
	}
	if pr.Number <= 0 {
		return nil, errors.New("GitHub pull request: no number")
	}
	if err := checkToken(token); err != nil {
		return nil, fmt.Errorf("GitHub token: %w", err)
	}
	u, err := url.Parse(strings.TrimRight(base.String(), "/") + "/repos/" + pr.Owner + "/" + pr.Repo + "/issues/" + strconv.Itoa(pr.Number) + "/comments")
	if err != nil {
		return nil, errors.New("GitHub API URL: cannot build the comments URL")
	}
	if name == "" {
		name = "github"
	}
	s := newHTTPSink(name, u, publicURL(u), func(n Notification) ([]byte, error) {
		return json.Marshal(map[string]string{"body": truncate(RootCause(n), githubCommentMax)})
	}, o)
	s.header = http.Header{"Accept": {"application/vnd.github+json"}, "X-Github-Api-Version": {GitHubAPIVersion},
		"Authorization": {"Bearer " + token}}
	s.credentials = []string{token}
	s.rateLimited = githubRateLimit
	return s, nil
}

// githubRateLimit reads GitHub's rate-limit answer: a 403 with
// Retry-After, or with X-RateLimit-Remaining: 0 and the reset time
// (X-RateLimit-Reset, Unix seconds).
func githubRateLimit(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp.StatusCode != http.StatusForbidden {
		return 0, false
	}
	if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
		return d, true
	}
	if resp.Header.Get("X-Ratelimit-Remaining") == "0" {
		if sec, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			return max(0, time.Unix(sec, 0).Sub(now)), true
		}
		return -1, true
	}
	return 0, false
}

// checkToken refuses what cannot be sent as a header value.
func checkToken(t string) error {
	if t == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return errors.New("contains white space or characters a header cannot carry")
		}
	}
	return nil
}
