package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/evidence/fabric"
)

// ledgerFlags are shared by every `chaosgate ledger` sub-command.
type ledgerFlags struct {
	ledger string
	keys   string
	output string
}

// newLedgerCmd is `chaosgate ledger`: audit queries and exports against the
// evidence ledger.
func newLedgerCmd() *cobra.Command {
	f := &ledgerFlags{}
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Audit the evidence ledger: verify, show, proof, search, export, anchor",
		Long: `ledger reads (and, with append, writes) the tamper-evident evidence ledger:
an RFC 6962 Merkle log of DSSE-signed in-toto statements with signed C2SP
checkpoints and a chain of signed block headers.

Read commands verify with the public keys in --keys when present there
(evidence.pub, checkpoint.vkey), else with the keys recorded in the ledger.

Exit codes: 0 ok, 1 the ledger does not verify (names what failed),
2 usage error, missing ledger or keys, unreadable input.`,
	}
	cmd.PersistentFlags().StringVar(&f.ledger, "ledger", filepath.Join(".chaosgate", "ledger"), "ledger directory")
	cmd.PersistentFlags().StringVar(&f.keys, "keys", filepath.Join(".chaosgate", "keys"), "keys directory (see chaosgate keygen)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
	cmd.AddCommand(
		newLedgerAppendCmd(f),
		newLedgerAnchorCmd(f),
		newLedgerVerifyCmd(f),
		newLedgerShowCmd(f),
		newLedgerEntryCmd(f),
		newLedgerSearchCmd(f),
		newLedgerProofCmd(f),
		newLedgerCheckpointCmd(f),
		newLedgerPubkeyCmd(f),
		newLedgerExportCmd(f),
	)
	return cmd
}

func (f *ledgerFlags) checkOutput() error {
	if f.output != "table" && f.output != "json" {
		return withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", f.output))
	}
	return nil
}

// openRead opens the ledger read-only, verifying with the public keys in
// --keys when they exist.
func (f *ledgerFlags) openRead(ctx context.Context) (*evidence.Ledger, error) {
	if err := f.checkOutput(); err != nil {
		return nil, err
	}
	var pub *evidence.PublicKeys
	if _, err := os.Stat(filepath.Join(f.keys, evidence.CheckpointVerifyFile)); err == nil {
		p, err := evidence.LoadPublicKeys(f.keys)
		if err != nil {
			return nil, withExitCode(exitUsage, err)
		}
		pub = p
	}
	l, err := evidence.Open(ctx, f.ledger, evidence.Options{Public: pub, ReadOnly: true})
	if err != nil {
		return nil, ledgerExit(err)
	}
	return l, nil
}

// ledgerExit maps an evidence error to the process exit code: tampering is 1,
// everything else 2.
func ledgerExit(err error) error {
	if err == nil {
		return nil
	}
	if evidence.KindOf(err) == evidence.KindTampered {
		return withExitCode(exitBlock, err)
	}
	return withExitCode(exitUsage, err)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func newLedgerAppendCmd(f *ledgerFlags) *cobra.Command {
	var stmtPath, revision string
	cmd := &cobra.Command{
		Use:   "append --statement FILE --revision REV",
		Short: "Sign an in-toto statement with the evidence key and append it",
		Long: `append signs an externally produced in-toto Statement v1 (for CI pipelines
that attach their own evidence) into a DSSE envelope with the evidence key of
--keys and appends it, indexed under --revision and marked external: it is
proven like every entry but never answers a gate. A statement of chaosgate's
own predicate type (https://chaosgate.io/evidence/v1) is refused: only a run
records a verdict. The ledger is created on first use. Malformed statements
are refused with line:column and nothing is written. Prints the receipt.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkOutput(); err != nil {
				return err
			}
			if stmtPath == "" || revision == "" {
				return withExitCode(exitUsage, errors.New("--statement FILE and --revision REV are required"))
			}
			data, err := os.ReadFile(stmtPath)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if _, err := evidence.ParseStatement(data); err != nil {
				return withExitCode(exitUsage, fmt.Errorf("%s: %w", stmtPath, err))
			}
			keys, err := evidence.LoadKeys(f.keys)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			l, err := evidence.Open(cmd.Context(), f.ledger, evidence.Options{Keys: keys, Create: true})
			if err != nil {
				return ledgerExit(err)
			}
			defer l.Close()
			r, err := l.SignAndAppend(cmd.Context(), data, revision)
			if err != nil {
				return ledgerExit(fmt.Errorf("%s: %w", stmtPath, err))
			}
			return printReceipt(cmd.OutOrStdout(), r, f.output)
		},
	}
	cmd.Flags().StringVar(&stmtPath, "statement", "", "in-toto Statement v1 JSON file")
	cmd.Flags().StringVar(&revision, "revision", "", "deployment revision (image digest, git commit or release label)")
	return cmd
}

type receiptJSON struct {
	Index          uint64 `json:"ledger_index"`
	TreeSize       uint64 `json:"tree_size"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
	LeafHash       string `json:"leaf_hash"`
	Block          uint64 `json:"block"`
	Checkpoint     string `json:"checkpoint"`
}

func printReceipt(w io.Writer, r evidence.Receipt, output string) error {
	rj := receiptJSON{Index: r.Index, TreeSize: r.TreeSize, EnvelopeSHA256: r.EnvelopeSHA256, LeafHash: r.LeafHash.String(), Block: r.Block, Checkpoint: string(r.Checkpoint.Note)}
	if output == "json" {
		return printJSON(w, rj)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "index\t%d\ntree size\t%d\nblock\t%d\nleaf hash\t%s\nenvelope sha256\t%s\n", rj.Index, rj.TreeSize, rj.Block, rj.LeafHash, rj.EnvelopeSHA256)
	return tw.Flush()
}

func newLedgerVerifyCmd(f *ledgerFlags) *cobra.Command {
	var fromScratch, anchors bool
	var ff fabricFlags
	cmd := &cobra.Command{
		Use:   "verify [--from-scratch] [--anchors --fabric-peer HOST:PORT ...]",
		Short: "Recompute every hash and signature; exit 1 naming the first entry or block that does not verify",
		Long: `verify checks every entry's leaf hash, every stored tree hash (all are
recomputed from the entries), every envelope's SHA-256, every referenced blob,
every block header (signature, chain link, data hash, root), every checkpoint
(signature, root) and the search indexes (revision, experiment, trace id,
time: rebuilt from the entries, a deleted, added or edited key is named).
--from-scratch also re-verifies every DSSE envelope signature and that each
entry's indexed fields match its signed statement.

--anchors also checks the ledger against the Hyperledger Fabric channel it
was anchored in (see chaosgate ledger anchor; connection by the --fabric-*
flags or --config chaosgate.yaml): every record of the local anchors file
must match the local tree, the latest checkpoint Fabric anchored must be a
prefix of the local log with the same root, and every entry whose digests
Fabric recorded must have the same leaf hash and envelope SHA-256 locally;
the first entry that differs is named.

Exit codes: 0 verified, 1 something does not verify (named), 2 cannot open
the ledger, or (--anchors) cannot reach Fabric or nothing is anchored yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fc fabric.Config
			if anchors {
				var err error
				if fc, err = ff.config(cmd); err != nil {
					return err
				}
			} else {
				var set []string
				cmd.Flags().Visit(func(fl *pflag.Flag) {
					if strings.HasPrefix(fl.Name, "fabric-") || fl.Name == "config" {
						set = append(set, "--"+fl.Name)
					}
				})
				if len(set) > 0 {
					return withExitCode(exitUsage, fmt.Errorf("%s: only with --anchors (hint: add --anchors to check the ledger against Fabric)", strings.Join(set, ", ")))
				}
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			rep, verr := l.Verify(cmd.Context(), fromScratch)
			var av *anchorsVerifyJSON
			var aerr error
			if anchors && (verr == nil || evidence.KindOf(verr) == evidence.KindTampered) {
				res, err := verifyAnchors(cmd.Context(), l, fc)
				if err != nil {
					res.OK, res.Failure = false, err.Error()
				}
				av, aerr = &res, err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				var v any = rep
				if anchors {
					v = struct {
						evidence.VerifyReport
						Anchors *anchorsVerifyJSON `json:"anchors"`
					}{rep, av}
				}
				if err := printJSON(w, v); err != nil {
					return withExitCode(exitUsage, err)
				}
			} else {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				status := "OK"
				if verr != nil {
					status = "FAILED"
				}
				fmt.Fprintf(tw, "ledger\t%s\nstatus\t%s\n", l.Dir(), status)
				if verr != nil {
					fmt.Fprintf(tw, "failure\t%s\n", verr)
				} else {
					fmt.Fprintf(tw, "origin\t%s\ntree size\t%d\nroot\t%s\nblocks\t%d\ncheckpoints\t%d\nblobs\t%d\nenvelope signatures\t%d\n", rep.Origin, rep.TreeSize, rep.Root, rep.Blocks, rep.Checkpoints, rep.Blobs, rep.Envelopes)
				}
				fmt.Fprintf(tw, "keys\t%s\nfrom scratch\t%v\nduration\t%s\n", rep.Keys, rep.FromScratch, rep.Duration.Round(time.Millisecond))
				switch {
				case av == nil && anchors:
					fmt.Fprintf(tw, "anchors\tnot checked: the ledger does not open\n")
				case av != nil && aerr != nil:
					fmt.Fprintf(tw, "anchors\tFAILED: %s\n", aerr)
				case av != nil:
					fmt.Fprintf(tw, "anchors\tOK: Fabric channel %s anchored tree size %d, root %s; %d entries' digests match, %d covered by the anchored root only; %d local anchor records match\n",
						fc.Channel, av.TreeSize, av.Root, av.EntriesChecked, av.NotRecorded, av.LocalRecords)
				}
				if err := tw.Flush(); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			if verr != nil {
				if evidence.KindOf(verr) == evidence.KindTampered {
					return withExitCode(exitBlock, fmt.Errorf("verify: %w", verr))
				}
				return withExitCode(exitUsage, verr)
			}
			if aerr != nil {
				if evidence.KindOf(aerr) == evidence.KindTampered {
					return withExitCode(exitBlock, fmt.Errorf("verify --anchors: %w", aerr))
				}
				return fabricExit(fmt.Errorf("verify --anchors: %w", aerr), fc)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromScratch, "from-scratch", false, "also recompute interior tree hashes and DSSE signatures")
	cmd.Flags().BoolVar(&anchors, "anchors", false, "also check the ledger against what it anchored in Hyperledger Fabric (--fabric-* flags or --config)")
	ff.register(cmd)
	return cmd
}

type entryJSON struct {
	Index    uint64               `json:"index"`
	LeafHash string               `json:"leaf_hash"`
	Record   evidence.EntryRecord `json:"record"`
	Envelope json.RawMessage      `json:"envelope"`
}

func entryOut(e evidence.Entry) entryJSON {
	return entryJSON{Index: e.Index, LeafHash: e.LeafHash.String(), Record: e.Record, Envelope: json.RawMessage(e.Envelope)}
}

type blockJSON struct {
	Height   uint64    `json:"height"`
	Hash     string    `json:"hash"`
	Prev     string    `json:"prev_hash"`
	DataHash string    `json:"data_hash"`
	First    uint64    `json:"first_index"`
	Count    uint64    `json:"count"`
	Size     uint64    `json:"tree_size"`
	Root     string    `json:"root"`
	Time     time.Time `json:"time"`
	Note     string    `json:"signed_header"`
}

func blockOut(b evidence.Block) blockJSON {
	return blockJSON{Height: b.Height, Hash: b.Hash.String(), Prev: b.Prev.String(), DataHash: b.DataHash.String(), First: b.First, Count: b.Count, Size: b.Size, Root: b.Root.String(), Time: b.Time, Note: string(b.Note)}
}

func newLedgerShowCmd(f *ledgerFlags) *cobra.Command {
	var index, block int64
	cmd := &cobra.Command{
		Use:   "show --index N | --block H",
		Short: "Show one entry (record, envelope, statement) or one block header",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (index < 0) == (block < 0) {
				return withExitCode(exitUsage, errors.New("give exactly one of --index N or --block H"))
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			w := cmd.OutOrStdout()
			if block >= 0 {
				b, err := l.Block(cmd.Context(), uint64(block))
				if err != nil {
					return ledgerExit(err)
				}
				if f.output == "json" {
					return printJSON(w, blockOut(b))
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				bo := blockOut(b)
				fmt.Fprintf(tw, "block\t%d\nhash\t%s\nprev hash\t%s\ndata hash\t%s\nentries\t[%d, %d)\ntree size\t%d\nroot\t%s\ntime\t%s\n", bo.Height, bo.Hash, bo.Prev, bo.DataHash, bo.First, bo.First+bo.Count, bo.Size, bo.Root, bo.Time.Format(time.RFC3339Nano))
				return tw.Flush()
			}
			e, err := l.Entry(cmd.Context(), uint64(index))
			if err != nil {
				return ledgerExit(err)
			}
			if f.output == "json" {
				return printJSON(w, entryOut(e))
			}
			return printEntryTable(w, e)
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "entry index")
	cmd.Flags().Int64Var(&block, "block", -1, "block height")
	return cmd
}

func printEntryTable(w io.Writer, e evidence.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	r := e.Record
	fmt.Fprintf(tw, "index\t%d\ntime\t%s\nrevision\t%s\nsubjects\t%s\nexperiment\t%s\nrun id\t%s\npredicate type\t%s\ntrace ids\t%s\nblobs\t%d\nleaf hash\t%s\nenvelope sha256\t%s\n",
		e.Index, r.Time.Format(time.RFC3339Nano), r.Revision, strings.Join(r.Subjects, ", "), r.Experiment, r.RunID, r.PredicateType, strings.Join(r.TraceIDs, ", "), len(r.Blobs), e.LeafHash, r.EnvelopeSHA256)
	if env, err := evidence.ParseEnvelope(e.Envelope); err == nil {
		if body, err := env.DecodeB64Payload(); err == nil {
			fmt.Fprintf(tw, "statement\t%s\n", body)
		}
	}
	return tw.Flush()
}

func newLedgerEntryCmd(f *ledgerFlags) *cobra.Command {
	var index int64
	var raw bool
	cmd := &cobra.Command{
		Use:   "entry --index N [--raw]",
		Short: "Print an entry; --raw prints the exact leaf bytes hashed as SHA-256(0x00 ‖ leaf)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if index < 0 {
				return withExitCode(exitUsage, errors.New("--index N is required"))
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			e, err := l.Entry(cmd.Context(), uint64(index))
			if err != nil {
				return ledgerExit(err)
			}
			w := cmd.OutOrStdout()
			if raw {
				_, err := w.Write(e.Leaf)
				return err
			}
			if f.output == "json" {
				return printJSON(w, entryOut(e))
			}
			return printEntryTable(w, e)
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "entry index")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the exact leaf bytes (no newline added)")
	return cmd
}

func newLedgerSearchCmd(f *ledgerFlags) *cobra.Command {
	var q evidence.Query
	var since, until string
	cmd := &cobra.Command{
		Use:   "search --revision R | --experiment E | --trace-id T | --since/--until",
		Short: "Find entries by revision, experiment, trace id or time (RFC 3339)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if since != "" {
				if q.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--since %q: want RFC 3339, e.g. 2026-11-22T10:00:00Z", since))
				}
			}
			if until != "" {
				if q.Until, err = time.Parse(time.RFC3339Nano, until); err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--until %q: want RFC 3339, e.g. 2026-11-22T10:00:00Z", until))
				}
			}
			if q.Revision == "" && q.Experiment == "" && q.TraceID == "" && since == "" && until == "" {
				return withExitCode(exitUsage, errors.New("give at least one of --revision, --experiment, --trace-id, --since, --until"))
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			es, err := l.Search(cmd.Context(), q)
			if err != nil {
				return ledgerExit(err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				out := make([]entryJSON, 0, len(es))
				for _, e := range es {
					out = append(out, entryOut(e))
				}
				return printJSON(w, out)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tTIME\tREVISION\tEXPERIMENT\tRUN\tENVELOPE SHA256")
			for _, e := range es {
				r := e.Record
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Index, r.Time.Format(time.RFC3339), r.Revision, r.Experiment, r.RunID, prefix(r.EnvelopeSHA256, 16))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&q.Revision, "revision", "", "deployment revision")
	cmd.Flags().StringVar(&q.Experiment, "experiment", "", "experiment name")
	cmd.Flags().StringVar(&q.TraceID, "trace-id", "", "trace id")
	cmd.Flags().StringVar(&since, "since", "", "entries at or after this time (RFC 3339)")
	cmd.Flags().StringVar(&until, "until", "", "entries before this time (RFC 3339)")
	cmd.Flags().IntVar(&q.Limit, "limit", 100, "at most this many entries")
	return cmd
}

func newLedgerProofCmd(f *ledgerFlags) *cobra.Command {
	var index, size int64
	cmd := &cobra.Command{
		Use:   "proof --index N [--size S]",
		Short: "Print a c2sp.org/tlog-proof of entry N against the signed checkpoint of size S (default latest)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if index < 0 || size < 0 {
				return withExitCode(exitUsage, errors.New("--index N is required; --size S must not be negative"))
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			p, err := l.TlogProof(cmd.Context(), uint64(index), uint64(size))
			if err != nil {
				return ledgerExit(err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				hs := make([]string, len(p.Hashes))
				for i, h := range p.Hashes {
					hs[i] = base64.StdEncoding.EncodeToString(h[:])
				}
				return printJSON(w, map[string]any{"index": p.Index, "hashes": hs, "checkpoint": string(p.Checkpoint), "tlog_proof": string(p.Marshal())})
			}
			_, err = w.Write(p.Marshal())
			return err
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "entry index")
	cmd.Flags().Int64Var(&size, "size", 0, "tree size of a signed checkpoint (0: latest)")
	return cmd
}

func newLedgerCheckpointCmd(f *ledgerFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest C2SP signed checkpoint note",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			cp, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return ledgerExit(err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"origin": cp.Origin, "tree_size": cp.Size, "root": cp.Root.String(), "note": string(cp.Note)})
			}
			_, err = cmd.OutOrStdout().Write(cp.Note)
			return err
		},
	}
}

func newLedgerPubkeyCmd(f *ledgerFlags) *cobra.Command {
	var evidencePEM bool
	cmd := &cobra.Command{
		Use:   "pubkey [--evidence]",
		Short: "Print the checkpoint verifier key in note format (<name>+<hash>+<base64>); --evidence prints the DSSE public key PEM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pub *evidence.PublicKeys
			var err error
			if _, serr := os.Stat(filepath.Join(f.keys, evidence.CheckpointVerifyFile)); serr == nil {
				pub, err = evidence.LoadPublicKeys(f.keys)
				if err != nil {
					return withExitCode(exitUsage, err)
				}
			} else {
				l, err := f.openRead(cmd.Context())
				if err != nil {
					return err
				}
				pub = l.PublicKeys()
				l.Close()
			}
			w := cmd.OutOrStdout()
			if evidencePEM {
				_, err := w.Write(pub.EvidencePEM())
				return err
			}
			if f.output == "json" {
				return printJSON(w, map[string]string{"origin": pub.Origin, "checkpoint_verifier": pub.CheckpointVKey, "evidence_key_id": pub.EvidenceKeyID, "evidence_public_key": string(pub.EvidencePEM())})
			}
			_, err = fmt.Fprintln(w, pub.CheckpointVKey)
			return err
		},
	}
	cmd.Flags().BoolVar(&evidencePEM, "evidence", false, "print the evidence (DSSE) public key as PEM instead")
	return cmd
}

// prefix returns the first n bytes of s, or s when shorter.
func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
