package web

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaosgate/chaosgate/decision"
)

// LedgerConfig is the ledger: block of chaosgate.yaml: whether and how
// often the embedded evidence ledger is anchored in an outside witness.
//
//	ledger:
//	  anchor: fabric        # or none (the default)
//	  every: 1              # anchor once this many entries are pending
//	  fabric:
//	    peer: localhost:7051
//	    tls_ca_file: .../peers/peer0.org1.example.com/tls/ca.crt
//	    server_name: peer0.org1.example.com
//	    msp_id: Org1MSP
//	    cert_file: .../users/User1@org1.example.com/msp/signcerts/cert.pem
//	    key_file: .../users/User1@org1.example.com/msp/keystore/priv_sk
//	    channel: evidence   # default
//	    chaincode: chaosgate # default
//	    timeout: 30s
type LedgerConfig struct {
	// Anchor is the witness: "" (none) or AnchorFabric.
	Anchor string
	// Every is how many appended entries wait before an anchoring (at
	// least 1; 1 anchors every signed checkpoint).
	Every int
	// Fabric says how to reach the Fabric gateway (with Anchor fabric).
	Fabric FabricConfig
}

// AnchorFabric is the ledger.anchor value that anchors in a Hyperledger
// Fabric channel.
const AnchorFabric = "fabric"

// FabricConfig is the ledger.fabric block: the gateway, its TLS CA and
// server name, the client identity's MSP, certificate and key files, the
// channel and chaincode, and the timeout of each call. Secrets come from
// files only.
type FabricConfig struct {
	Peer, TLSCAFile, ServerName string
	MSPID, CertFile, KeyFile    string
	Channel, Chaincode          string
	Timeout                     time.Duration
}

var (
	ledgerFields  = []string{"anchor", "every", "fabric"}
	fabricFields  = []string{"peer", "tls_ca_file", "server_name", "msp_id", "cert_file", "key_file", "channel", "chaincode", "timeout"}
	anchorValues  = []string{"none", AnchorFabric}
	fabricExample = "fabric: {peer: localhost:7051, tls_ca_file: ca.crt, msp_id: Org1MSP, cert_file: cert.pem, key_file: key.pem}"
)

// loadLedger parses the ledger: block strictly.
func loadLedger(file string, m *yaml.Node, l *LedgerConfig) error {
	l.Every = 1
	var anchorNode, fabricNode *yaml.Node
	err := fields(file, "ledger", m, ledgerFields, func(k string, v *yaml.Node) error {
		p := "ledger." + k
		switch k {
		case "anchor":
			anchorNode = v
			if err := str(file, p, v, &l.Anchor); err != nil {
				return err
			}
			switch l.Anchor {
			case "none":
				l.Anchor = ""
			case AnchorFabric:
			default:
				hint := "fabric, or none"
				if s := decision.Suggest(l.Anchor, anchorValues); s != "" {
					hint = fmt.Sprintf("did you mean %q? %s", s, hint)
				}
				return nodeErr(file, v, p, fmt.Sprintf("unknown anchor %q", l.Anchor), hint)
			}
		case "every":
			n, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil || n < 1 {
				return nodeErr(file, v, p, fmt.Sprintf("want a whole number of entries, at least 1, not %q", v.Value), "every: 1 anchors every signed checkpoint; every: 10 once ten entries are pending")
			}
			l.Every = n
		case "fabric":
			fabricNode = v
			return loadFabric(file, v, &l.Fabric)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case l.Anchor == AnchorFabric && fabricNode == nil:
		return nodeErr(file, anchorNode, "ledger.fabric", "anchor: fabric needs the fabric: block that says how to reach the gateway", fabricExample)
	case l.Anchor != AnchorFabric && fabricNode != nil:
		return nodeErr(file, fabricNode, "ledger.fabric", "a fabric: block without anchor: fabric", "add anchor: fabric to anchor the ledger, or remove the block")
	}
	if l.Anchor == AnchorFabric {
		f := l.Fabric
		for _, req := range []struct{ name, v, hint string }{
			{"peer", f.Peer, "the gateway's host:port, e.g. localhost:7051"},
			{"tls_ca_file", f.TLSCAFile, "the CA of the peer's TLS certificate, e.g. .../peers/peer0.org1.example.com/tls/ca.crt"},
			{"msp_id", f.MSPID, "e.g. Org1MSP"},
			{"cert_file", f.CertFile, "the client certificate, .../msp/signcerts/cert.pem"},
			{"key_file", f.KeyFile, "the client private key, the file in .../msp/keystore/"},
		} {
			if req.v == "" {
				return nodeErr(file, fabricNode, "ledger.fabric."+req.name, "missing", req.hint)
			}
		}
	}
	return nil
}

// loadFabric parses the ledger.fabric block.
func loadFabric(file string, m *yaml.Node, f *FabricConfig) error {
	return fields(file, "ledger.fabric", m, fabricFields, func(k string, v *yaml.Node) error {
		p := "ledger.fabric." + k
		switch k {
		case "peer":
			if err := str(file, p, v, &f.Peer); err != nil {
				return err
			}
			if h, port, err := net.SplitHostPort(f.Peer); err != nil || h == "" || port == "" {
				return nodeErr(file, v, p, fmt.Sprintf("%q is not host:port", f.Peer), "the peer's gateway address, e.g. localhost:7051")
			}
		case "tls_ca_file":
			return str(file, p, v, &f.TLSCAFile)
		case "server_name":
			return str(file, p, v, &f.ServerName)
		case "msp_id":
			return str(file, p, v, &f.MSPID)
		case "cert_file":
			return str(file, p, v, &f.CertFile)
		case "key_file":
			return str(file, p, v, &f.KeyFile)
		case "channel":
			return str(file, p, v, &f.Channel)
		case "chaincode":
			return str(file, p, v, &f.Chaincode)
		case "timeout":
			var s string
			if err := str(file, p, v, &s); err != nil {
				return err
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nodeErr(file, v, p, fmt.Sprintf("%q is not a positive duration", s), "e.g. 30s or 2m")
			}
			f.Timeout = d
		}
		return nil
	})
}
