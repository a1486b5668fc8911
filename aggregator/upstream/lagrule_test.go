package upstream

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLagAlertRuleWithPromtool runs the unit tests of the Prometheus rules
// (deploy/prometheus/rules_test.yaml: the lag alert fires after 2 minutes
// above 10000 messages, not for a shorter burst or a lag under it; the
// breaker alert) with promtool, and checks that the rules use the metric
// names this package exports.
func TestLagAlertRuleWithPromtool(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	rules, err := os.ReadFile(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	m := newUpMetrics()
	ch := make(chan *prometheus.Desc, 64)
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	(&stateCollector{}).Describe(ch)
	close(ch)
	for d := range ch {
		s := d.String()
		if i := strings.Index(s, `fqName: "`); i >= 0 {
			s = s[i+len(`fqName: "`):]
			names[s[:strings.IndexByte(s, '"')]] = true
		}
	}
	for _, want := range []string{"chaosgate_aggregator_upstream_consumer_lag_messages", "chaosgate_aggregator_upstream_breaker_state"} {
		if !names[want] {
			t.Errorf("the package exports no %s", want)
		}
		if !strings.Contains(string(rules), want) {
			t.Errorf("rules.yaml does not use %s", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found (CI: make test installs Debian's prometheus package, which has it)")
		}
		t.Skip("promtool not found (hint: apt-get install -y prometheus)")
	}
	cmd := exec.Command(promtool, "test", "rules", "rules_test.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
