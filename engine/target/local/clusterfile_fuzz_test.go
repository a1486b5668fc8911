package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadClusterFile reads any bytes as cluster.json: a cluster with
// nodes that each have an id and an HTTP address, or an error that names
// the file.
func FuzzReadClusterFile(f *testing.F) {
	f.Add([]byte(`{"nodes":[{"id":"n1","http":"127.0.0.1:7001","grpc":"127.0.0.1:7101","raft":"127.0.0.1:7201","pid":42}]}`))
	f.Add([]byte(`{"nodes":[]}`))
	f.Add([]byte(`{"nodes":[{"id":"n1"}]}`))
	f.Add([]byte(`{"nodes":null,"extra":1}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"nodes":[{"id":"n1","http":"x","pid":-1e99}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "cluster.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cf, err := ReadClusterFile(p)
		if err != nil {
			if !strings.Contains(err.Error(), "cluster file") {
				t.Fatalf("error does not say what it read: %v", err)
			}
			return
		}
		if len(cf.Nodes) == 0 {
			t.Fatal("a cluster without nodes")
		}
		for _, n := range cf.Nodes {
			if n.ID == "" || n.HTTP == "" {
				t.Fatalf("node without id or http: %+v", n)
			}
		}
	})
}
