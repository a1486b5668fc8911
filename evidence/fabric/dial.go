package fabric

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/chaosgate/chaosgate/evidence"
)

// Config says how to reach a Fabric peer's gateway and as whom. Secrets
// come from files only. The field names in FieldError are those of the
// chaosgate.yaml ledger.fabric block (peer, tls_ca_file, ...); the command
// flags are the same names as --fabric-peer, --fabric-tls-ca-file, ....
type Config struct {
	// Peer is the gateway's host:port.
	Peer string
	// TLSCAFile is the PEM file of the CA that signed the peer's TLS
	// certificate. TLS is always on.
	TLSCAFile string
	// ServerName overrides the name checked in the peer's TLS certificate
	// (default: the host of Peer).
	ServerName string
	// MSPID, CertFile and KeyFile are the client identity: its MSP, its
	// X.509 certificate (PEM) and the certificate's private key (PEM, a
	// file group and others may not read).
	MSPID, CertFile, KeyFile string
	// Channel and Chaincode name where the evidence chaincode runs.
	Channel, Chaincode string
	// Timeout bounds each gateway call (0: fabric-gateway's defaults).
	Timeout time.Duration
}

// Default channel and chaincode names, those of deploy/fabric/README.md.
const (
	DefaultChannel   = "evidence"
	DefaultChaincode = "chaosgate"
)

// FieldError is a missing or bad Config field.
type FieldError struct {
	// Field is the chaosgate.yaml name of the field (peer, tls_ca_file,
	// server_name, msp_id, cert_file, key_file, channel, chaincode).
	Field string
	Msg   string
	Hint  string
}

// Error implements error.
func (e *FieldError) Error() string {
	s := e.Field + ": " + e.Msg
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// Check reports the first missing or malformed field. Empty Channel and
// Chaincode are filled with the defaults.
func (c *Config) Check() error {
	if c.Channel == "" {
		c.Channel = DefaultChannel
	}
	if c.Chaincode == "" {
		c.Chaincode = DefaultChaincode
	}
	switch {
	case c.Peer == "":
		return &FieldError{Field: "peer", Msg: "the peer's gateway address is required", Hint: "host:port, e.g. localhost:7051"}
	case c.TLSCAFile == "":
		return &FieldError{Field: "tls_ca_file", Msg: "the peer's TLS CA certificate file is required", Hint: "e.g. .../peers/peer0.org1.example.com/tls/ca.crt"}
	case c.MSPID == "":
		return &FieldError{Field: "msp_id", Msg: "the client's MSP id is required", Hint: "e.g. Org1MSP"}
	case c.CertFile == "":
		return &FieldError{Field: "cert_file", Msg: "the client's certificate file is required", Hint: "e.g. .../users/User1@org1.example.com/msp/signcerts/cert.pem"}
	case c.KeyFile == "":
		return &FieldError{Field: "key_file", Msg: "the client's private key file is required", Hint: "the single file in .../msp/keystore/"}
	}
	if h, p, err := net.SplitHostPort(c.Peer); err != nil || h == "" || p == "" {
		return &FieldError{Field: "peer", Msg: fmt.Sprintf("%q is not host:port", c.Peer), Hint: "e.g. localhost:7051"}
	}
	return nil
}

// Session is an open gateway connection.
type Session struct {
	// Gateway is the fabric-gateway session.
	Gateway *client.Gateway
	conn    *grpc.ClientConn
	cfg     Config
}

// Dial checks c, reads its files and opens a TLS connection and a gateway
// session. Nothing is sent until the first call: an unreachable peer shows
// as an evidence.KindUnavailable error from it.
func Dial(c Config) (*Session, error) {
	if err := c.Check(); err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: err}
	}
	caPEM, err := readFile(c.TLSCAFile, "tls_ca_file", false)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: &FieldError{Field: "tls_ca_file", Msg: c.TLSCAFile + " holds no PEM certificate", Hint: "the CA of the peer's TLS certificate, e.g. its tls/ca.crt"}}
	}
	certPEM, err := readFile(c.CertFile, "cert_file", false)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(c.KeyFile, "key_file", true)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(c, certPEM, keyPEM); err != nil {
		return nil, err
	}
	serverName := c.ServerName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(c.Peer)
	}
	conn, err := grpc.NewClient(c.Peer, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, serverName)))
	if err != nil {
		return nil, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: &FieldError{Field: "peer", Msg: err.Error()}}
	}
	var opts []client.ConnectOption
	if c.Timeout > 0 {
		opts = append(opts, client.WithEvaluateTimeout(c.Timeout), client.WithEndorseTimeout(c.Timeout), client.WithSubmitTimeout(c.Timeout), client.WithCommitStatusTimeout(c.Timeout))
	}
	gw, err := Connect(conn, Identity{MSPID: c.MSPID, CertPEM: certPEM, KeyPEM: keyPEM}, opts...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Session{Gateway: gw, conn: conn, cfg: c}, nil
}

// Config returns the checked configuration of the session.
func (s *Session) Config() Config { return s.cfg }

// Ledger attaches local to the session's channel and chaincode (see Attach).
func (s *Session) Ledger(local *evidence.Ledger) *Ledger {
	return Attach(local, s.Gateway, s.cfg.Channel, s.cfg.Chaincode)
}

// Close ends the gateway session and the connection.
func (s *Session) Close() error {
	s.Gateway.Close()
	return s.conn.Close()
}

// maxPEMFile bounds the certificate and key files read.
const maxPEMFile = 1 << 20

// readFile reads a PEM file of the config; secret files must not be
// readable or writable by group or others.
func readFile(path, field string, secret bool) ([]byte, error) {
	bad := func(msg, hint string) error {
		return &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: &FieldError{Field: field, Msg: msg, Hint: hint}}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, bad(err.Error(), "")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, bad(err.Error(), "")
	}
	if !st.Mode().IsRegular() {
		return nil, bad(path+" is not a regular file", "")
	}
	if perm := st.Mode().Perm(); secret && perm&0o077 != 0 {
		return nil, &evidence.Error{Kind: evidence.KindPermission, Op: "fabric config", Err: &FieldError{Field: field,
			Msg: fmt.Sprintf("%s has mode %04o: a private key must not be readable or writable by group or others", path, perm), Hint: "chmod 600 " + path}}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, bad(err.Error(), "")
	}
	if len(b) > maxPEMFile {
		return nil, bad(fmt.Sprintf("%s is larger than 1 MiB: not a PEM certificate or key", path), "")
	}
	return b, nil
}

// checkIdentity parses the certificate and key and checks that the key is
// the certificate's, so a mismatch is named here rather than refused by
// the peer.
func checkIdentity(c Config, certPEM, keyPEM []byte) error {
	bad := func(field, msg, hint string) error {
		return &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: &FieldError{Field: field, Msg: msg, Hint: hint}}
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		return bad("cert_file", c.CertFile+": "+err.Error(), "the client's X.509 certificate, PEM (msp/signcerts/cert.pem)")
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		return bad("key_file", c.KeyFile+": "+err.Error(), "the certificate's private key, PEM (msp/keystore/...)")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return bad("key_file", c.KeyFile+": not a signing key", "")
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return bad("key_file", c.KeyFile+" is not the private key of "+c.CertFile, "take both from the same msp directory (signcerts and keystore)")
	}
	return nil
}
