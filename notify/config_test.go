package notify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSecret(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestBuild(t *testing.T) {
	data := t.TempDir()
	if d, err := Build(Config{}, data, "v1", env(nil)); d != nil || err != nil {
		t.Fatalf("nothing configured: %v %v", d, err)
	}
	secret := writeSecret(t, "  "+testSecret+"\n", 0o600)
	slackFile := writeSecret(t, "https://hooks.slack.com/services/T0/B0/S3CRETtoken\n", 0o400)
	d, err := Build(Config{Webhooks: []string{"http://a.example/h", "https://b.example/h"}, SecretFile: secret, SlackURLFile: slackFile,
		On: "all", DashboardURL: "https://cg.example.com"}, data, "v1", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range d.Sinks {
		names = append(names, s.Name())
	}
	if strings.Join(names, " ") != "webhook#1 webhook#2 slack" || d.When != WhenAll || d.Dashboard != "https://cg.example.com" {
		t.Fatalf("dispatcher: %v %+v", names, d)
	}
	if ws := d.Sinks[0].(*HTTPSink); string(ws.secret) != testSecret || ws.userAgent != "chaosgate/v1" || ws.dead.Path() != filepath.Join(data, "notify", "dead-letter.jsonl") {
		t.Errorf("webhook sink: secret trimmed %v, UA %q, dead letters %q", string(ws.secret) == testSecret, ws.userAgent, ws.dead.Path())
	}
	if ep := d.Sinks[2].(*HTTPSink).Endpoint(); ep != "https://hooks.slack.com/…" {
		t.Errorf("slack endpoint %q", ep)
	}
	// Secrets from the environment.
	d, err = Build(Config{Webhooks: []string{"http://a.example/h"}}, data, "", env(map[string]string{EnvSecret: testSecret, EnvSlackURL: "https://hooks.slack.com/services/X"}))
	if err != nil || len(d.Sinks) != 2 || d.When != DefaultWhen {
		t.Fatalf("from the environment: %+v %v", d, err)
	}
	// A Slack URL alone is enough.
	if d, err := Build(Config{}, data, "", env(map[string]string{EnvSlackURL: "https://hooks.slack.com/services/X"})); err != nil || len(d.Sinks) != 1 {
		t.Fatalf("Slack alone: %+v %v", d, err)
	}
}

func TestBuildErrorsNeverShowSecrets(t *testing.T) {
	open := writeSecret(t, testSecret, 0o644)
	short := writeSecret(t, "S3CRETshort", 0o600)
	empty := writeSecret(t, "\n", 0o600)
	badSlack := writeSecret(t, "hooks.slack.com/services/S3CRET", 0o600)
	for _, tc := range []struct {
		name string
		c    Config
		env  map[string]string
		want string
	}{
		{"no secret", Config{Webhooks: []string{"http://h/x"}}, nil, "needs a secret to sign with"},
		{"secret readable by others", Config{Webhooks: []string{"http://h/x"}, SecretFile: open}, nil, "mode 0644"},
		{"short secret", Config{Webhooks: []string{"http://h/x"}, SecretFile: short}, nil, "at least 16 bytes"},
		{"empty secret", Config{Webhooks: []string{"http://h/x"}, SecretFile: empty}, nil, "is empty"},
		{"missing secret file", Config{Webhooks: []string{"http://h/x"}, SecretFile: "/nonexistent/secret"}, nil, "no such file"},
		{"secret without webhook", Config{SecretFile: short}, nil, "without a notify webhook"},
		{"bad webhook", Config{Webhooks: []string{"h/x"}}, map[string]string{EnvSecret: testSecret}, "webhook: webhook URL: not an http or https URL"},
		{"bad Slack URL", Config{SlackURLFile: badSlack}, nil, "slack webhook URL: not an http or https URL"},
		{"bad Slack URL from the environment", Config{}, map[string]string{EnvSlackURL: "http://[S3CRET"}, "slack webhook URL"},
		{"bad filter", Config{On: "sometimes"}, nil, `unknown verdict "sometimes"`},
		{"bad dashboard", Config{DashboardURL: "cg.example.com"}, nil, "dashboard URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.c, t.TempDir(), "", env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			for _, secret := range []string{testSecret, "S3CRET"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
		})
	}
}

// TestBuiltDispatcherDelivers: the configuration path end to end, against
// a local receiver.
func TestBuiltDispatcherDelivers(t *testing.T) {
	rc := newReceiver(t, nil)
	d, err := Build(Config{Webhooks: []string{rc.url("/h")}, SecretFile: writeSecret(t, testSecret, 0o600)}, t.TempDir(), "v9", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := d.Notify(context.Background(), sampleRun("block"))
	if len(got) != 1 || got[0].String() != "notified webhook (1 attempt)" {
		t.Fatalf("deliveries %v", got)
	}
	checkWebhookRequest(t, rc.requests()[0], testSecret)
}
