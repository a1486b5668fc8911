// Package brokertest starts real brokers for tests (internal/brokers) and
// stops them when the test ends. A broker that is not installed skips the
// test outside CI and fails it in CI (CI=true): make test installs it.
package brokertest

import (
	"errors"
	"os"
	"testing"

	"github.com/chaosgate/chaosgate/internal/brokers"
)

// NATS starts a JetStream nats-server for the test.
func NATS(t testing.TB) *brokers.Server {
	t.Helper()
	s, err := brokers.StartNATS(t.TempDir())
	return started(t, "nats-server", s, err)
}

// Mosquitto starts a persistent mosquitto for the test.
func Mosquitto(t testing.TB) *brokers.Server {
	t.Helper()
	s, err := brokers.StartMosquitto(t.TempDir())
	return started(t, "mosquitto", s, err)
}

func started(t testing.TB, name string, s *brokers.Server, err error) *brokers.Server {
	t.Helper()
	if errors.Is(err, brokers.ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI: make test installs it with scripts/install-test-deps.sh)", err)
		}
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Kill() })
	return s
}
