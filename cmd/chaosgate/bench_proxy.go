package main

import (
	"fmt"
	"io"
	"net"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/proxy"
)

// proxyBenchRow is one side of the proxy benchmark.
type proxyBenchRow struct {
	Path   string  `json:"path"`
	N      int     `json:"n"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	RTPerS float64 `json:"round_trips_per_s"`
}

// newBenchProxyCmd builds `chaosgate bench proxy`: round trips of a small
// message to a TCP echo server, direct and through an embedded Toxiproxy
// proxy with no toxic, in one run.
func newBenchProxyCmd() *cobra.Command {
	var n, size int
	var output string
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Round trip through the embedded fault proxy (no toxic) vs direct, in one run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 10 || size < 1 || size > 1<<20 {
				return withExitCode(exitUsage, fmt.Errorf("need -n ≥ 10 and 1 ≤ --size ≤ 1MiB"))
			}
			rows, err := benchProxy(n, size)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			if output == "json" {
				return scenariosJSON(cmd.OutOrStdout(), rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "PATH\tN\tMEAN\tP50\tP99\tRT/S\n")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%d\t%.3f ms\t%.3f ms\t%.3f ms\t%.0f\n", r.Path, r.N, r.MeanMs, r.P50Ms, r.P99Ms, r.RTPerS)
			}
			fmt.Fprintf(w, "proxy overhead (p50)\t\t\t%.3f ms\t\t\n", rows[1].P50Ms-rows[0].P50Ms)
			return w.Flush()
		},
	}
	cmd.Flags().IntVarP(&n, "n", "n", 5000, "round trips per path")
	cmd.Flags().IntVar(&size, "size", 128, "message size in bytes")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func benchProxy(n, size int) ([]proxyBenchRow, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	set := proxy.NewSet()
	defer set.Close()
	paddr, err := set.Add("bench/client->echo", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	// Both paths run interleaved in chunks so that noise from other work
	// on the machine hits them alike.
	paths := []struct{ name, addr string }{{"direct", ln.Addr().String()}, {"toxiproxy (no toxic)", paddr}}
	conns := make([]net.Conn, len(paths))
	for i, p := range paths {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		defer c.Close()
		conns[i] = c
	}
	samples := make([][]time.Duration, len(paths))
	totals := make([]time.Duration, len(paths))
	const chunk = 250
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		for i := range paths {
			start := time.Now()
			ds, err := roundTrips(conns[i], k, size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", paths[i].name, err)
			}
			totals[i] += time.Since(start)
			samples[i] = append(samples[i], ds...)
		}
	}
	var rows []proxyBenchRow
	for i, p := range paths {
		ds := samples[i]
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		rows = append(rows, proxyBenchRow{Path: p.name, N: len(ds), MeanMs: ms(totals[i]) / float64(len(ds)),
			P50Ms: ms(ds[len(ds)/2]), P99Ms: ms(ds[len(ds)*99/100]), RTPerS: float64(len(ds)) / totals[i].Seconds()})
	}
	ln.Close()
	set.Close()
	<-done
	return rows, nil
}

func roundTrips(c net.Conn, n, size int) ([]time.Duration, error) {
	msg := make([]byte, size)
	buf := make([]byte, size)
	ds := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		c.SetDeadline(t.Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t))
	}
	return ds, nil
}
