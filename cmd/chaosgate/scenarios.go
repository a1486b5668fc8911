package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/chaosgate/chaosgate/scenarios"
)

// newScenariosCmd groups the scenario library commands.
func newScenariosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "The built-in scenario library; strict validation with file:line:col errors",
	}
	cmd.AddCommand(newScenariosListCmd(), newScenariosValidateCmd(), newScenariosExplainCmd())
	return cmd
}

type scenarioSummary struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Faults      []string `json:"faults"`
	Steps       []int    `json:"steps"`
	FaultTimeS  float64  `json:"fault_time_s"`
	Description string   `json:"description"`
}

func summarize(doc *scenarios.Document) (scenarioSummary, error) {
	s := scenarioSummary{Name: doc.Metadata.Name, Kind: doc.Kind, Steps: doc.Spec.Canary.StepsOrDefault(), Description: strings.TrimSpace(doc.Metadata.Description)}
	exps, err := scenarios.Resolve(doc)
	if err != nil {
		return s, err
	}
	for _, e := range exps {
		for _, f := range e.Spec.Faults {
			s.Faults = append(s.Faults, f.Kind())
		}
	}
	d, err := scenarios.EstimatedDuration(doc)
	if err != nil {
		return s, err
	}
	s.FaultTimeS = d.Seconds()
	return s, nil
}

func newScenariosListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []scenarioSummary
			for _, n := range scenarios.LibraryNames() {
				doc, err := scenarios.Library(n)
				if err != nil {
					return withExitCode(exitUsage, err)
				}
				s, err := summarize(doc)
				if err != nil {
					return withExitCode(exitUsage, err)
				}
				out = append(out, s)
			}
			switch output {
			case "json":
				return scenariosJSON(cmd.OutOrStdout(), out)
			case "table":
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tKIND\tFAULTS\tSTEPS\tFAULT TIME\tDESCRIPTION")
				for _, s := range out {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, compactKinds(s.Faults), ints(s.Steps),
						time.Duration(s.FaultTimeS*float64(time.Second)), firstSentence(s.Description))
				}
				return w.Flush()
			}
			return withExitCode(exitUsage, fmt.Errorf("unknown output format %q (use table or json)", output))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newScenariosValidateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Validate scenario files strictly (exit 2 with file:line:col errors when one is invalid)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type result struct {
				File   string   `json:"file"`
				OK     bool     `json:"ok"`
				Name   string   `json:"name,omitempty"`
				Kind   string   `json:"kind,omitempty"`
				Errors []string `json:"errors,omitempty"`
			}
			var results []result
			bad := 0
			for _, f := range args {
				doc, err := scenarios.LoadFile(f)
				r := result{File: f, OK: err == nil}
				if err != nil {
					bad++
					var es scenarios.Errors
					if errors.As(err, &es) {
						for _, e := range es {
							r.Errors = append(r.Errors, e.Error())
						}
					} else {
						r.Errors = []string{err.Error()}
					}
				} else {
					r.Name, r.Kind = doc.Metadata.Name, doc.Kind
				}
				results = append(results, r)
			}
			if output == "json" {
				if err := scenariosJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if r.OK {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s %s)\n", r.File, r.Kind, r.Name)
						continue
					}
					for _, e := range r.Errors {
						fmt.Fprintln(cmd.ErrOrStderr(), e)
					}
				}
			}
			if bad > 0 {
				return withExitCode(exitUsage, fmt.Errorf("%d of %d files are invalid", bad, len(args)))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newScenariosExplainCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "explain NAME|FILE",
		Short: "Explain what a scenario does, step by step (or print it resolved with -o yaml|json)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := scenarios.Open(args[0])
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			exps, err := scenarios.Resolve(doc)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			switch output {
			case "json":
				return scenariosJSON(cmd.OutOrStdout(), map[string]any{"document": doc, "experiments": exps})
			case "yaml":
				enc := yaml.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent(2)
				if err := enc.Encode(doc); err != nil {
					return err
				}
				return enc.Close()
			case "table":
				return explain(cmd.OutOrStdout(), doc, exps)
			}
			return withExitCode(exitUsage, fmt.Errorf("unknown output format %q (use table, json or yaml)", output))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Annotations = map[string]string{nativeYAML: "true"}
	return cmd
}

func explain(w io.Writer, doc *scenarios.Document, exps []*scenarios.Document) error {
	s := doc.Spec
	fmt.Fprintf(w, "%s %s", doc.Kind, doc.Metadata.Name)
	if d := strings.TrimSpace(doc.Metadata.Description); d != "" {
		fmt.Fprintf(w, ": %s", d)
	}
	fmt.Fprintln(w)
	n := s.Target.NodeCount()
	switch {
	case s.Target.Local != nil:
		fmt.Fprintf(w, "target: local clusters, %d replicas per arm, %d partitions; arms %s\n", n, s.Target.Local.Partitions, strings.Join(s.Target.ArmNames(), ", "))
	case s.Target.Kubernetes != nil:
		k := s.Target.Kubernetes
		fmt.Fprintf(w, "target: kubernetes namespace %s, %d replicas per arm; canary %v, control %v\n", k.Namespace, n, k.Canary.MatchLabels, k.Control.MatchLabels)
	}
	b := s.BlastRadius
	budget := fmt.Sprintf("fewer than a quorum (%d of %d)", scenarios.Quorum(n), n)
	if b.AllowQuorum {
		budget = "a quorum is allowed (allowQuorum)"
	}
	if b.MaxReplicas > 0 {
		budget += fmt.Sprintf(", at most %d replicas", b.MaxReplicas)
	}
	if b.MaxShare.Value > 0 {
		budget += fmt.Sprintf(", at most %.0f%% of replicas", b.MaxShare.Value*100)
	}
	fmt.Fprintf(w, "blast radius: %s\n", budget)
	fmt.Fprintf(w, "decision policy: %s\n", s.Decision.Policy)
	for _, step := range s.Canary.StepsOrDefault() {
		fmt.Fprintf(w, "canary step %d%%:\n", step)
		for _, e := range exps {
			if !e.RunsAt(step) {
				continue
			}
			for _, f := range e.Spec.Faults {
				fmt.Fprintf(w, "  - %s/%s: %s for %s (steady state %s before and after), impairs %d of %d replicas per arm\n",
					e.Metadata.Name, f.Name, describeFault(f), f.Duration, e.Spec.SteadyState, f.Impact(n), n)
			}
			for _, a := range e.Spec.Abort {
				cond := ""
				if a.Below != nil {
					cond = "below " + a.Below.Text
				} else if a.Above != nil {
					cond = "above " + a.Above.Text
				}
				fmt.Fprintf(w, "      abort when %s.%s on %s is %s for %s\n", a.Probe, a.Metric, a.Arm, cond, a.For)
			}
		}
	}
	d, err := scenarios.EstimatedDuration(doc)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "fault phases take about %s (plus start-up and recovery waits)\n", d)
	return nil
}

func describeFault(f scenarios.Fault) string {
	switch {
	case f.PodKill != nil:
		return "SIGKILL " + nodeChoice(f.PodKill) + " (the supervisor restarts it)"
	case f.PodPause != nil:
		return "SIGSTOP " + nodeChoice(f.PodPause) + " (SIGCONT on recover)"
	case f.NetworkDelay != nil:
		d := f.NetworkDelay
		edges := ""
		switch {
		case d.Edges.Into != "":
			edges = "every edge into " + d.Edges.Into
		case d.Edges.OutOf != "":
			edges = "every edge out of " + d.Edges.OutOf
		default:
			edges = "both edges between " + strings.Join(d.Edges.Between, " and ")
		}
		if d.Edges.Clients {
			edges += ", clients included"
		}
		return fmt.Sprintf("latency %s ± %s on %s", d.Latency, d.Jitter, edges)
	case f.Partition != nil:
		return "partition " + f.Partition.Shape + " (black-hole the node→node edges across the cut)"
	case f.SplitBrain != nil:
		return "split brain: isolate the leader from its peers while clients still reach it"
	case f.ClockSkew != nil:
		d := f.ClockSkew
		who := "one node"
		if d.Mode == scenarios.ModeFixed {
			who = strings.Join(d.Nodes, ", ")
		}
		s := fmt.Sprintf("clock skew %s on %s (its physical clock input; TimeChaos on Kubernetes)", d.Offset, who)
		if d.Handover {
			s += ", then hand it the leadership of a partition it follows"
		}
		return s
	case f.Overload != nil:
		o := f.Overload
		batch := o.Batch
		if batch == 0 {
			batch = 20
		}
		return fmt.Sprintf("overload burst of %g messages/s per arm, %d per request, through the load generator", o.Rate.Value, batch)
	}
	if d, ok := f.DescribeUpstream(); ok {
		return d
	}
	return "?"
}

func nodeChoice(nf *scenarios.NodeFault) string {
	switch nf.Mode {
	case scenarios.ModeLeader:
		return "the node leading the most partitions"
	case scenarios.ModeFixed:
		return strings.Join(nf.Nodes, ", ")
	}
	return "one node"
}

func compactKinds(ks []string) string {
	seen := map[string]bool{}
	var out []string
	for _, k := range ks {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return strings.Join(out, ",")
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}

func scenariosJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
