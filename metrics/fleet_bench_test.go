package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// The fleet data set (issue 22): 1,000 counters
// http_requests_total{service="s00".."s19", instance="i00".."i49"} and 1,000
// gauges queue_depth{service, instance, queue="q0".."q9"}, scraped every 15 s
// for 24 h (5,760 samples each, 11.52 M in all), written as remote write
// sends them: 2 samples of every series a request, in time order. The same
// samples go into shiplog's store (kept open, as a running server has it:
// the last chunk of each series still in memory) and into Prometheus' TSDB
// (compacted into 2 h blocks, as a Prometheus server has it after a day),
// and every query is evaluated by the same PromQL engine over both: the
// answers must agree, and the times compare the two storages.
const (
	fleetSeries = 1000 // of each kind
	fleetSteps  = int(benchSpan / benchInterval)
)

// fleetEnd is the time of the last samples, and of the instant queries:
// 2 h 50 m into a UTC day, so that the 24 h span two day partitions and a
// series' open chunk holds its last 201 samples (50 min), as a running
// server's open chunks hold a part of their 480 samples.
var fleetEnd = time.Date(2026, 6, 1, 2, 50, 0, 0, time.UTC)

// fleetQueries are the queries of issue 22's table; range queries are
// evaluated over the 24 h at a 60 s step.
var fleetQueries = []struct {
	name, expr string
	isRange    bool
}{
	{"sum_rate", `sum by (service) (rate(http_requests_total[5m]))`, false},
	{"topk_rate", `topk(5, sum by (instance) (rate(http_requests_total[5m])))`, false},
	{"count_all", `count({__name__=~".+"})`, false},
	{"sum_avg_over_time", `sum by (service) (avg_over_time(queue_depth[1h]))`, false},
	{"range_max_over_time", `max by (queue) (max_over_time(queue_depth[1h]))`, true},
}

func fleetLabels() [][]model.Label {
	out := make([][]model.Label, 0, 2*fleetSeries)
	for i := 0; i < fleetSeries; i++ {
		out = append(out, []model.Label{
			{Name: "__name__", Value: "http_requests_total"},
			{Name: "instance", Value: fmt.Sprintf("i%02d", i%50)},
			{Name: "service", Value: fmt.Sprintf("s%02d", i/50)},
		})
	}
	for i := 0; i < fleetSeries; i++ {
		out = append(out, []model.Label{
			{Name: "__name__", Value: "queue_depth"},
			{Name: "instance", Value: fmt.Sprintf("i%02d", i%50)},
			{Name: "queue", Value: fmt.Sprintf("q%d", i%10)},
			{Name: "service", Value: fmt.Sprintf("s%02d", i/50)},
		})
	}
	return out
}

// fleetRequests calls fn with each remote-write request of the data set
// ending at end (the batch is reused between calls).
func fleetRequests(end time.Time, fn func([]model.Series) error) error {
	ls := fleetLabels()
	rng := rand.New(rand.NewPCG(22, 22))
	vals := make([]float64, len(ls))
	start := end.Add(-time.Duration(fleetSteps-1) * benchInterval)
	batch := make([]model.Series, len(ls))
	for k := 0; k < fleetSteps; k += benchPerReq {
		for i := range batch {
			ss := make([]model.Sample, 0, benchPerReq)
			for j := k; j < min(k+benchPerReq, fleetSteps); j++ {
				if i < fleetSeries {
					vals[i] += float64(rng.IntN(20)) // a counter: requests in 15 s
				} else {
					vals[i] = float64(rng.IntN(500)) // a gauge: a queue's depth
				}
				ss = append(ss, model.Sample{T: start.Add(time.Duration(j) * benchInterval).UnixMilli(), V: vals[i]})
			}
			batch[i] = model.Series{Labels: ls[i], Samples: ss}
		}
		if err := fn(batch); err != nil {
			return err
		}
	}
	return nil
}

// fleetFixture holds the data set in both storages.
type fleetFixture struct {
	end  time.Time
	ship *store.Store
	prom *tsdb.DB
}

var (
	fleetOnce sync.Once
	fleetFix  *fleetFixture
	fleetErr  error
)

func loadFleet(b *testing.B) *fleetFixture {
	fleetOnce.Do(func() { fleetFix, fleetErr = buildFleet() })
	if fleetErr != nil {
		b.Fatal(fleetErr)
	}
	return fleetFix
}

func buildFleet() (*fleetFixture, error) {
	f := &fleetFixture{end: fleetEnd}
	dir, err := os.MkdirTemp("", "shiplog-fleet-bench")
	if err != nil {
		return nil, err
	}
	if f.ship, err = store.Open(dir+"/shiplog", store.DefaultOptions(), nil, nil); err != nil {
		return nil, err
	}
	err = fleetRequests(f.end, func(batch []model.Series) error {
		_, err := f.ship.AppendSamples(context.Background(), batch)
		return err
	})
	if err != nil {
		return nil, err
	}
	opts := tsdb.DefaultOptions()
	if f.prom, err = tsdb.Open(dir+"/prometheus", slog.New(slog.DiscardHandler), nil, opts, nil); err != nil {
		return nil, err
	}
	f.prom.DisableCompactions() // compacted once below, not in the background while measuring
	refs := make([]storage.SeriesRef, 2*fleetSeries)
	var lsets []labels.Labels
	err = fleetRequests(f.end, func(batch []model.Series) error {
		if lsets == nil {
			for _, s := range batch {
				lsets = append(lsets, toLabels(s.Labels))
			}
		}
		app := f.prom.Appender(context.Background())
		for i, s := range batch {
			for _, smp := range s.Samples {
				ref, err := app.Append(refs[i], lsets[i], smp.T, smp.V)
				if err != nil {
					return err
				}
				refs[i] = ref
			}
		}
		return app.Commit()
	})
	if err != nil {
		return nil, err
	}
	f.prom.EnableCompactions()
	if err := f.prom.Compact(context.Background()); err != nil {
		return nil, err
	}
	f.prom.DisableCompactions()
	return f, nil
}

// fleetExec evaluates one of fleetQueries over q; with keep it returns the
// answer: each series' labels and its points "t=v".
func fleetExec(tb testing.TB, e *Engine, q storage.Queryable, end time.Time, expr string, isRange, keep bool) map[string][]string {
	ctx := context.Background()
	var qry promql.Query
	var err error
	if isRange {
		qry, err = e.NewRangeQuery(ctx, q, nil, expr, end.Add(-benchSpan), end, time.Minute)
	} else {
		qry, err = e.NewInstantQuery(ctx, q, nil, expr, end)
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		tb.Fatal(res.Err)
	}
	if !keep {
		return nil
	}
	out := map[string][]string{}
	switch v := res.Value.(type) {
	case promql.Vector:
		for _, s := range v {
			out[s.Metric.String()] = []string{fmt.Sprintf("%d=%g", s.T, s.F)}
		}
	case promql.Matrix:
		for _, s := range v {
			for _, p := range s.Floats {
				out[s.Metric.String()] = append(out[s.Metric.String()], fmt.Sprintf("%d=%g", p.T, p.F))
			}
		}
	default:
		tb.Fatalf("%s: a %s", expr, res.Value.Type())
	}
	return out
}

// BenchmarkFleetQuery runs each query of issue 22's table over shiplog's
// store and over Prometheus' TSDB holding the same samples, with the same
// engine, after checking that both answer the same.
func BenchmarkFleetQuery(b *testing.B) {
	f := loadFleet(b)
	e := NewEngine(DefaultOptions(), nil, nil)
	sources := []struct {
		name string
		q    storage.Queryable
	}{
		{"shiplog", NewQueryable(f.ship, DefaultOptions())},
		{"prometheus", f.prom},
	}
	for _, fq := range fleetQueries {
		want := fleetExec(b, e, sources[1].q, f.end, fq.expr, fq.isRange, true)
		got := fleetExec(b, e, sources[0].q, f.end, fq.expr, fq.isRange, true)
		if err := sameAnswer(got, want); err != nil {
			b.Fatalf("%s: shiplog and Prometheus' TSDB differ: %v", fq.expr, err)
		}
		for _, src := range sources {
			b.Run(fq.name+"/"+src.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					fleetExec(b, e, src.q, f.end, fq.expr, fq.isRange, false)
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// sameAnswer compares two answers point by point, values with a relative
// tolerance (sums may add in another order).
func sameAnswer(got, want map[string][]string) error {
	if len(got) != len(want) || len(want) == 0 {
		return fmt.Errorf("%d series against %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			return fmt.Errorf("%s: %d points against %d", k, len(g), len(w))
		}
		for i := range w {
			if g[i] == w[i] {
				continue
			}
			var gt, wt int64
			var gv, wv float64
			_, err1 := fmt.Sscanf(g[i], "%d=%g", &gt, &gv)
			_, err2 := fmt.Sscanf(w[i], "%d=%g", &wt, &wv)
			if err1 != nil || err2 != nil || gt != wt || math.Abs(gv-wv) > 1e-9*math.Max(math.Abs(gv), math.Abs(wv)) {
				return fmt.Errorf("%s: %s against %s", k, g[i], w[i])
			}
		}
	}
	return nil
}
