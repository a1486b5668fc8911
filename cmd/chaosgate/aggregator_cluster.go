package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/target/local"
)

// newAggregatorClusterCmd is `chaosgate aggregator cluster`: a local cluster
// of aggregator nodes as supervised child processes.
func newAggregatorClusterCmd() *cobra.Command {
	var (
		nodes      int
		dataDir    string
		defects    []string
		nodeArgs   []string
		basePort   int
		partitions int
		binary     string
	)
	cmd := &cobra.Command{
		Use:   "cluster --nodes 3 --data-dir DIR",
		Short: "Run a local cluster of aggregator nodes, restarting any node that dies",
		Long: `cluster starts N aggregator nodes as child processes of this binary, restarts a
node that dies (exponential backoff, as Kubernetes would), writes
DIR/cluster.json ({"nodes":[{"id","http","grpc","raft","pid"}]}) once every
node is ready and rewrites it after each restart. Node logs are in
DIR/nX/node.log, data in DIR/nX/data. SIGTERM or SIGINT stops every node
(SIGTERM, then SIGKILL after a grace period).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 {
				return withExitCode(exitUsage, errors.New("--nodes must be at least 1"))
			}
			if dataDir == "" {
				return withExitCode(exitUsage, errors.New("--data-dir is required"))
			}
			dir, err := filepath.Abs(dataDir)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			specs, err := local.Plan(nodes, basePort)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			for i := range specs {
				specs[i].Defects = defects
				specs[i].Args = nodeArgs
			}
			log := newLogger(slog.LevelInfo)
			ctx := cmd.Context()
			sup, err := local.Start(ctx, local.Config{Binary: binary, Dir: dir, Nodes: specs, Partitions: partitions, Logger: log})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return withExitCode(exitUsage, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster ready: %s\n", sup.ClusterFilePath())
			for _, s := range specs {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s http=%s grpc=%s raft=%s pid=%d\n", s.ID, s.HTTP, s.GRPC, s.Raft, sup.PIDs()[s.ID])
			}
			<-ctx.Done()
			sup.Wait()
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory for cluster.json, node logs and data")
	cmd.Flags().StringArrayVar(&defects, "defect", nil, "defect to turn on in every node (repeatable)")
	cmd.Flags().StringArrayVar(&nodeArgs, "node-arg", nil, "extra `chaosgate aggregator` argument for every node, e.g. --node-arg=--pprof (repeatable)")
	cmd.Flags().IntVar(&basePort, "base-port", 0, "first port: node i listens on P+3i (http), P+3i+1 (grpc), P+3i+2 (raft); 0 picks free ports")
	cmd.Flags().IntVar(&partitions, "partitions", 16, "number of partitions")
	cmd.Flags().StringVar(&binary, "binary", "", "chaosgate binary to run the nodes with (default: this executable)")
	return cmd
}
