package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The five questions of FINDINGS.md in LogsQL, with the answers shiplog's
// queries a..e give (run.go): all lines of a build, oldest first; every line
// with the rare word, newest first; the count of level error; errors per
// minute over the range; the last 100 lines of a host that has vanished,
// newest first. Each is written as a VictoriaLogs user would: exact-value
// filters (field:=value) for fields, a word filter for the word, a stream
// filter for the host (a stream field at ingest, as it is a label in shiplog).

type vlQuery struct {
	name, logsQL string
	check        func(rows []map[string]string) error
}

func vlQueries(exp *expectation) []vlQuery {
	build, word, vh := exp.ABuild.BuildID, exp.BRareWord.Word, exp.EVanishedHost
	return []vlQuery{
		{"a: all lines of " + build, "build_id:=" + strconv.Quote(build) + " | sort by (_time)",
			func(rows []map[string]string) error {
				return checkVLRows(rows, exp.ABuild.Count, "build_id", build, false, 0)
			}},
		{"b: rare word " + strconv.Quote(word), word + " | sort by (_time desc)",
			func(rows []map[string]string) error { return checkVLWord(rows, word, exp.BRareWord.Count) }},
		{"c: count of level:error", "level:=error | stats count() n",
			func(rows []map[string]string) error {
				n, err := vlCount(rows)
				if err == nil && n != exp.CLevelError.Count {
					err = fmt.Errorf("count %d, want %d", n, exp.CLevelError.Count)
				}
				return err
			}},
		{"d: errors per minute", "level:=error | stats by (_time:1m) count() n",
			func(rows []map[string]string) error {
				return checkVLBuckets(rows, exp.DErrorsPerMinute.Buckets, exp.DErrorsPerMinute.Sum)
			}},
		{"e: last 100 of " + vh.Host, "{host=" + strconv.Quote(vh.Host) + "} | sort by (_time desc) | limit 100",
			func(rows []map[string]string) error {
				last, err := time.Parse(time.RFC3339Nano, vh.LastTime)
				if err != nil {
					return fmt.Errorf("expect.json e_vanished_host.last_time: %w", err)
				}
				return checkVLRows(rows, vh.ExpectedRows, "host", vh.Host, true, last.UnixNano())
			}},
	}
}

// parseVLRows reads /select/logsql/query's answer: one JSON object a line,
// every value a string.
func parseVLRows(body []byte) ([]map[string]string, error) {
	var rows []map[string]string
	for i, line := range bytes.Split(body, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var row map[string]string
		if err := json.Unmarshal(line, &row); err != nil {
			return nil, fmt.Errorf("answer line %d: %w (%.200s)", i+1, err, line)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// vlCount is the n of a `stats count() n` answer: one row.
func vlCount(rows []map[string]string) (int, error) {
	if len(rows) != 1 {
		return 0, fmt.Errorf("%d rows, want 1", len(rows))
	}
	n, err := strconv.Atoi(rows[0]["n"])
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", rows[0]["n"], err)
	}
	return n, nil
}

// rowTime is a row's _time in Unix nanoseconds.
func rowTime(row map[string]string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, row["_time"])
	if err != nil {
		return 0, fmt.Errorf("_time %q: %w", row["_time"], err)
	}
	return t.UnixNano(), nil
}

// checkVLRows checks want rows, each with field = value, in time order
// (newest first when desc) and, when first is not 0, starting at that time.
func checkVLRows(rows []map[string]string, want int, field, value string, desc bool, first int64) error {
	if len(rows) != want {
		return fmt.Errorf("got %d rows, want %d", len(rows), want)
	}
	var prev int64
	for i, r := range rows {
		if r[field] != value {
			return fmt.Errorf("row %d has %s=%q, want %q", i, field, r[field], value)
		}
		ts, err := rowTime(r)
		if err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if i == 0 && first != 0 && ts != first {
			return fmt.Errorf("first row at %s, want %s", r["_time"], time.Unix(0, first).UTC().Format(time.RFC3339Nano))
		}
		if i > 0 && ((desc && ts > prev) || (!desc && ts < prev)) {
			return fmt.Errorf("rows out of time order at row %d", i)
		}
		prev = ts
	}
	return nil
}

// checkVLWord checks want rows, each with word in its message, newest first.
func checkVLWord(rows []map[string]string, word string, want int) error {
	if len(rows) != want {
		return fmt.Errorf("got %d rows, want %d", len(rows), want)
	}
	var prev int64
	for i, r := range rows {
		if !strings.Contains(strings.ToLower(r["_msg"]), word) {
			return fmt.Errorf("row %d's message lacks %q: %.200s", i, word, r["_msg"])
		}
		ts, err := rowTime(r)
		if err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if i > 0 && ts > prev {
			return fmt.Errorf("rows not newest first at row %d", i)
		}
		prev = ts
	}
	return nil
}

// checkVLBuckets checks a `stats by (_time:1m) count() n` answer: buckets
// non-empty minutes (VictoriaLogs gives only those) summing to sum.
func checkVLBuckets(rows []map[string]string, buckets, sum int) error {
	total, nonZero := 0, 0
	seen := make(map[string]bool, len(rows))
	for i, r := range rows {
		n, err := strconv.Atoi(r["n"])
		if err != nil {
			return fmt.Errorf("row %d: count %q: %w", i, r["n"], err)
		}
		if seen[r["_time"]] {
			return fmt.Errorf("minute %s twice", r["_time"])
		}
		seen[r["_time"]] = true
		total += n
		if n > 0 {
			nonZero++
		}
	}
	if nonZero != buckets || total != sum {
		return fmt.Errorf("non-zero buckets=%d sum=%d, want buckets=%d sum=%d", nonZero, total, buckets, sum)
	}
	return nil
}
