package notify

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// JiraIssue says where and how a Jira sink files its issue.
type JiraIssue struct {
	// URL is the Jira site's base URL (https://example.atlassian.net, or
	// a Data Center's https://jira.example.com/jira).
	URL string
	// Project is the project key (OPS).
	Project string
	// IssueType is the issue type's name (default "Bug").
	IssueType string
	// Labels are added to chaosgate and chaosgate-<verdict>.
	Labels []string
	// APIVersion is 2 (description in wiki markup; Data Center and
	// Cloud) or 3 (description in the Atlassian Document Format; Cloud).
	APIVersion int
	// User is the Atlassian account's email for Jira Cloud: the token is
	// then an API token sent as Basic email:token. Empty: the token is a
	// Data Center personal access token sent as Bearer.
	User string
}

// DefaultJiraIssueType is the issue type a Jira sink files.
const DefaultJiraIssueType = "Bug"

// jiraDescriptionMax is Jira's limit on a text field, in characters.
const jiraDescriptionMax = 32767

// CheckJiraProject checks a Jira project key: an uppercase letter, then
// uppercase letters, digits or '_', at most 255 characters.
func CheckJiraProject(key string) error {
	if key == "" {
		return errors.New("empty project key: want e.g. OPS")
	}
	if len(key) > 255 {
		return errors.New("project key longer than 255 characters")
	}
	for i, r := range key {
		if !(r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '_')) {
			return fmt.Errorf("project key %q: an uppercase letter, then uppercase letters, digits or '_' (the key Jira shows in issue keys, OPS in OPS-12)", clip(key, 40))
		}
	}
	return nil
}

// CheckJiraLabel checks a label: Jira labels have no white space and are
// at most 255 characters.
func CheckJiraLabel(l string) error {
	if l == "" || len(l) > 255 {
		return errors.New("a label is 1 to 255 characters")
	}
	for _, r := range l {
		if r <= ' ' || r == 0x7f || r == '\u00a0' || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("label %q: Jira labels cannot contain white space", clip(l, 40))
		}
	}
	return nil
}

// NewJira is a sink that files the root-cause report as a Jira issue:
//
//	POST {URL}/rest/api/{2|3}/issue
//	Authorization: Basic base64(user:token)   (Cloud, with User)
//	Authorization: Bearer <token>             (Data Center personal access token)
//	{"fields": {"project": {"key": ...}, "summary": ..., "description": ...,
//	            "issuetype": {"name": ...}, "labels": [...]}}
//
// The description is Jira wiki markup with API 2 and an Atlassian
// Document Format document with API 3. Neither the token nor its Basic
// encoding ever appears in errors or dead letters.
func NewJira(name string, j JiraIssue, token string, o Options) (*HTTPSink, error) {
	base, err := ParseEndpoint(j.URL)
	if err != nil {
		return nil, fmt.Errorf("Jira URL: %w", err)
	}
	if err := CheckJiraProject(j.Project); err != nil {
		return nil, err
	}
	if j.APIVersion != 2 && j.APIVersion != 3 {
		return nil, fmt.Errorf("Jira API version %d: want 2 or 3", j.APIVersion)
	}
	if j.IssueType == "" {
		j.IssueType = DefaultJiraIssueType
	}
	for _, l := range j.Labels {
		if err := CheckJiraLabel(l); err != nil {
			return nil, err
		}
	}
	if err := checkToken(token); err != nil {
		return nil, fmt.Errorf("Jira token: %w", err)
	}
	if strings.ContainsAny(j.User, ":\r\n") {
		return nil, errors.New("Jira user: an email address, without ':' or line breaks")
	}
	u, err := url.Parse(strings.TrimRight(base.String(), "/") + fmt.Sprintf("/rest/api/%d/issue", j.APIVersion))
	if err != nil {
		return nil, errors.New("Jira URL: cannot build the issue URL")
	}
	if name == "" {
		name = "jira"
	}
	issue := j
	issue.Labels = append([]string(nil), j.Labels...)
	s := newHTTPSink(name, u, publicURL(u), func(n Notification) ([]byte, error) { return encodeJira(issue, n) }, o)
	s.header = http.Header{"Accept": {"application/json"}}
	s.credentials = []string{token}
	if j.User != "" {
		basic := base64.StdEncoding.EncodeToString([]byte(j.User + ":" + token))
		s.header.Set("Authorization", "Basic "+basic)
		s.credentials = append(s.credentials, basic)
	} else {
		s.header.Set("Authorization", "Bearer "+token)
	}
	return s, nil
}

type jiraCreate struct {
	Fields jiraFields `json:"fields"`
}

type jiraFields struct {
	Project     jiraKey  `json:"project"`
	Summary     string   `json:"summary"`
	Description any      `json:"description"`
	IssueType   jiraName `json:"issuetype"`
	Labels      []string `json:"labels"`
}

type jiraKey struct {
	Key string `json:"key"`
}

type jiraName struct {
	Name string `json:"name"`
}

// encodeJira is the create-issue body of n.
func encodeJira(j JiraIssue, n Notification) ([]byte, error) {
	labels := []string{"chaosgate"}
	switch n.Verdict {
	case "block", "hold", "promote":
		labels = append(labels, "chaosgate-"+n.Verdict)
	}
	for _, l := range j.Labels {
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	f := jiraFields{Project: jiraKey{j.Project}, Summary: RootCauseSummary(n), IssueType: jiraName{j.IssueType}, Labels: labels}
	doc := rootCauseDoc(n)
	if j.APIVersion == 3 {
		f.Description = renderADF(doc)
	} else {
		f.Description = truncate(renderWiki(doc), jiraDescriptionMax)
	}
	return json.Marshal(jiraCreate{Fields: f})
}
