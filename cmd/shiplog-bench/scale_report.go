package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// scaleReport is the whole scale run (the -json output of -live).
type scaleReport struct {
	Shiplog      string      `json:"shiplog_bin"`
	VictoriaLogs string      `json:"victorialogs_version,omitempty"`
	Note         string      `json:"note,omitempty"`
	Conns        int         `json:"conns"`
	Runs         int         `json:"runs_per_query"`
	LiveWait     float64     `json:"live_disk_wait_seconds"`
	Results      []*scaleRun `json:"results"`
	OK           bool        `json:"ok"`
}

const vlNote = "Issue 16 measured VictoriaLogs v1.26; the Go module proxy serves VictoriaLogs only from v1.27 (github.com/VictoriaMetrics/VictoriaLogs), so this run uses the version above."

// runScale measures shiplog (and VictoriaLogs when vlBin is set) on each
// input in turn, one server at a time.
func runScale(cfg config, inputs []string, vlBin string, sc scaleConfig) (*scaleReport, error) {
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return nil, err
	}
	rep := &scaleReport{Shiplog: bin, Conns: sc.conns, Runs: sc.runs, LiveWait: sc.liveWait.Seconds()}
	if vlBin != "" {
		if vlBin, err = filepath.Abs(vlBin); err != nil {
			return nil, err
		}
		rep.VictoriaLogs, rep.Note = binVersion(vlBin), vlNote
	}
	for _, in := range inputs {
		expPath := in + ".expect.json"
		if len(inputs) == 1 && cfg.expect != "" {
			expPath = cfg.expect
		}
		exp, err := readExpectation(expPath)
		if err != nil {
			return rep, err
		}
		logf("reading %s (%d lines) to count the stats floors' answers (untimed)", in, exp.N)
		want, err := scanInput(in, &exp)
		if err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, scaleOne(cfg, "shiplog", bin, in, &exp, want, sc))
		if vlBin != "" {
			rep.Results = append(rep.Results, scaleOne(cfg, "victorialogs", vlBin, in, &exp, nil, sc))
		}
	}
	rep.OK = true
	var bad []string
	for _, r := range rep.Results {
		if !r.OK {
			rep.OK = false
			bad = append(bad, fmt.Sprintf("%s on %s: %s", r.Server, filepath.Base(r.Input), strings.Join(r.Errors, "; ")))
		}
	}
	if !rep.OK {
		return rep, fmt.Errorf("%d run(s) failed:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return rep, nil
}

// scaleOne starts one server on a fresh dir and measures it on in.
func scaleOne(cfg config, server, bin, in string, exp *expectation, want *statsWant, sc scaleConfig) *scaleRun {
	r := &scaleRun{Server: server, Input: in}
	work, err := os.MkdirTemp("", "shiplog-bench-scale-*")
	if err != nil {
		r.fail("%v", err)
		return r
	}
	logf("== %s on %s; load %s", server, filepath.Base(in), loadAvgLine())
	var t liveTarget
	var data string
	if server == "shiplog" {
		r.Version = binVersion(bin)
		if strings.HasSuffix(r.Version, "(devel)") {
			r.Version += " " + treeCommit()
		}
		var st *shiplogTarget
		st, data, r.StartReadySeconds, err = startShiplog(bin, work, exp, want, cfg)
		t = st
	} else {
		r.Version = binVersion(bin)
		var vt *vlTarget
		vt, data, r.StartReadySeconds, err = startVL(bin, work, exp, cfg)
		t = vt
	}
	if err != nil {
		r.fail("start: %v", err)
	} else {
		measureLive(t, data, in, exp, sc, r)
	}
	if len(r.Errors) > 0 || cfg.keep {
		logf("kept %s (logs, data)", work)
	} else {
		os.RemoveAll(work)
	}
	return r
}

// treeCommit is the commit of the work tree the bench runs in ("at 3023e85",
// "+dirty" with uncommitted changes): `make bench-scale` builds the server
// from it.
func treeCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "(not in a git work tree)"
	}
	v := "at " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		v += "+dirty"
	}
	return v
}

// scaleColumn names a run's column: "shiplog 2M / 1 day".
func scaleColumn(r *scaleRun) string {
	name := r.Server
	if name == "victorialogs" {
		name = "VL"
	}
	days := r.SpanHours / 24
	unit := "days"
	if days == 1 {
		unit = "day"
	}
	return fmt.Sprintf("%s %s / %g %s", name, shortCount(r.Lines), days, unit)
}

// shortCount writes 2000000 as 2M, 1500 as 1.5k.
func shortCount(n int) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%gM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%gk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// scaleRows is the side-by-side table: a header row, then one row per
// measure with a cell per run ("-" where the run did not get that far).
func scaleRows(runs []*scaleRun, liveWait float64) [][]string {
	rows := [][]string{{""}}
	for _, r := range runs {
		rows[0] = append(rows[0], scaleColumn(r))
	}
	add := func(name string, cell func(r *scaleRun) string) {
		row := []string{name}
		for _, r := range runs {
			row = append(row, cell(r))
		}
		rows = append(rows, row)
	}
	num := func(ok bool, format string, v float64) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	perLine := func(r *scaleRun, d diskSize, late float64) string {
		if d.Blocks <= 0 || r.Lines == 0 {
			return "-"
		}
		s := fmt.Sprintf("%.0f", float64(d.Blocks)/float64(r.Lines))
		if d.Apparent > 0 && (d.Apparent > d.Blocks*21/20 || d.Apparent < d.Blocks*19/20) {
			s += fmt.Sprintf(" (%.0f)", float64(d.Apparent)/float64(r.Lines))
		}
		if late > 0 && d.At > late+2 { // the queries took longer than the wait
			s += fmt.Sprintf(" @%.0fs", d.At)
		}
		return s
	}
	add("ingest lines/s", func(r *scaleRun) string { return num(r.LinesPerSec > 0, "%.0fk", r.LinesPerSec/1e3) })
	add("CPU µs/line (ingest)", func(r *scaleRun) string { return num(r.LinesPerSec > 0, "%.2f", r.CPUMicrosPerLine) })
	add("peak RSS MiB (ingest+queries)", func(r *scaleRun) string { return num(r.PeakRSS > 0, "%.0f", mibOf(r.PeakRSS)) })
	add("disk live B/line, after ingest", func(r *scaleRun) string { return perLine(r, r.DiskLive, 0) })
	add(fmt.Sprintf("disk live B/line, +%g s", liveWait), func(r *scaleRun) string { return perLine(r, r.DiskLive60, liveWait) })
	add("disk B/line after clean stop", func(r *scaleRun) string { return perLine(r, r.DiskStop, 0) })
	add("idle anon RSS MiB after restart", func(r *scaleRun) string { return num(r.IdleAnonRSS > 0, "%.0f", mibOf(r.IdleAnonRSS)) })
	for i, name := range []string{"a: one build, all lines", "b: a rare word, all matches", "c: count of errors", "d: errors per minute", "e: last 100 of a gone host"} {
		add(name+" ms", func(r *scaleRun) string {
			if i >= len(r.Queries) {
				return "-"
			}
			if q := r.Queries[i]; !q.OK {
				return "WRONG"
			}
			return fmt.Sprintf("%.1f", r.Queries[i].MedianMs)
		})
	}
	add("every answer right from s after ingest", func(r *scaleRun) string {
		return num(r.LinesPerSec > 0 && r.Queries != nil, "%.1f", r.SearchableSeconds)
	})
	add("answers", func(r *scaleRun) string {
		if r.OK {
			return "ok"
		}
		return fmt.Sprintf("%d problem(s)", len(r.Errors))
	})
	add("load average at start", func(r *scaleRun) string {
		if f := strings.Fields(r.LoadAvgStart); len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
		return "-"
	})
	return rows
}

// printScaleTable writes the rows as a Markdown table.
func printScaleTable(w io.Writer, rep *scaleReport) {
	fmt.Fprintf(w, "\nshiplog-bench -live: JSON lines over HTTP (%d clients, ~1 MiB bodies), queries on the live server right after ingest (median of %d)\n",
		rep.Conns, rep.Runs)
	for _, r := range rep.Results {
		if r.Server == "shiplog" && r.Version != "" {
			fmt.Fprintf(w, "shiplog: %s\n", r.Version)
			break
		}
	}
	if rep.VictoriaLogs != "" {
		fmt.Fprintf(w, "VictoriaLogs: %s. %s\n", rep.VictoriaLogs, rep.Note)
	}
	fmt.Fprintln(w, "disk: blocks in use per line (apparent file size in parentheses where it differs by more than 5%)")
	fmt.Fprintln(w)
	writeMarkdown(w, scaleRows(rep.Results, rep.LiveWait))
	for _, r := range rep.Results {
		for _, q := range r.Floors {
			fmt.Fprintf(w, "  %s %s floor %s: %s\n", scaleColumn(r), "stats", q.Name, okMs(q))
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s: PROBLEM: %s\n", scaleColumn(r), e)
		}
	}
}

func okMs(q queryResult) string {
	if !q.OK {
		return "WRONG: " + q.Error
	}
	return fmt.Sprintf("%.1f ms", q.MedianMs)
}

// writeMarkdown writes rows (the first is the header) as an aligned Markdown
// table.
func writeMarkdown(w io.Writer, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range row {
			pad := width[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(" " + c + strings.Repeat(" ", pad) + " |")
			} else {
				b.WriteString(" " + strings.Repeat(" ", pad) + c + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(rows[0]))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
		if i > 0 {
			sep[i] = sep[i][:len(sep[i])-1] + ":"
		}
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
}
