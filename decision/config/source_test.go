package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/internal/consultest"
)

func TestParseSource(t *testing.T) {
	for in, want := range map[string]Source{
		"decision.yaml":                          {File: "decision.yaml"},
		"/etc/chaosgate/decision.yaml":           {File: "/etc/chaosgate/decision.yaml"},
		"consul://127.0.0.1:8500/chaosgate/dec":  {ConsulAddr: "127.0.0.1:8500", ConsulScheme: "http", ConsulKey: "chaosgate/dec"},
		"consul://consul.svc/a":                  {ConsulAddr: "consul.svc:8500", ConsulScheme: "http", ConsulKey: "a"},
		"consul+https://10.0.0.1:8501/x/y/z.yml": {ConsulAddr: "10.0.0.1:8501", ConsulScheme: "https", ConsulKey: "x/y/z.yml"},
	} {
		got, err := ParseSource(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"":                                 "no decision config source",
		"etcd://127.0.0.1:2379/k":          `unknown scheme "etcd"`,
		"consul://127.0.0.1:8500":          "no key after the address",
		"consul://127.0.0.1:8500/":         "no key after the address",
		"consul://127.0.0.1:8500/dir/":     "no key after the address",
		"consul://u:p@127.0.0.1:8500/k":    "want consul://HOST:PORT/KEY",
		"consul:///k":                      "want consul://HOST:PORT/KEY",
		"consul://127.0.0.1:8500/k?dc=eu1": "want consul://HOST:PORT/KEY",
	} {
		if _, err := ParseSource(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want an error with %q", in, err, msg)
		}
	}
	if s := (Source{ConsulKey: "chaosgate/decision"}).String(); s != "consul:chaosgate/decision" {
		t.Fatalf("String %q", s)
	}
}

// FuzzParseSource: any text parses to a source or a clear error, never a
// panic; a Consul source always has an address and a key.
func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"decision.yaml", "consul://127.0.0.1:8500/k", "consul+https://h/x/y", "consul://", "consul://[::1]:8500/k", "x://y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSource(in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if s.IsConsul() && (s.ConsulAddr == "" || s.ConsulKey == "" || s.ConsulScheme == "") {
			t.Fatalf("%q: incomplete Consul source %+v", in, s)
		}
		if !s.IsConsul() && s.File != in {
			t.Fatalf("%q: file %q", in, s.File)
		}
	})
}

// A Consul source is read at open (a missing key or a bad document is an
// error naming the key, with a hint) and then followed: a new weight
// reaches the store, a bad edit keeps the last good config.
func TestOpenSourceFromConsul(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client(t)
	const key = "chaosgate/decision.yaml"
	src, err := ParseSource("consul://" + agent.Addr() + "/" + key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, _, err := OpenSource(ctx, src, nil, nil); err == nil || !strings.Contains(err.Error(), "consul kv put "+key) {
		t.Fatalf("missing key: %v", err)
	}
	consultest.Put(t, client, key, badConfig)
	var ce Errors
	if _, err := LoadSource(ctx, src); !errors.As(err, &ce) || !strings.Contains(err.Error(), "consul:"+key+":5:") {
		t.Fatalf("bad document: %v", err)
	}
	consultest.Put(t, client, key, configWithWeight(4))
	store, done, err := OpenSource(ctx, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if errorWeight(store) != 4 || store.Snapshot().Source != "consul:"+key {
		t.Fatalf("opened with weight %g from %q", errorWeight(store), store.Snapshot().Source)
	}
	consultest.Put(t, client, key, configWithWeight(7))
	waitFor(t, store, "new weight", func() bool { return errorWeight(store) == 7 })
	consultest.Put(t, client, key, badConfig)
	waitFor(t, store, "bad edit rejected", func() bool { return store.LastError() != nil })
	if errorWeight(store) != 7 {
		t.Fatal("a bad edit replaced the last good config")
	}
	cancel()
	<-done

	// The ACL token comes from a file; an unreadable one is an error.
	src.ConsulTokenFile = filepath.Join(t.TempDir(), "missing-token")
	if _, err := LoadSource(context.Background(), src); err == nil || !strings.Contains(err.Error(), "consul token file") {
		t.Fatalf("missing token file: %v", err)
	}
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("anonymous-is-allowed-in-dev\n"), 0o600)
	src.ConsulTokenFile = tok
	if _, err := LoadSource(context.Background(), src); err == nil || strings.Contains(err.Error(), "anonymous-is-allowed") {
		// -dev agents run without ACLs: the token is accepted and the
		// last document (bad) is read; the token never shows in errors.
		t.Fatalf("with a token file: %v", err)
	}
}
