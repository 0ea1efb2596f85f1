package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// listFlag collects a flag given several times, or comma-separated.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	cf := addClientFlags(fs)
	start := fs.String("start", "", "start: RFC 3339 or a duration back from now (15m, 24h); default: 24h")
	end := fs.String("end", "", "end: RFC 3339 or a duration back from now; default: now")
	by := fs.String("by", "", "group by up to 4 comma-separated fields: service, host, build_id, deploy_id, level or an attribute key")
	var aggs listFlag
	fs.Var(&aggs, "agg", "aggregates, comma-separated or the flag repeated: count, count_distinct(f), sum(f), avg(f), min(f), max(f), quantile(q,f)")
	step := fs.String("step", "", "also count every group per step (e.g. 5m): one row per group and non-empty step")
	limit := fs.Int("limit", 100, "groups printed (the others are summed into other)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := cf.check("stats"); err != nil {
		return err
	}
	if *limit <= 0 {
		return usagef("stats: --limit must be positive")
	}
	cc, err := dialServer("stats", *cf.server, cf.conn)
	if err != nil {
		return err
	}
	defer cc.Close()
	req := &shiplogv1.StatsRequest{Q: strings.Join(fs.Args(), " "), Start: *start, End: *end, By: *by,
		Agg: strings.Join(aggs, ","), Step: *step, Limit: int32(*limit)}
	resp, err := shiplogv1.NewQueryServiceClient(cc).Stats(ctx, req)
	if err != nil {
		return rpcError(err)
	}
	if *cf.output == "json" {
		b, err := jsonOut.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", compactJSON(b))
		return err
	}
	if err := printStats(stdout, req, resp); err != nil {
		return err
	}
	if resp.GetPartial() {
		fmt.Fprintf(stderr, "stats: partial answer: partitions %v have no live owner right now\n", resp.GetMissingPartitions())
	}
	return nil
}

// printStats writes the groups as a table: the by fields, count and the
// aggregates as columns (with step: a time column, a row per non-empty step).
func printStats(w io.Writer, req *shiplogv1.StatsRequest, resp *shiplogv1.StatsResponse) error {
	var fields []string
	for _, f := range strings.Split(req.GetBy(), ",") {
		if f = strings.TrimSpace(f); f != "" {
			fields = append(fields, f)
		}
	}
	var aggNames []string
	seen := map[string]bool{}
	for _, g := range resp.GetGroups() {
		for k := range g.GetValues() {
			if !seen[k] {
				seen[k] = true
				aggNames = append(aggNames, k)
			}
		}
	}
	sort.Strings(aggNames)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var head []string
	if req.GetStep() != "" {
		head = append(head, "TIME")
	}
	for _, f := range fields {
		head = append(head, strings.ToUpper(f))
	}
	head = append(head, "COUNT")
	for _, a := range aggNames {
		head = append(head, strings.ToUpper(a))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	row := func(prefix []string, g *shiplogv1.StatsGroup, count float64) {
		cells := prefix
		for _, f := range fields {
			v := g.GetLabels()[f]
			if v == "" {
				v = "-"
			}
			cells = append(cells, v)
		}
		cells = append(cells, strconv.FormatFloat(count, 'f', -1, 64))
		for _, a := range aggNames {
			if v, ok := g.GetValues()[a]; ok {
				cells = append(cells, strconv.FormatFloat(v, 'g', 6, 64))
			} else {
				cells = append(cells, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, g := range resp.GetGroups() {
		if req.GetStep() == "" {
			row(nil, g, g.GetCount())
			continue
		}
		for _, b := range g.GetBuckets() {
			if b.GetCount() > 0 {
				row([]string{b.GetTime().AsTime().UTC().Format(time.RFC3339)}, g, float64(b.GetCount()))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	foot := fmt.Sprintf("total %s", strconv.FormatFloat(resp.GetTotal(), 'f', -1, 64))
	if resp.GetOther() > 0 {
		foot += fmt.Sprintf(", other %s in %s more groups", strconv.FormatFloat(resp.GetOther(), 'f', -1, 64), strconv.FormatFloat(resp.GetOtherGroups(), 'f', -1, 64))
	}
	if resp.GetSkipped() > 0 {
		foot += fmt.Sprintf(", %s records skipped (value not a number)", strconv.FormatFloat(resp.GetSkipped(), 'f', -1, 64))
	}
	_, err := fmt.Fprintln(w, foot)
	return err
}
