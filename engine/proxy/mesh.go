package proxy

import "fmt"

// MeshNode is one node of a cluster as the mesh needs it: its id and the
// addresses it listens on for client HTTP and for raft.
type MeshNode struct {
	ID   string
	HTTP string
	Raft string
}

// Mesh holds the proxy addresses of a cluster's edges.
type Mesh struct {
	// Client maps a node id to the address clients dial to reach it
	// (proxy "cluster/client->ID").
	Client map[string]string
	// Raft maps from → to → the raft address node from dials for node to
	// (proxy "cluster/from->to"; a node dials itself directly).
	Raft map[string]map[string]string
	// HTTP maps from → to → the HTTP address node from dials to forward
	// requests to node to (proxy "cluster/from->to/http").
	HTTP map[string]map[string]string
}

// HTTPEdgeName is the proxy name of the HTTP-forwarding edge from→to.
func HTTPEdgeName(cluster, from, to string) string { return EdgeName(cluster, from, to) + "/http" }

// Mesh creates (idempotently) a proxy for every client→node edge and, for
// every ordered pair of nodes, one raft and one HTTP-forwarding proxy, and
// returns the addresses to configure. Create it before the nodes start so
// that every edge goes through a proxy from the first dial.
func (s *Set) Mesh(cluster string, nodes []MeshNode) (Mesh, error) {
	m := Mesh{Client: map[string]string{}, Raft: map[string]map[string]string{}, HTTP: map[string]map[string]string{}}
	for _, to := range nodes {
		if to.ID == "" || to.HTTP == "" || to.Raft == "" {
			return Mesh{}, fmt.Errorf("mesh: node %q needs an id, an HTTP and a raft address", to.ID)
		}
		a, err := s.Add(EdgeName(cluster, "client", to.ID), to.HTTP)
		if err != nil {
			return Mesh{}, err
		}
		m.Client[to.ID] = a
	}
	for _, from := range nodes {
		m.Raft[from.ID] = map[string]string{from.ID: from.Raft}
		m.HTTP[from.ID] = map[string]string{from.ID: from.HTTP}
		for _, to := range nodes {
			if to.ID == from.ID {
				continue
			}
			r, err := s.Add(EdgeName(cluster, from.ID, to.ID), to.Raft)
			if err != nil {
				return Mesh{}, err
			}
			h, err := s.Add(HTTPEdgeName(cluster, from.ID, to.ID), to.HTTP)
			if err != nil {
				return Mesh{}, err
			}
			m.Raft[from.ID][to.ID], m.HTTP[from.ID][to.ID] = r, h
		}
	}
	return m, nil
}
