package main

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

func mib(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, float64(v)/(1<<20)))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func printClusterTable(w io.Writer, r *clusterResults) {
	fmt.Fprintf(w, "\nshiplog cluster bench: %d lines from %s, %d nodes on this machine, %d partitions, lease TTL %.0fs\n",
		r.Lines, filepath.Base(r.Input), r.Nodes, r.Partitions, r.LeaseTTLSeconds)
	fmt.Fprintf(w, "Push: %d conns (agent ids %v -> partitions %v), batch %d, inflight %d; query node %s owns no data\n\n",
		r.Conns, r.AgentIDs, r.AgentPartitions, r.Batch, r.Inflight, r.QueryNode)
	row := func(name, a, b string) { fmt.Fprintf(w, "  %-58s %14s %14s\n", name, a, b) }
	f := func(format string, v float64) string {
		if v == 0 || math.IsNaN(v) {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	s := r.Single
	if s == nil {
		s = &results{}
	}
	row("", "1 node", fmt.Sprintf("%d nodes", r.Nodes))
	row("load average before ingest", f("%.2f", r.LoadSingle), f("%.2f", r.LoadIngest))
	row("CPU of the idle servers, % of a core", "", f("%.1f", r.IdleCPUPercent))
	row("ingest lines/s (to the last ack)", f("%.0f", s.LinesPerSec), f("%.0f", r.LinesPerSec))
	row("ingest wall s", f("%.2f", s.IngestSeconds), f("%.2f", r.IngestSeconds))
	row("all applied, s from the first send", "", f("%.2f", r.ApplySeconds))
	row("  after the last ack", "", f("%.2f", r.ApplyAfterAck))
	row("  /v1/cluster lag 0 (2 s status rounds)", "", f("%.2f", r.StatusLagZero))
	row("server CPU µs/line to the last ack", f("%.2f", s.CPUMicrosPerLine), f("%.2f", r.CPUMicrosAck))
	row("server CPU µs/line to all applied", "", f("%.2f", r.CPUMicrosApplied))
	row("peak RSS MiB (ingest)", f("%.0f", float64(s.PeakRSSBytes)/(1<<20)), "")
	for _, n := range r.NodeResults {
		row(fmt.Sprintf("  %s (%d conns, data parts %v)", n.Name, n.PushConns, n.DataPartitions), "", f("%.0f", float64(n.PeakRSSBytes)/(1<<20)))
	}
	row("stream MB (R3: on disk 3x)", "", f("%.1f", float64(r.StreamBytes)/1e6))
	for _, n := range r.NodeResults {
		row(fmt.Sprintf("  disk MB of %s (du, running)", n.Name), "", f("%.1f", float64(n.DiskBytes)/1e6))
	}
	row("load average before queries", "", f("%.2f", r.LoadQueries))
	byName := func(qs []queryResult, name string) string {
		for _, q := range qs {
			if q.Name == name {
				if !q.OK {
					return "FAIL"
				}
				return fmt.Sprintf("%.1f", q.MedianMs)
			}
		}
		return "-"
	}
	fmt.Fprintf(w, "\n  %-58s %14s %14s %14s\n", "query ms (median)", "1 node", "non-owner "+r.QueryNode, "owner "+r.OwnerNode)
	fmt.Fprintf(w, "  %-58s %14s %14.2f %14.2f\n", "  of which read after ack (mean)", "", r.ReadWaitMsNonOwner, r.ReadWaitMsOwner)
	for _, q := range r.QueriesNonOwner {
		fmt.Fprintf(w, "  %-58s %14s %14s %14s\n", q.Name, byName(s.Queries, q.Name), byName(r.QueriesNonOwner, q.Name), byName(r.QueriesOwner, q.Name))
	}
	for _, t := range r.Takeovers {
		printTakeover(w, r, t)
	}
	status := "OK: all answers match " + filepath.Base(r.Input) + ".expect.json"
	if !r.OK {
		status = "FAILED"
	}
	fmt.Fprintf(w, "\n%s\n", status)
}

// printTakeover is one takeover round of the cluster bench.
func printTakeover(w io.Writer, r *clusterResults, t *takeoverResult) {
	fmt.Fprintf(w, "\ntakeover %d (load %.2f): SIGKILL %s, owner of %v (%.1f MB of stream, %d messages); lease TTL %.0fs\n",
		t.Round, t.Load, t.Killed, t.KilledPartitions, float64(t.KilledBytes)/1e6, t.KilledMessages, t.LeaseTTLSeconds)
	fmt.Fprintf(w, "  seconds after the kill: first claim %.2f, every partition caught up on a survivor %.2f, settled %.2f; /v1/cluster all live %.2f\n",
		t.FirstClaimSeconds, t.AllReadySeconds, t.SettledSeconds, t.AllLiveAPISeconds)
	fmt.Fprintf(w, "  survivors' own partitions disturbed: %v (logged: %d lease renewal failures, %d lost leases, %d handovers, %d consumer restarts)\n",
		t.Disturbed, t.RenewalFailures, t.LostLeases, t.Handovers, t.ConsumerRestarts)
	for _, wn := range t.Warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", wn)
	}
	for _, sp := range t.Spans {
		fmt.Fprintf(w, "  replayed partition %d on %s: seq %d..%d from %.2fs after the kill, in %.2fs\n",
			sp.Partition, sp.Node, sp.FromSeq, sp.ToSeq, sp.StartSeconds, sp.Seconds)
	}
	fmt.Fprintf(w, "  replay (server logs, %d spans, took %.3fs .. last caught up %.3fs): %d messages, %.1f MB of stream, %d lines in %.2fs = %.1f MB/s, %.0f lines/s\n",
		t.ReplaySpans, t.LogFirstTook, t.LogLastCaughtUp, t.ReplayedMessages, t.ReplayedBytes/1e6, t.ReplayedLines, t.ReplaySeconds, t.ReplayMBps, t.ReplayLinesPerSec)
	fmt.Fprintf(w, "  survivors quiet again (sealing, indexing done) %.2fs after the kill: %.1f CPU s since the kill, rebuild %.1f MB/s; peak RSS MiB %v\n",
		t.QuietSeconds, t.SurvivorCPUSeconds, t.RebuildMBps, mib(t.SurvivorPeakRSS))
	if t.ReplayMBps > 0 {
		fmt.Fprintf(w, "  extrapolated (not measured): 1 GB of stream taken over and live in ~%.0fs (%.1fs to the first claim + 1000 MB at %.1f MB/s)",
			t.Extrapolated1GBSec, t.FirstClaimSeconds, t.ReplayMBps)
		if t.RebuildMBps > 0 {
			fmt.Fprintf(w, ", sealed and indexed in ~%.0fs (at %.1f MB/s)", t.Extrapolated1GBRebuiltSec, t.RebuildMBps)
		}
		fmt.Fprintln(w)
	}
	names := make([]string, 0, len(t.Queries))
	for k := range t.Queries {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, q := range t.Queries[k] {
			v := fmt.Sprintf("%.1f ms", q.MedianMs)
			if !q.OK {
				v = "FAIL: " + q.Error
			}
			fmt.Fprintf(w, "  after takeover, %-12s %-58s %s\n", k, q.Name, v)
		}
	}
	if t.RejoinSeconds > 0 {
		fmt.Fprintf(w, "  %s restarted on its data: all live and stable with %d nodes after %.1fs\n", t.Killed, r.Nodes, t.RejoinSeconds)
	}
}
