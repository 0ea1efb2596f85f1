package metrics

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// The benchmark data set: 1,000 counter series x{service="s00".."s19",
// instance="i00".."i49"} scraped every 15 s for 24 h (5,760 samples each,
// 5.76 M in all), sent as remote write does: 2,000 samples a request, every
// series in time order.
const (
	benchSeries   = 1000
	benchInterval = 15 * time.Second
	benchSpan     = 24 * time.Hour
	benchPerReq   = 2 // samples per series per request
)

func benchLabels() [][]model.Label {
	out := make([][]model.Label, benchSeries)
	for i := range out {
		out[i] = []model.Label{
			{Name: "__name__", Value: "x"},
			{Name: "instance", Value: fmt.Sprintf("i%02d", i%50)},
			{Name: "service", Value: fmt.Sprintf("s%02d", i/50)},
		}
	}
	return out
}

// ingestBench writes the data set ending at end and returns the samples written.
func ingestBench(tb testing.TB, st *store.Store, end time.Time) int {
	ls := benchLabels()
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, benchSeries)
	steps := int(benchSpan / benchInterval)
	start := end.Add(-time.Duration(steps-1) * benchInterval)
	batch := make([]model.Series, benchSeries)
	n := 0
	for k := 0; k < steps; k += benchPerReq {
		for i := range batch {
			ss := make([]model.Sample, 0, benchPerReq)
			for j := k; j < min(k+benchPerReq, steps); j++ {
				vals[i] += float64(rng.IntN(20)) // a counter: requests in 15 s
				ss = append(ss, model.Sample{T: start.Add(time.Duration(j) * benchInterval).UnixMilli(), V: vals[i]})
			}
			batch[i] = model.Series{Labels: ls[i], Samples: ss}
			n += len(ss)
		}
		if _, err := st.AppendSamples(context.Background(), batch); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// cpuTime is the CPU time this process has used (user and system): on a
// shared machine it is steadier than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func diskUsage(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// BenchmarkIngest writes the whole data set per iteration (run it with
// -benchtime 1x) and reports samples per second and, once the store is
// closed, bytes per sample on disk (Badger, all of it).
func BenchmarkIngest(b *testing.B) {
	b.ReportAllocs()
	var samples int
	var elapsed, cpu time.Duration
	var disk int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		st, err := store.Open(dir, store.DefaultOptions(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		samples += ingestBench(b, st, time.Now().Add(-time.Minute))
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		disk += diskUsage(filepath.Join(dir, "badger"))
		b.StartTimer()
	}
	b.ReportMetric(float64(samples)/elapsed.Seconds(), "samples/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(samples), "cpu-ns/sample")
	b.ReportMetric(float64(disk)/float64(samples), "disk-B/sample")
}

var (
	benchOnce  sync.Once
	benchStore *store.Store
	benchEnd   time.Time
)

// benchFixture opens a store with the data set, closed and opened again so
// that every chunk is read from Badger.
func benchFixture(b *testing.B) *store.Store {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shiplog-metrics-bench")
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.Open(dir, store.DefaultOptions(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchEnd = time.Now().Add(-time.Minute).Truncate(time.Minute)
		ingestBench(b, st, benchEnd)
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		if benchStore, err = store.Open(dir, store.DefaultOptions(), nil, nil); err != nil {
			b.Fatal(err)
		}
	})
	return benchStore
}

// BenchmarkQueryRange24h is sum by (service) (rate(x[5m])) over the 1,000
// series and 24 h at a 1-minute step (1,441 points a series).
func BenchmarkQueryRange24h(b *testing.B) {
	st := benchFixture(b)
	q := NewQueryable(st, DefaultOptions())
	e := NewEngine(DefaultOptions(), nil, nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		qry, err := e.NewRangeQuery(context.Background(), q, nil, `sum by (service) (rate(x[5m]))`, benchEnd.Add(-benchSpan), benchEnd, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		res := qry.Exec(context.Background())
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		m, err := res.Matrix()
		if err != nil || len(m) != 20 {
			b.Fatalf("%d series, %v", len(m), err)
		}
		qry.Close()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// BenchmarkQueryInstant is the same expression at one instant (an alert rule's query).
func BenchmarkQueryInstant(b *testing.B) {
	st := benchFixture(b)
	q := NewQueryable(st, DefaultOptions())
	e := NewEngine(DefaultOptions(), nil, nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		qry, err := e.NewInstantQuery(context.Background(), q, nil, `sum by (service) (rate(x[5m]))`, benchEnd)
		if err != nil {
			b.Fatal(err)
		}
		if res := qry.Exec(context.Background()); res.Err != nil {
			b.Fatal(res.Err)
		}
		qry.Close()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
