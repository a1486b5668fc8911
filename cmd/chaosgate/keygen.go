package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/evidence"
)

// newKeygenCmd is `chaosgate keygen`: create the Ed25519 keys that sign
// evidence envelopes (DSSE) and ledger checkpoints (C2SP signed notes).
func newKeygenCmd() *cobra.Command {
	var dir, origin, output string
	cmd := &cobra.Command{
		Use:   "keygen --dir DIR",
		Short: "Create the Ed25519 keys for evidence and checkpoints (files mode 0600)",
		Long: `keygen creates, in DIR (mode 0700), four files of mode 0600:
  evidence.key     Ed25519 private key (PKCS#8 PEM) that signs DSSE envelopes
  evidence.pub     its public key (PKIX PEM); key id = hex SHA-256 of the DER
  checkpoint.key   signed-note signer key that signs checkpoints and blocks
  checkpoint.vkey  its verifier key, <origin>+<hash>+<base64>
It never overwrites existing keys. --origin names the log in its checkpoints.

Exit codes: 0 created, 2 the keys exist already or DIR is unusable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return withExitCode(exitUsage, errors.New("--dir DIR is required"))
			}
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", output))
			}
			k, err := evidence.GenerateKeys(dir, origin)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return json.NewEncoder(w).Encode(k.Info)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "keys\t%s\n", k.Info.Dir)
			fmt.Fprintf(tw, "origin\t%s\n", k.Info.Origin)
			fmt.Fprintf(tw, "evidence key id\t%s\n", k.Info.EvidenceKeyID)
			fmt.Fprintf(tw, "checkpoint key id\t%s\n", k.Info.CheckpointKeyID)
			fmt.Fprintf(tw, "checkpoint verifier\t%s\n", k.Info.CheckpointVerify)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create the keys in")
	cmd.Flags().StringVar(&origin, "origin", evidence.DefaultOrigin, "log origin (checkpoint first line and note key name)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}
