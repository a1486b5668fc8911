// Package buildcache finds the servers that scripts/go-proxy-build.sh
// builds from the Go module proxy once per machine (Consul, kube-apiserver,
// kubelet, nats-server, VictoriaLogs) for the tests that start them.
package buildcache

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the cache directory of the built binaries:
// $CHAOSGATE_CACHE/bin, else $XDG_CACHE_HOME/chaosgate/bin, else
// ~/.cache/chaosgate/bin — the same rule as scripts/go-proxy-build.sh.
func Dir() string {
	if d := os.Getenv("CHAOSGATE_CACHE"); d != "" {
		return filepath.Join(d, "bin")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "chaosgate", "bin")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "chaosgate", "bin")
	}
	return filepath.Join(home, ".cache", "chaosgate", "bin")
}

// Binary returns the cached binary name (e.g. victoria-logs-1.52.2), or
// the path in the environment variable env when it is set. A missing
// binary skips t outside CI and fails it with CI=true, naming the script
// that builds it.
func Binary(t testing.TB, env, name, script string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p := filepath.Join(Dir(), name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing at %s (make test builds it with %s; or set %s)", name, p, script, env)
		}
		t.Skipf("%s missing at %s: run %s or set %s", name, p, script, env)
	}
	return p
}
