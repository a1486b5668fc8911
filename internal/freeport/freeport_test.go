package freeport

import (
	"net"
	"testing"
)

func TestAddrsAreDistinctBindableAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addrs, err := Addrs(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if seen[a] {
				t.Fatalf("%s handed out twice", a)
			}
			seen[a] = true
			l, err := net.Listen("tcp", a)
			if err != nil {
				t.Fatalf("%s is not free: %v", a, err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			if port < Low || port >= High {
				t.Fatalf("port %d outside [%d,%d)", port, Low, High)
			}
		}
	}
}

func TestPortsMatchAddrs(t *testing.T) {
	ports, err := Ports(4)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p < Low || p >= High {
			t.Fatalf("port %d outside [%d,%d)", p, Low, High)
		}
	}
}
