package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

const genLine = `{"time":"2026-01-01T00:00:00.329404665Z","service":"search","host":"search-3b982e","level":"error","build_id":"build-000001","deploy_id":"deploy-ec24a3c5","message":"GET /api failed status=502 error=\"upstream connect error\" request_id=0ed42f1a3d4cbf37 caller=cmd/worker.go:68"}`

// parseLine reads one line as the bench reads its input.
func parseLine(line string) (*shiplogv1.Record, error) {
	recs, err := readJSONL(strings.NewReader(line))
	if err != nil {
		return nil, err
	}
	if len(recs) != 1 {
		return nil, fmt.Errorf("%d records", len(recs))
	}
	return recs[0], nil
}

func TestParseGeneratedLine(t *testing.T) {
	rec, err := parseLine(genLine)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 1, 0, 0, 0, 329404665, time.UTC)
	if got := rec.GetTime().AsTime(); !got.Equal(want) {
		t.Errorf("time = %v, want %v", got, want)
	}
	for _, c := range [][2]string{
		{rec.Service, "search"}, {rec.Host, "search-3b982e"}, {rec.Level, "error"},
		{rec.BuildId, "build-000001"}, {rec.DeployId, "deploy-ec24a3c5"},
		{rec.Message, `GET /api failed status=502 error="upstream connect error" request_id=0ed42f1a3d4cbf37 caller=cmd/worker.go:68`},
	} {
		if c[0] != c[1] {
			t.Errorf("got %q, want %q", c[0], c[1])
		}
	}
	if len(rec.Attributes) != 0 || rec.Seq != 0 || rec.Id != "" {
		t.Errorf("unexpected extra fields: %v", rec)
	}
}

func TestParseEscapesKeysAndAttributes(t *testing.T) {
	line := ` { "time" : "2026-03-04T05:06:07Z", "message":"a\\b\/c\n\t\u00e9\ud83d\ude00 \"q\"",` +
		`"code": 42, "ok":true, "nested":{"x":[1,"}"]}, "nothing":null, "ts_ms_attr":"x\u0041"} `
	rec, err := parseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\\b/c\n\té😀 \"q\""; rec.Message != want {
		t.Errorf("message = %q, want %q", rec.Message, want)
	}
	if got := rec.GetTime().AsTime(); !got.Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) {
		t.Errorf("time = %v", got)
	}
	want := map[string]string{"code": "42", "ok": "true", "nested.x": `[1,"}"]`, "ts_ms_attr": "xA"}
	if len(rec.Attributes) != len(want) {
		t.Errorf("attributes = %v, want %v", rec.Attributes, want)
	}
	for k, v := range want {
		if rec.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, rec.Attributes[k], v)
		}
	}
}

func TestParseNumericTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		`{"time":1767225600}`:                  time.Unix(1767225600, 0),
		`{"time":1767225600123}`:               time.UnixMilli(1767225600123),
		`{"time":1767225600123456789}`:         time.Unix(0, 1767225600123456789),
		`{"time":1767225600.5}`:                time.Unix(1767225600, 5e8),
		`{"time":"2026-01-01T01:00:00+01:00"}`: time.Unix(1767225600, 0),
	} {
		rec, err := parseLine(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := rec.GetTime().AsTime(); !got.Equal(want) {
			t.Errorf("%s: time %v, want %v", in, got, want.UTC())
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":"x"`, `{"a":"x} `, `{"a":"x",}`, `{"a":"x" "b":"y"}`,
		`{"a":"\q"}`, `{"a":"\u12"}`, `{"time":"yesterday"}`, `{"time":"2026-01-01"}`, `{"a":"x"} junk`,
		"{\"a\":\"tab\there\"}", `{a:"x"}`,
	} {
		if rec, err := parseLine(in); err == nil {
			t.Errorf("%q: want an error, got %v", in, rec)
		}
	}
}

func TestInternShares(t *testing.T) {
	recs, err := readJSONL(strings.NewReader(`{"service":"api","host":"h1","message":"m1","k":"1"}` + "\n" + `{"service":"api","host":"h2","message":"m2","k":"2"}`))
	if err != nil || len(recs) != 2 {
		t.Fatal(recs, err)
	}
	if unsafe.StringData(recs[0].Service) != unsafe.StringData(recs[1].Service) {
		t.Error("the two records' service strings are not shared")
	}
}

func TestReadJSONLAndBatches(t *testing.T) {
	in := genLine + "\n\n" + strings.Replace(genLine, "search-3b982e", "h2", 1) + "\r\n"
	for i := 0; i < 8; i++ {
		in += `{"time":"2026-01-01T00:00:01Z","message":"m"}` + "\n"
	}
	recs, err := readJSONL(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 || recs[1].Host != "h2" || recs[9].Message != "m" {
		t.Fatalf("got %d records: %v", len(recs), recs)
	}
	_, err = readJSONL(strings.NewReader(genLine + "\n" + genLine + "\n{broken\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error %v should name line 3", err)
	}

	// 10 records, batches of 3 over 2 senders: c0 gets records 0-2 and 6-8, c1 3-5 and 9.
	per := buildBatches(recs, 3, 2, "ag")
	if len(per) != 2 || len(per[0]) != 2 || len(per[1]) != 2 || len(per[1][1].Records) != 1 {
		t.Fatalf("bad batch layout")
	}
	if per[0][1].Records[0] != recs[6] || per[1][1].Records[0] != recs[9] {
		t.Errorf("records dealt in the wrong order")
	}
	for c, batches := range per {
		var seq uint64
		for _, b := range batches {
			if want := []string{"ag-0", "ag-1"}[c]; b.AgentId != want {
				t.Errorf("agent %q, want %q", b.AgentId, want)
			}
			for _, r := range b.Records {
				seq++
				if r.Seq != seq {
					t.Errorf("sender %d: seq %d, want %d", c, r.Seq, seq)
				}
			}
		}
	}
	// Appending to one batch must not clobber the next one.
	_ = append(per[0][0].Records, recs[9])
	if per[1][0].Records[0] != recs[3] {
		t.Errorf("batches share capacity")
	}
}

// TestAgainstGenerator parses real gen_logs.py output and compares every line with
// encoding/json.
func TestAgainstGenerator(t *testing.T) {
	script, _ := filepath.Abs("../../../shared/bench/gen_logs.py")
	if _, err := os.Stat(script); err != nil {
		t.Skip("gen_logs.py not found")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	out := filepath.Join(t.TempDir(), "logs.jsonl")
	if b, err := exec.Command("python3", script, "-n", "3000", "--keys", "shiplog", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("gen_logs.py: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readJSONL(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3000 {
		t.Fatalf("%d records, want 3000", len(recs))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		r := recs[i]
		tm, _ := time.Parse(time.RFC3339Nano, m["time"])
		if !r.GetTime().AsTime().Equal(tm) || r.Message != m["message"] || r.Service != m["service"] ||
			r.Host != m["host"] || r.Level != m["level"] || r.BuildId != m["build_id"] || r.DeployId != m["deploy_id"] {
			t.Fatalf("line %d: parsed %v, encoding/json says %v", i+1, r, m)
		}
	}
	var exp expectation
	eb, _ := os.ReadFile(out + ".expect.json")
	if err := json.Unmarshal(eb, &exp); err != nil || exp.N != 3000 || exp.ABuild.Count == 0 || exp.EVanishedHost.Host == "" {
		t.Errorf("expect.json: %v %+v", err, exp)
	}
}

func TestFormatStepAndMedian(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", time.Minute: "1m", 90 * time.Second: "90s", 1500 * time.Millisecond: "1500ms"} {
		if got := formatStep(d); got != want {
			t.Errorf("formatStep(%v) = %q, want %q", d, got, want)
		}
	}
	if m := median([]time.Duration{5, 1, 9, 3, 7, 2, 8}); m != 5 {
		t.Errorf("median = %v, want 5", m)
	}
	if m := median([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Errorf("median of even = %v, want 2 ((2+3)/2 rounded down)", m)
	}
}
