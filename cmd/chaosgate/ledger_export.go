package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newLedgerExportCmd(f *ledgerFlags) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "export --dir D",
		Short: "Write an offline audit bundle: checkpoint, public keys, envelopes, blobs, proofs and a README",
		Long: `export writes, into the new or empty directory D, everything an auditor needs
to check the ledger offline with standard tools: the latest signed checkpoint,
the public keys, every entry's exact leaf bytes, its DSSE envelope and its
c2sp.org/tlog-proof, the signed block headers, the referenced blobs, a README
explaining each check and verify.py (Python standard library + openssl).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return withExitCode(exitUsage, errors.New("--dir D is required"))
			}
			l, err := f.openRead(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			sum, err := l.Export(cmd.Context(), dir)
			if err != nil {
				return ledgerExit(err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, sum)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "bundle\t%s\ntree size\t%d\nentries\t%d\nblocks\t%d\nblobs\t%d\nverify with\tpython3 %s/verify.py (see README.md)\n", sum.Dir, sum.TreeSize, sum.Entries, sum.Blocks, sum.Blobs, sum.Dir)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "bundle directory (new or empty)")
	return cmd
}
