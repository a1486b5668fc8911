package notify

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Environment variables that hold secrets when no file is named.
const (
	// EnvSecret is the webhooks' HMAC secret.
	EnvSecret = "CHAOSGATE_NOTIFY_SECRET"
	// EnvSlackURL is the Slack incoming-webhook URL.
	EnvSlackURL = "CHAOSGATE_NOTIFY_SLACK_URL"
)

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
}

// maxSecretFile bounds a secret file's size.
const maxSecretFile = 64 << 10

// Build checks c and returns its dispatcher, dead-lettering under
// dataDir; nil when no sink is configured. getenv reads the environment
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
	if len(d.Sinks) == 0 {
		return nil, nil
	}
	return d, nil
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
