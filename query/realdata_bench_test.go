package query_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// realStore opens the store in $SHIPLOG_BENCH_STORE, first filling it from
// the gen_logs.py lines of $SHIPLOG_BENCH_JSONL when it does not exist yet
// (the benchmark is skipped without them). Records are appended in batches
// of 1,000 as the server would, and the store closed and reopened, so every
// chunk is sealed and indexed.
func realStore(b *testing.B) *store.Store {
	b.Helper()
	dir, src := os.Getenv("SHIPLOG_BENCH_STORE"), os.Getenv("SHIPLOG_BENCH_JSONL")
	if dir == "" {
		b.Skip("SHIPLOG_BENCH_STORE (and SHIPLOG_BENCH_JSONL to fill it) not set")
	}
	if _, err := os.Stat(dir); err != nil {
		if src == "" {
			b.Skip("SHIPLOG_BENCH_JSONL not set")
		}
		fillRealStore(b, dir, src)
	}
	s, err := store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func fillRealStore(b *testing.B, dir, src string) {
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s, err := store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var line struct {
		Time                          time.Time
		Service, Host, Level, Message string
		BuildID                       string `json:"build_id"`
		DeployID                      string `json:"deploy_id"`
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	batch := make([]model.Record, 0, 1000)
	flush := func() {
		if _, err := s.Append(context.Background(), model.Batch{Records: batch}); err != nil {
			b.Fatal(err)
		}
		batch = make([]model.Record, 0, 1000)
	}
	for sc.Scan() {
		line.Time, line.Level = time.Time{}, ""
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			b.Fatal(err)
		}
		lv, _ := model.ParseLevel(line.Level)
		batch = append(batch, model.Record{Time: line.Time.UnixNano(), Level: lv, Message: line.Message,
			Labels: model.Labels{Service: line.Service, Host: line.Host, BuildID: line.BuildID, DeployID: line.DeployID}})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRealData runs the bench tool's queries a (every line of one
// build, oldest first) and b (every line holding a rare word, newest first)
// on a store of gen_logs.py's lines; SHIPLOG_BENCH_BUILD, _WORD and _WANT_A,
// _WANT_B name them (defaults: the 2M-line set's).
func BenchmarkRealData(b *testing.B) {
	s := realStore(b)
	e := query.New(s, query.DefaultOptions())
	build, word := envOr("SHIPLOG_BENCH_BUILD", "build-000123"), envOr("SHIPLOG_BENCH_WORD", "deadlock")
	tr := model.TimeRange{Start: 0, End: 1 << 62}
	for _, bc := range []struct {
		name, q string
		asc     bool
	}{
		{"a-build", "build_id:" + build, true},
		{"b-word", word, false},
	} {
		q, err := query.Parse(bc.q)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			cpu0 := cpuTime()
			for b.Loop() {
				res, err := e.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: 10000, Asc: bc.asc})
				if err != nil {
					b.Fatal(err)
				}
				n = len(res.Records)
			}
			b.ReportMetric(float64(n), "records")
			// CPU time (all threads) is steadier than wall time on a
			// shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// cpuTime is the process' user and system CPU time so far, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
