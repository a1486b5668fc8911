package web

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const ledgerGood = `ledger:
  anchor: fabric
  every: 3
  fabric:
    peer: localhost:7051
    tls_ca_file: tls/ca.crt
    server_name: peer0.org1.example.com
    msp_id: Org1MSP
    cert_file: msp/signcerts/cert.pem
    key_file: msp/keystore/priv_sk
    channel: audit
    chaincode: cg
    timeout: 45s
`

func TestLoadConfigLedger(t *testing.T) {
	c, err := LoadConfig([]byte(ledgerGood), "chaosgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := c.Ledger.Fabric
	if c.Ledger.Anchor != AnchorFabric || c.Ledger.Every != 3 || f.Peer != "localhost:7051" || f.TLSCAFile != "tls/ca.crt" || f.ServerName != "peer0.org1.example.com" ||
		f.MSPID != "Org1MSP" || f.CertFile != "msp/signcerts/cert.pem" || f.KeyFile != "msp/keystore/priv_sk" || f.Channel != "audit" || f.Chaincode != "cg" || f.Timeout != 45*time.Second {
		t.Fatalf("ledger block: %+v", c.Ledger)
	}
	for _, doc := range []string{"", "listen: :1\n", "ledger:\n  anchor: none\n"} {
		c, err := LoadConfig([]byte(doc), "d.yaml")
		if err != nil || c.Ledger.Anchor != "" || c.Ledger.Every != 1 {
			t.Fatalf("%q: %+v %v", doc, c.Ledger, err)
		}
	}
}

func TestLoadConfigLedgerErrorsAtLineCol(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"misspelled anchor value", "ledger:\n  anchor: fabirc\n", `c.yaml:2:11: ledger.anchor: unknown anchor "fabirc" (hint: did you mean "fabric"? fabric, or none)`},
		{"misspelled field", "ledger:\n  anchor: none\n  evry: 2\n", `c.yaml:3:3: ledger.evry: unknown field (hint: did you mean "every"? known fields: anchor, every, fabric)`},
		{"misspelled top-level field", "ledgr: {}\n", `c.yaml:1:1: ledgr: unknown field (hint: did you mean "ledger"?`},
		{"every zero", "ledger:\n  every: 0\n", `c.yaml:2:10: ledger.every: want a whole number of entries, at least 1, not "0"`},
		{"every text", "ledger:\n  every: often\n", `c.yaml:2:10: ledger.every: want a whole number`},
		{"no fabric block", "ledger:\n  anchor: fabric\n", "c.yaml:2:11: ledger.fabric: anchor: fabric needs the fabric: block"},
		{"fabric without anchor", "ledger:\n  fabric: {peer: a:1}\n", "c.yaml:2:11: ledger.fabric: a fabric: block without anchor: fabric"},
		{"missing key file", strings.Replace(ledgerGood, "    key_file: msp/keystore/priv_sk\n", "", 1), "c.yaml:5:5: ledger.fabric.key_file: missing (hint: the client private key"},
		{"missing peer", strings.Replace(ledgerGood, "    peer: localhost:7051\n", "", 1), "c.yaml:5:5: ledger.fabric.peer: missing"},
		{"bad peer", strings.Replace(ledgerGood, "localhost:7051", "localhost", 1), `c.yaml:5:11: ledger.fabric.peer: "localhost" is not host:port`},
		{"misspelled fabric field", strings.Replace(ledgerGood, "msp_id:", "mspid:", 1), `c.yaml:8:5: ledger.fabric.mspid: unknown field (hint: did you mean "msp_id"?`},
		{"bad timeout", strings.Replace(ledgerGood, "45s", "soon", 1), `c.yaml:13:14: ledger.fabric.timeout: "soon" is not a positive duration`},
		{"ledger not a mapping", "ledger: fabric\n", "c.yaml:1:9: ledger: want a mapping"},
		{"duplicate", "ledger:\n  every: 1\n  every: 2\n", "c.yaml:3:3: ledger.every: duplicate field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig([]byte(tc.doc), "c.yaml")
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// FuzzLoadConfigLedger: any ledger block either loads into a consistent
// setting or is refused with file:line:col; it never panics.
func FuzzLoadConfigLedger(f *testing.F) {
	f.Add(ledgerGood)
	f.Add("ledger:\n  anchor: none\n  every: 5\n")
	f.Add("ledger:\n  anchor: fabric\n  fabric: {peer: '[::1]:7051', tls_ca_file: a, msp_id: b, cert_file: c, key_file: d}\n")
	f.Add("ledger: {every: -1}\n")
	f.Add("ledger:\n  fabric:\n    timeout: 0s\n")
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := LoadConfig([]byte(doc), "f.yaml")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "f.yaml:") || ce.Line < 1 || ce.Col < 1 {
				t.Fatalf("error without file:line:col: %v", err)
			}
			return
		}
		l := c.Ledger
		if l.Every < 1 {
			t.Fatalf("every %d accepted", l.Every)
		}
		switch l.Anchor {
		case "":
			if l.Fabric != (FabricConfig{}) {
				t.Fatalf("a fabric block without anchor: fabric accepted: %+v", l)
			}
		case AnchorFabric:
			fc := l.Fabric
			if fc.Peer == "" || fc.TLSCAFile == "" || fc.MSPID == "" || fc.CertFile == "" || fc.KeyFile == "" || fc.Timeout < 0 {
				t.Fatalf("incomplete fabric block accepted: %+v", fc)
			}
		default:
			t.Fatalf("anchor %q accepted", l.Anchor)
		}
	})
}
