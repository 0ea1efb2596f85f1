package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVLRows(t *testing.T) {
	body := []byte(`{"_time":"2026-01-01T00:00:01Z","_msg":"a \"b\"","host":"h1"}` + "\n\n" +
		`{"n":"42"}` + "\n")
	rows, err := parseVLRows(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["_msg"] != `a "b"` || rows[0]["host"] != "h1" || rows[1]["n"] != "42" {
		t.Fatalf("rows = %v", rows)
	}
	if n, err := vlCount(rows[1:]); err != nil || n != 42 {
		t.Errorf("vlCount = %d, %v; want 42", n, err)
	}
	if _, err := vlCount(rows); err == nil {
		t.Error("vlCount of two rows: no error")
	}
	if _, err := vlCount([]map[string]string{{"n": "x"}}); err == nil {
		t.Error("vlCount of a non-number: no error")
	}
	if _, err := parseVLRows([]byte("{\"n\":\"1\"}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: err = %v, want one naming line 2", err)
	}
	if rows, err := parseVLRows(nil); err != nil || len(rows) != 0 {
		t.Errorf("empty answer: %v, %v", rows, err)
	}
}

func row(ts, field, value string) map[string]string {
	return map[string]string{"_time": ts, field: value}
}

func TestCheckVLRows(t *testing.T) {
	asc := []map[string]string{row("2026-01-01T00:00:01Z", "build_id", "b1"), row("2026-01-01T00:00:02.5Z", "build_id", "b1")}
	if err := checkVLRows(asc, 2, "build_id", "b1", false, 0); err != nil {
		t.Errorf("ascending rows: %v", err)
	}
	for name, c := range map[string]struct {
		rows  []map[string]string
		want  int
		desc  bool
		first int64
	}{
		"count":       {asc, 3, false, 0},
		"order":       {asc, 2, true, 0},
		"first time":  {[]map[string]string{asc[1], asc[0]}, 2, true, 1},
		"other value": {[]map[string]string{asc[0], row("2026-01-01T00:00:03Z", "build_id", "b2")}, 2, false, 0},
		"bad time":    {[]map[string]string{row("yesterday", "build_id", "b1")}, 1, false, 0},
	} {
		if err := checkVLRows(c.rows, c.want, "build_id", "b1", c.desc, c.first); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	desc := []map[string]string{row("2026-01-01T12:22:18.232313722Z", "host", "h"), row("2026-01-01T12:00:00Z", "host", "h")}
	if err := checkVLRows(desc, 2, "host", "h", true, 1767270138232313722); err != nil {
		t.Errorf("newest first from the last line: %v", err)
	}
}

func TestCheckVLWordAndBuckets(t *testing.T) {
	rows := []map[string]string{row("2026-01-01T00:00:02Z", "_msg", "a Deadlock here"), row("2026-01-01T00:00:01Z", "_msg", "deadlock")}
	if err := checkVLWord(rows, "deadlock", 2); err != nil {
		t.Errorf("word: %v", err)
	}
	if err := checkVLWord(rows[:1], "deadlock", 2); err == nil {
		t.Error("one row of two: no error")
	}
	if err := checkVLWord([]map[string]string{rows[1], rows[0]}, "deadlock", 2); err == nil {
		t.Error("oldest first: no error")
	}
	if err := checkVLWord([]map[string]string{row("2026-01-01T00:00:02Z", "_msg", "no lock")}, "deadlock", 1); err == nil {
		t.Error("a row without the word: no error")
	}
	b := []map[string]string{{"_time": "2026-01-01T00:00:00Z", "n": "3"}, {"_time": "2026-01-01T00:01:00Z", "n": "2"}}
	if err := checkVLBuckets(b, 2, 5); err != nil {
		t.Errorf("buckets: %v", err)
	}
	if err := checkVLBuckets(b, 2, 6); err == nil {
		t.Error("wrong sum: no error")
	}
	if err := checkVLBuckets(append(b, b[0]), 3, 8); err == nil {
		t.Error("a minute twice: no error")
	}
}

func TestVLQueriesAskTheExpectation(t *testing.T) {
	var exp expectation
	exp.ABuild.BuildID, exp.BRareWord.Word, exp.EVanishedHost.Host = "build-000123", "deadlock", "api-gateway-6c3075"
	var got []string
	for _, q := range vlQueries(&exp) {
		got = append(got, q.logsQL)
	}
	want := []string{
		`build_id:="build-000123" | sort by (_time)`,
		`deadlock | sort by (_time desc)`,
		`level:=error | stats count() n`,
		`level:=error | stats by (_time:1m) count() n`,
		`{host="api-gateway-6c3075"} | sort by (_time desc) | limit 100`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("queries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScaleTable(t *testing.T) {
	runs := []*scaleRun{
		{Server: "shiplog", Lines: 2000000, SpanHours: 24, LinesPerSec: 565000, CPUMicrosPerLine: 3.25, PeakRSS: 626 << 20,
			DiskLive: diskSize{Blocks: 862000000, Apparent: 1400000000}, DiskLive60: diskSize{Blocks: 120000000, Apparent: 121000000, At: 60.1},
			DiskStop: diskSize{Blocks: 98000000, Apparent: 98000000}, IdleAnonRSS: 150 << 20, SearchableSeconds: 0.1,
			Queries: []queryResult{{OK: true, MedianMs: 15}, {OK: true, MedianMs: 593.25}, {OK: true, MedianMs: 2},
				{OK: true, MedianMs: 11}, {OK: true, MedianMs: 3}}, OK: true, LoadAvgStart: "3.10 2.00 1.00 2/94 15606"},
		{Server: "victorialogs", Lines: 10000000, SpanHours: 120, LinesPerSec: 266000, DiskLive60: diskSize{Blocks: 430000000, At: 75},
			Queries: []queryResult{{OK: true, MedianMs: 34}, {OK: false}}, Errors: []string{"query b: wrong"}},
	}
	rows := scaleRows(runs, 60)
	if got := strings.Join(rows[0], "|"); got != "|shiplog 2M / 1 day|VL 10M / 5 days" {
		t.Errorf("header %q", got)
	}
	cells := map[string][]string{}
	for _, r := range rows[1:] {
		if len(r) != 3 {
			t.Fatalf("row %v: %d cells", r, len(r))
		}
		cells[r[0]] = r[1:]
	}
	for name, want := range map[string][2]string{
		"ingest lines/s":                  {"565k", "266k"},
		"CPU µs/line (ingest)":            {"3.25", "0.00"},
		"peak RSS MiB (ingest+queries)":   {"626", "-"},
		"disk live B/line, after ingest":  {"431 (700)", "-"},
		"disk live B/line, +60 s":         {"60", "43 @75s"},
		"disk B/line after clean stop":    {"49", "-"},
		"idle anon RSS MiB after restart": {"150", "-"},
		"a: one build, all lines ms":      {"15.0", "34.0"},
		"b: a rare word, all matches ms":  {"593.2", "WRONG"},
		"e: last 100 of a gone host ms":   {"3.0", "-"},
		"answers":                         {"ok", "1 problem(s)"},
		"load average at start":           {"3.10 2.00 1.00", "-"},
	} {
		if got := cells[name]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	var b bytes.Buffer
	writeMarkdown(&b, [][]string{{"", "x"}, {"µs", "12345"}})
	if want := "|    |     x |\n| -- | ----: |\n| µs | 12345 |\n"; b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
	if v := binVersion(os.Args[0]); !strings.HasPrefix(v, "github.com/shiplog/shiplog") {
		t.Errorf("binVersion of the test binary = %q", v)
	}
	if shortCount(1500) != "1.5k" || shortCount(12) != "12" || shortCount(10000000) != "10M" {
		t.Error("shortCount")
	}
}

// TestBodySource cuts a file at line ends into bodies of at most about 1 MiB
// and hands out every line once, the last one without a newline too.
func TestBodySource(t *testing.T) {
	var f bytes.Buffer
	lines := 0
	for f.Len() < 2*bodySize+5000 {
		f.WriteString(`{"message":"` + strings.Repeat("x", lines%300) + "\"}\n")
		lines++
	}
	long := strings.Repeat("y", bodySize+10) // one line longer than a body
	f.WriteString(long + "\n" + "tail")
	lines += 2
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, f.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := newBodySource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	var all bytes.Buffer
	total := 0
	for {
		body, n, ok, err := src.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if n != bytes.Count(body, []byte{'\n'}) && !bytes.HasSuffix(body, []byte("tail")) {
			t.Errorf("body of %d bytes says %d lines", len(body), n)
		}
		if !bytes.HasSuffix(body, []byte{'\n'}) && !bytes.HasSuffix(body, []byte("tail")) {
			t.Errorf("body of %d bytes does not end at a line end", len(body))
		}
		if len(body) > bodySize && !bytes.Contains(body, []byte(long)) {
			t.Errorf("body of %d bytes, over %d without a long line", len(body), bodySize)
		}
		all.Write(body)
		total += n
	}
	if !bytes.Equal(all.Bytes(), f.Bytes()) || total != lines || src.lines != lines {
		t.Errorf("got %d bytes and %d lines (%d counted), want %d and %d", all.Len(), total, src.lines, f.Len(), lines)
	}
}
