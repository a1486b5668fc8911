package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/scenarios"
)

// newGateCmd is `chaosgate gate`: the CI gate. It runs a file like `run`,
// writes report/v1 JSON and JUnit XML, and exits with the verdict's code.
func newGateCmd() *cobra.Command {
	var o gamedayOpts
	var k k8sOpts
	var file, target string
	cmd := &cobra.Command{
		Use:   "gate -f FILE --revision REV [--json FILE] [--junit FILE]",
		Short: "CI gate: run, judge, write JSON and JUnit, exit 0 promote / 1 block / 3 hold / 2 error",
		Long: `gate runs an experiment or game-day file on the local target exactly like
chaosgate run, for the deployment revision REV (the evidence subject: an
image digest sha256:..., a git commit or a release label), writes the
report/v1 JSON to --json and the JUnit XML (one suite per canary step, one
case per dimension) to --junit, and exits with the verdict.

Exit codes: 0 promote, 1 block (roll back), 3 hold, 2 usage, configuration or
infrastructure error (the platform could not judge; also when interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return withExitCode(exitUsage, errors.New("-f FILE is required"))
			}
			if o.revision == "" && target != "k8s" {
				return withExitCode(exitUsage, errors.New("--revision REV is required (an image digest sha256:..., a git commit or a release label)"))
			}
			doc, err := scenarios.Open(file)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			o.doc = doc
			switch target {
			case "local":
				_, err = runGameday(cmd, o)
			case "k8s":
				err = runOnKubernetes(cmd, &k, doc, o)
			default:
				return withExitCode(exitUsage, fmt.Errorf("--target %q: want local or k8s", target))
			}
			if err != nil {
				var ee *exitError
				if errors.As(err, &ee) && ee.err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "gate: exit %d\n", ee.code)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "experiment or game-day file, or a built-in scenario name")
	f.StringVar(&o.revision, "revision", "", "deployment revision under test (image digest, git commit or label; with --target k8s the evidence's subject is the canary workload's revision and this is recorded as one more subject, which the gate answers for too)")
	f.StringVar(&o.jsonFile, "json", "", "write the report/v1 JSON here")
	f.StringVar(&o.junitFile, "junit", "", "write the JUnit XML here")
	f.StringSliceVar(&o.defects, "canary-defect", nil, "make the canary a known-bad build (aggregator --defect NAME)")
	f.StringVar(&target, "target", "local", "where the system under test runs: local or k8s")
	o.flags(cmd)
	k.flags(cmd)
	return cmd
}
