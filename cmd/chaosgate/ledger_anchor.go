package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/evidence/fabric"
	"github.com/chaosgate/chaosgate/web"
)

// defaultFabricTimeout bounds each Fabric gateway call unless the flag or
// the config file says otherwise.
const defaultFabricTimeout = 30 * time.Second

// fabricFlags are the --fabric-* flags of `ledger anchor` and `ledger
// verify --anchors`, and --config for the ledger.fabric block of
// chaosgate.yaml (flags override the file).
type fabricFlags struct {
	cfg     fabric.Config
	cfgFile string
}

func (ff *fabricFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&ff.cfg.Peer, "fabric-peer", "", "the Fabric peer's gateway, host:port")
	f.StringVar(&ff.cfg.TLSCAFile, "fabric-tls-ca-file", "", "PEM file of the CA that signed the peer's TLS certificate (TLS is always on)")
	f.StringVar(&ff.cfg.ServerName, "fabric-server-name", "", "name to check in the peer's TLS certificate (default: the host of --fabric-peer)")
	f.StringVar(&ff.cfg.MSPID, "fabric-msp-id", "", "MSP id of the client identity, e.g. Org1MSP")
	f.StringVar(&ff.cfg.CertFile, "fabric-cert-file", "", "the client identity's X.509 certificate (PEM)")
	f.StringVar(&ff.cfg.KeyFile, "fabric-key-file", "", "the certificate's private key (PEM; a file group and others may not read)")
	f.StringVar(&ff.cfg.Channel, "fabric-channel", fabric.DefaultChannel, "channel the chaosgate chaincode runs on")
	f.StringVar(&ff.cfg.Chaincode, "fabric-chaincode", fabric.DefaultChaincode, "name the chaosgate evidence chaincode is deployed under")
	f.DurationVar(&ff.cfg.Timeout, "fabric-timeout", defaultFabricTimeout, "bound on each gateway call")
	f.StringVar(&ff.cfgFile, "config", "", "chaosgate.yaml whose ledger.fabric block gives the connection (the --fabric-* flags override it)")
}

// fabricFlagOf is the flag of a fabric.FieldError field.
func fabricFlagOf(field string) string { return "--fabric-" + strings.ReplaceAll(field, "_", "-") }

// config merges the config file and the flags and checks the result. The
// error names the flag (or the file) at fault and exits 2.
func (ff *fabricFlags) config(cmd *cobra.Command) (fabric.Config, error) {
	c := ff.cfg
	if ff.cfgFile != "" {
		fc, err := web.LoadConfigFile(ff.cfgFile)
		if err != nil {
			return c, withExitCode(exitUsage, err)
		}
		if fc.Ledger.Anchor != web.AnchorFabric {
			return c, withExitCode(exitUsage, fmt.Errorf("--config %s: no ledger.anchor: fabric block (hint: add ledger: {anchor: fabric, fabric: {...}}, or give the --fabric-* flags)", ff.cfgFile))
		}
		c = fabricConfigOf(fc.Ledger.Fabric)
		f := cmd.Flags()
		for name, dst := range map[string]*string{"fabric-peer": &c.Peer, "fabric-tls-ca-file": &c.TLSCAFile, "fabric-server-name": &c.ServerName,
			"fabric-msp-id": &c.MSPID, "fabric-cert-file": &c.CertFile, "fabric-key-file": &c.KeyFile, "fabric-channel": &c.Channel, "fabric-chaincode": &c.Chaincode} {
			if f.Changed(name) {
				*dst, _ = f.GetString(name)
			}
		}
		if f.Changed("fabric-timeout") || c.Timeout == 0 {
			c.Timeout = ff.cfg.Timeout
		}
	}
	if err := c.Check(); err != nil {
		var fe *fabric.FieldError
		if errors.As(err, &fe) {
			where := fabricFlagOf(fe.Field)
			if ff.cfgFile != "" {
				where += " (or ledger.fabric." + fe.Field + " in " + ff.cfgFile + ")"
			}
			return c, withExitCode(exitUsage, fmt.Errorf("%s: %s (hint: %s)", where, fe.Msg, fe.Hint))
		}
		return c, withExitCode(exitUsage, err)
	}
	return c, nil
}

// fabricConfigOf converts the chaosgate.yaml ledger.fabric block.
func fabricConfigOf(f web.FabricConfig) fabric.Config {
	c := fabric.Config{Peer: f.Peer, TLSCAFile: f.TLSCAFile, ServerName: f.ServerName, MSPID: f.MSPID, CertFile: f.CertFile, KeyFile: f.KeyFile,
		Channel: f.Channel, Chaincode: f.Chaincode, Timeout: f.Timeout}
	if c.Timeout == 0 {
		c.Timeout = defaultFabricTimeout
	}
	return c
}

// dialFabric opens the gateway session; a bad file names its flag (or its
// ledger.fabric field when from is "config").
func dialFabric(c fabric.Config, from string) (*fabric.Session, error) {
	s, err := fabric.Dial(c)
	if err == nil {
		return s, nil
	}
	var fe *fabric.FieldError
	if errors.As(err, &fe) {
		where := fabricFlagOf(fe.Field)
		if from != "" {
			where = "ledger.fabric." + fe.Field + " in " + from
		}
		msg := where + ": " + fe.Msg
		if fe.Hint != "" {
			msg += " (hint: " + fe.Hint + ")"
		}
		return nil, errors.New(msg)
	}
	return nil, err
}

// fabricExit maps an error of the Fabric backend to the exit code: a local
// log that does not match what Fabric anchored is 1; configuration,
// connection and refusals are 2, with a hint when the error has none.
func fabricExit(err error, c fabric.Config) error {
	if evidence.KindOf(err) == evidence.KindTampered {
		return withExitCode(exitBlock, err)
	}
	if evidence.KindOf(err) == evidence.KindUnavailable && !strings.Contains(err.Error(), "hint:") {
		err = fmt.Errorf("%w (hint: is the peer's gateway reachable at %s? check --fabric-peer, --fabric-tls-ca-file and --fabric-server-name)", err, c.Peer)
	}
	return withExitCode(exitUsage, err)
}

// anchorJSON is the JSON output of `ledger anchor`.
type anchorJSON struct {
	Status          string           `json:"status"` // anchored | already_anchored | empty
	Ledger          string           `json:"ledger"`
	Origin          string           `json:"origin"`
	TreeSize        uint64           `json:"tree_size"`
	Root            string           `json:"root"`
	EntriesRecorded int              `json:"entries_recorded"`
	TxID            string           `json:"tx_id,omitempty"`
	Block           uint64           `json:"block,omitempty"`
	Peer            string           `json:"peer"`
	Channel         string           `json:"channel"`
	Chaincode       string           `json:"chaincode"`
	Anchor          *evidence.Anchor `json:"anchor,omitempty"`
}

func newLedgerAnchorCmd(f *ledgerFlags) *cobra.Command {
	var ff fabricFlags
	cmd := &cobra.Command{
		Use:   "anchor --fabric-peer HOST:PORT --fabric-tls-ca-file F --fabric-msp-id M --fabric-cert-file F --fabric-key-file F",
		Short: "Anchor the ledger's signed checkpoint and pending entries in a Hyperledger Fabric channel",
		Long: `anchor sends the ledger's latest signed checkpoint, and the digests of every
entry after the checkpoint Fabric last anchored, to the chaosgate evidence
chaincode (deploy/fabric/chaincode) through the peer's Fabric Gateway, and
waits for the commit. It prints the anchored tree size and root, the
transaction id and the block that committed it, and records them in the
ledger's anchors file (anchors/v1, docs/anchors-v1.md), which the block
explorer shows. Nothing to anchor (Fabric already holds the latest
checkpoint) is not an error. A local ledger that does not extend the
checkpoint Fabric anchored is refused.

The connection: --fabric-* flags, or --config chaosgate.yaml with a
ledger.fabric block (the flags override it). TLS is always on; the identity's
key is read from a file that group and others may not read.

Exit codes: 0 anchored (or already anchored), 1 the local ledger does not
match what Fabric anchored, 2 configuration, connection or Fabric errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkOutput(); err != nil {
				return err
			}
			c, err := ff.config(cmd)
			if err != nil {
				return err
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			sess, err := dialFabric(c, "")
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			defer sess.Close()
			c = sess.Config()
			res, err := sess.Ledger(l).AnchorPending(cmd.Context())
			if err != nil {
				return fabricExit(err, c)
			}
			out := anchorJSON{Status: "anchored", Ledger: l.Dir(), Origin: l.Origin(), TreeSize: res.Checkpoint.Size, Root: res.Checkpoint.Root.String(),
				EntriesRecorded: res.Recorded, TxID: res.TxID, Block: res.Block, Peer: c.Peer, Channel: c.Channel, Chaincode: c.Chaincode}
			if res.Already {
				out.Status = "already_anchored"
				if res.Checkpoint.Size == 0 {
					out.Status = "empty"
				}
				if as, err := evidence.ReadAnchors(l.Dir()); err == nil {
					if a, ok := evidence.LatestAnchor(as); ok && a.TreeSize == res.Checkpoint.Size {
						out.Anchor = &a
						out.TxID, out.Block = a.TxID, a.Block
					}
				}
			} else {
				out.Anchor = &res.Local
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, out)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			status := "anchored"
			switch {
			case res.Already && res.Checkpoint.Size == 0:
				status = "nothing to anchor: the ledger has no entries"
			case res.Already:
				status = "already anchored: Fabric holds this checkpoint, nothing was submitted"
			}
			fmt.Fprintf(tw, "ledger\t%s\nstatus\t%s\norigin\t%s\ntree size\t%d\nroot\t%s\nentries recorded\t%d\n", out.Ledger, status, out.Origin, out.TreeSize, out.Root, out.EntriesRecorded)
			if out.TxID != "" {
				fmt.Fprintf(tw, "transaction\t%s\nblock\t%d\n", out.TxID, out.Block)
			}
			fmt.Fprintf(tw, "peer\t%s\nchannel\t%s\nchaincode\t%s\n", out.Peer, out.Channel, out.Chaincode)
			return tw.Flush()
		},
	}
	ff.register(cmd)
	return cmd
}

// anchorsVerifyJSON is the anchors part of `ledger verify --anchors -o json`.
type anchorsVerifyJSON struct {
	OK bool `json:"ok"`
	fabric.AnchorReport
	// LocalRecords is how many records of the local anchors file were
	// checked against the local tree.
	LocalRecords int    `json:"local_records"`
	Failure      string `json:"failure,omitempty"`
}

// verifyAnchors checks the local anchors record against the local tree and
// the local log against Fabric. A mismatch is evidence.KindTampered.
func verifyAnchors(ctx context.Context, l *evidence.Ledger, c fabric.Config) (anchorsVerifyJSON, error) {
	var out anchorsVerifyJSON
	as, err := evidence.ReadAnchors(l.Dir())
	if err != nil {
		return out, err
	}
	for _, a := range as {
		root, err := l.TreeRoot(ctx, a.TreeSize)
		switch {
		case a.Origin != l.Origin():
			return out, &evidence.Error{Kind: evidence.KindTampered, Op: "anchors record", Err: fmt.Errorf("transaction %s anchored log %q, this ledger is %q", a.TxID, a.Origin, l.Origin())}
		case evidence.KindOf(err) == evidence.KindNotFound || a.TreeSize > l.Size():
			return out, &evidence.Error{Kind: evidence.KindTampered, Op: "anchors record", Err: fmt.Errorf("transaction %s (block %d) anchored tree size %d, the local log has only %d entries", a.TxID, a.Block, a.TreeSize, l.Size()), Hint: "the local ledger lost entries or was replaced"}
		case err != nil:
			return out, err
		case root.String() != a.Root:
			return out, &evidence.Error{Kind: evidence.KindTampered, Op: "anchors record", Err: fmt.Errorf("transaction %s (block %d) anchored root %s at tree size %d, the local root there is %s", a.TxID, a.Block, a.Root, a.TreeSize, root), Hint: "the local ledger was rewritten after it was anchored"}
		}
		out.LocalRecords++
	}
	sess, err := dialFabric(c, "")
	if err != nil {
		return out, &evidence.Error{Kind: evidence.KindInvalid, Op: "fabric config", Err: err}
	}
	defer sess.Close()
	rep, err := sess.Ledger(l).VerifyAll(ctx)
	out.AnchorReport = rep
	if evidence.KindOf(err) == evidence.KindNotFound && rep.TreeSize == 0 {
		if last, ok := evidence.LatestAnchor(as); ok {
			return out, &evidence.Error{Kind: evidence.KindTampered, Op: "fabric anchor", Err: fmt.Errorf("Fabric holds no checkpoint of %q, but transaction %s (block %d) anchored tree size %d", l.Origin(), last.TxID, last.Block, last.TreeSize),
				Hint: "the channel's state lost the anchors, or --fabric-channel/--fabric-chaincode name another channel or chaincode"}
		}
		return out, &evidence.Error{Kind: evidence.KindNotFound, Op: "fabric anchor", Err: fmt.Errorf("nothing of %q is anchored in channel %s yet", l.Origin(), sess.Config().Channel), Hint: "anchor it first: chaosgate ledger anchor"}
	}
	if err != nil {
		return out, err
	}
	out.OK = true
	return out, nil
}

// runAnchoring wraps a command that records evidence (run, gate, demo)
// with --config chaosgate.yaml: when its ledger block sets anchor: fabric,
// the connection is checked before the command runs (a bad one exits 2),
// and once the command has run the ledger under --data-dir is anchored
// when at least ledger.every entries are pending. Anchoring never changes
// the command's outcome: a failure is printed and the entries stay pending
// for the next anchoring.
func runAnchoring(cmd *cobra.Command) *cobra.Command {
	var cfgFile string
	cmd.Flags().StringVar(&cfgFile, "config", "", "chaosgate.yaml: its ledger block (anchor: fabric, every, fabric) anchors the evidence ledger after the run")
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if cfgFile == "" {
			return inner(c, args)
		}
		fc, err := web.LoadConfigFile(cfgFile)
		if err != nil {
			return withExitCode(exitUsage, err)
		}
		a, err := newAnchorer(fc.Ledger, cfgFile)
		if err != nil {
			return withExitCode(exitUsage, err)
		}
		runErr := inner(c, args)
		if a != nil {
			dataDir, _ := c.Flags().GetString("data-dir")
			if dir, err := filepath.Abs(dataDir); err == nil {
				ctx := c.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				a.anchor(context.WithoutCancel(ctx), c.ErrOrStderr(), dir)
			}
		}
		return runErr
	}
	return cmd
}

// anchorer anchors a data directory's ledger per the ledger block of
// chaosgate.yaml.
type anchorer struct {
	cfg   fabric.Config
	every int
	from  string
}

// newAnchorer checks the ledger block (nil anchorer: no anchoring): the
// files it names must be readable and the key the certificate's.
func newAnchorer(lc web.LedgerConfig, file string) (*anchorer, error) {
	if lc.Anchor != web.AnchorFabric {
		return nil, nil
	}
	c := fabricConfigOf(lc.Fabric)
	s, err := dialFabric(c, file)
	if err != nil {
		return nil, fmt.Errorf("ledger.anchor: fabric: %w", err)
	}
	c = s.Config()
	s.Close()
	return &anchorer{cfg: c, every: max(lc.Every, 1), from: file}, nil
}

// anchor anchors the ledger under dataDir when every entries or more are
// pending since the last local anchor record, and says on w what it did.
// It never fails: what went wrong is printed.
func (a *anchorer) anchor(ctx context.Context, w io.Writer, dataDir string) {
	say := func(msg string) { fmt.Fprintln(w, "ledger anchor: "+msg) }
	ledgerDir := filepath.Join(dataDir, evidence.LedgerSubdir)
	if _, err := os.Stat(filepath.Join(ledgerDir, evidence.DBFile)); err != nil {
		return // no evidence yet
	}
	pub, err := evidence.LoadPublicKeys(filepath.Join(dataDir, evidence.KeysSubdir))
	if err != nil {
		say(fmt.Sprintf("FAILED: %v (the verdict stands; the entries stay pending)", err))
		return
	}
	l, err := evidence.Open(ctx, ledgerDir, evidence.Options{Public: pub, ReadOnly: true})
	if err != nil {
		say(fmt.Sprintf("FAILED: %v (the verdict stands; the entries stay pending)", err))
		return
	}
	defer l.Close()
	anchored := uint64(0)
	as, err := evidence.ReadAnchors(ledgerDir)
	if err != nil {
		say(fmt.Sprintf("the anchors record is unreadable (%v): anchoring now", err))
	} else if last, ok := evidence.LatestAnchor(as); ok {
		anchored = last.TreeSize
	}
	size := l.Size()
	if size <= anchored {
		return
	}
	if pending := size - anchored; err == nil && pending < uint64(a.every) {
		say(fmt.Sprintf("%d of %d entries pending (ledger.every: %d in %s); not anchored yet", pending, a.every, a.every, a.from))
		return
	}
	s, err := fabric.Dial(a.cfg)
	if err != nil {
		say(fmt.Sprintf("FAILED: %v (the verdict stands; entries %d..%d stay pending for the next anchor)", err, anchored, size-1))
		return
	}
	defer s.Close()
	res, err := s.Ledger(l).AnchorPending(ctx)
	if err != nil {
		say(fmt.Sprintf("FAILED: %v (the verdict stands; entries %d..%d stay pending for the next anchor)", fabricExit(err, a.cfg), anchored, size-1))
		return
	}
	if res.Already {
		say(fmt.Sprintf("tree size %d was already anchored in Fabric", res.Checkpoint.Size))
		return
	}
	say(fmt.Sprintf("anchored in Fabric: tree size %d, root %s, transaction %s, block %d (%d entries recorded, channel %s)",
		res.Checkpoint.Size, res.Checkpoint.Root, res.TxID, res.Block, res.Recorded, a.cfg.Channel))
}

// serveAnchorer returns serve's OnRunEnd hook: next (may be nil), then
// anchoring per the ledger block. nil when neither applies.
func serveAnchorer(stderr io.Writer, lc web.LedgerConfig, file, dataDir string, next func(*web.RunRecord)) (func(*web.RunRecord), error) {
	a, err := newAnchorer(lc, file)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return next, nil
	}
	fmt.Fprintf(stderr, "chaosgate serve: anchoring the ledger in Fabric channel %s at %s once %d entries are pending\n", a.cfg.Channel, a.cfg.Peer, a.every)
	return func(r *web.RunRecord) {
		if next != nil {
			next(r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		a.anchor(ctx, stderr, dataDir)
	}, nil
}
