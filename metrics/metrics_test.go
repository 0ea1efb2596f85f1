package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

func openStore(t testing.TB, o store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func lbls(name string, kv ...string) []model.Label {
	ls := []model.Label{{Name: model.MetricNameLabel, Value: name}}
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, model.Label{Name: kv[i], Value: kv[i+1]})
	}
	model.SortLabels(ls)
	return ls
}

func appendAll(t testing.TB, st *store.Store, ss ...model.Series) {
	t.Helper()
	if _, err := st.AppendSamples(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
}

func instant(t testing.TB, e *Engine, q storage.Queryable, expr string, ts time.Time) promql.Vector {
	t.Helper()
	qry, err := e.NewInstantQuery(context.Background(), q, nil, expr, ts)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// TestQueryable runs PromQL over samples written in several chunks, out of
// order and across a restart-like overlap, and compares with what the
// samples say.
func TestQueryable(t *testing.T) {
	o := store.DefaultOptions()
	o.Metrics.ChunkMaxSamples = 16 // many chunks per series
	st := openStore(t, o)
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	step := 10 * time.Second
	const n = 100
	for i := 0; i < n; i++ {
		ts := end.Add(-time.Duration(n-1-i) * step).UnixMilli()
		appendAll(t, st,
			model.Series{Labels: lbls("req_total", "svc", "a", "code", "200"), Samples: []model.Sample{{T: ts, V: float64(2 * i)}}},
			model.Series{Labels: lbls("req_total", "svc", "a", "code", "500"), Samples: []model.Sample{{T: ts, V: float64(i)}}},
			model.Series{Labels: lbls("req_total", "svc", "b", "code", "200"), Samples: []model.Sample{{T: ts, V: float64(5 * i)}}},
		)
	}
	// A gauge written newest first: everything after the first sample is
	// out of order.
	for i := n - 1; i >= 0; i-- {
		ts := end.Add(-time.Duration(n-1-i) * step).UnixMilli()
		appendAll(t, st, model.Series{Labels: lbls("temp", "svc", "a"), Samples: []model.Sample{{T: ts, V: float64(i)}}})
	}
	q := NewQueryable(st, DefaultOptions())
	e := NewEngine(DefaultOptions(), nil, nil)

	v := instant(t, e, q, `sum by (svc) (rate(req_total[5m]))`, end)
	got := map[string]float64{}
	for _, s := range v {
		got[s.Metric.Get("svc")] = s.F
	}
	if math.Abs(got["a"]-0.3) > 1e-9 || math.Abs(got["b"]-0.5) > 1e-9 || len(got) != 2 {
		t.Fatalf("rate by svc: %v", got)
	}
	v = instant(t, e, q, `count_over_time(temp[1h])`, end)
	if len(v) != 1 || v[0].F != n {
		t.Fatalf("count_over_time of the out-of-order gauge: %v", v)
	}
	v = instant(t, e, q, `temp offset 10s`, end)
	if len(v) != 1 || v[0].F != n-2 {
		t.Fatalf("temp 10s before the end: %v", v)
	}

	// Every sample comes back once and in order, through Seek and Next.
	qr, _ := q.Querier(0, math.MaxInt64)
	defer qr.Close()
	set := qr.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "req_total"))
	var names []string
	for set.Next() {
		s := set.At()
		names = append(names, s.Labels().String())
		it := s.Iterator(nil)
		prev, k := int64(math.MinInt64), 0
		for it.Next() == chunkenc.ValFloat {
			tt, _ := it.At()
			if tt <= prev {
				t.Fatalf("%s: %d after %d", s.Labels(), tt, prev)
			}
			prev = tt
			k++
		}
		if k != n {
			t.Fatalf("%s: %d samples, want %d", s.Labels(), k, n)
		}
		it = s.Iterator(it)
		mid := end.Add(-time.Duration(n/2) * step).UnixMilli()
		if it.Seek(mid) != chunkenc.ValFloat || it.AtT() != mid {
			t.Fatalf("%s: seek to %d landed on %d", s.Labels(), mid, it.AtT())
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	want := `[{__name__="req_total", code="200", svc="a"} {__name__="req_total", code="200", svc="b"} {__name__="req_total", code="500", svc="a"}]`
	if fmt.Sprint(names) != want {
		t.Fatalf("sorted series:\n%v\nwant\n%v", names, want)
	}
	vals, _, err := qr.LabelValues(context.Background(), "code", nil)
	if err != nil || fmt.Sprint(vals) != "[200 500]" {
		t.Fatalf("label values %v %v", vals, err)
	}
}

func TestLimits(t *testing.T) {
	st := openStore(t, store.DefaultOptions())
	now := time.Now().Add(-time.Minute)
	for i := 0; i < 20; i++ {
		var samples []model.Sample
		for j := 0; j < 50; j++ {
			samples = append(samples, model.Sample{T: now.Add(time.Duration(j-50) * time.Second).UnixMilli(), V: float64(j)})
		}
		appendAll(t, st, model.Series{Labels: lbls("x", "i", fmt.Sprint(i)), Samples: samples})
	}
	e := NewEngine(DefaultOptions(), nil, nil)
	run := func(q *Queryable, expr string) error {
		qry, err := e.NewInstantQuery(context.Background(), q, nil, expr, now)
		if err != nil {
			return err
		}
		defer qry.Close()
		return qry.Exec(context.Background()).Err
	}
	o := DefaultOptions()
	o.MaxSamplesRead = 500
	if err := run(NewQueryable(st, o), `sum(rate(x[5m]))`); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "stored samples") {
		t.Fatalf("samples limit: %v", err)
	}
	o = DefaultOptions()
	o.MaxSamples = 100
	var tooMany promql.ErrTooManySamples
	if err := run(NewQueryable(st, DefaultOptions()), `sum(rate(x[5m]))`); err != nil {
		t.Fatal(err)
	}
	small := NewEngine(o, nil, nil)
	qry, err := small.NewInstantQuery(context.Background(), NewQueryable(st, DefaultOptions()), nil, `x[5m]`, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := qry.Exec(context.Background()).Err; !errors.As(err, &tooMany) {
		t.Fatalf("engine sample limit: %v", err)
	}
	qry.Close()
}

func Example() {
	dir, _ := os.MkdirTemp("", "shiplog-metrics-example")
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		panic(err)
	}
	defer st.Close()
	now := time.Now().Truncate(time.Minute)
	for i := 0; i < 10; i++ {
		t := now.Add(time.Duration(i-9) * 30 * time.Second).UnixMilli()
		_, _ = st.AppendSamples(context.Background(), []model.Series{
			{Labels: []model.Label{{Name: "__name__", Value: "jobs_total"}, {Name: "queue", Value: "mail"}}, Samples: []model.Sample{{T: t, V: float64(3 * i)}}},
		})
	}
	engine := NewEngine(DefaultOptions(), nil, nil)
	qry, _ := engine.NewInstantQuery(context.Background(), NewQueryable(st, DefaultOptions()), nil, `rate(jobs_total[2m])`, now)
	defer qry.Close()
	v, _ := qry.Exec(context.Background()).Vector()
	fmt.Printf("%s %.2f/s\n", v[0].Metric.Get("queue"), v[0].F)
	// Output: mail 0.10/s
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "shiplog-metrics-example") }
func osRemoveAll(dir string)       { _ = os.RemoveAll(dir) }

// TestCountManySeries: a selector is bounded by what it loads, not by its
// series: count() over 200,000 series answers (Prometheus does), and a query
// loading more than MaxSamplesRead is still refused.
func TestCountManySeries(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 series")
	}
	st := openStore(t, store.DefaultOptions())
	now := time.Now().Add(-time.Minute)
	const n = 200_000
	batch := make([]model.Series, 0, 10_000)
	for i := 0; i < n; i++ {
		batch = append(batch, model.Series{Labels: lbls("up", "instance", fmt.Sprintf("i%06d", i)),
			Samples: []model.Sample{{T: now.Add(-30 * time.Second).UnixMilli(), V: 1}, {T: now.UnixMilli(), V: 1}}})
		if len(batch) == cap(batch) {
			appendAll(t, st, batch...)
			batch = batch[:0]
		}
	}
	e := NewEngine(DefaultOptions(), nil, nil)
	run := func(q *Queryable, expr string) (promql.Vector, error) {
		qry, err := e.NewInstantQuery(context.Background(), q, nil, expr, now)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(context.Background())
		if res.Err != nil {
			return nil, res.Err
		}
		v, err := res.Vector()
		return append(promql.Vector(nil), v...), err
	}
	v, err := run(NewQueryable(st, DefaultOptions()), `count(up)`)
	if err != nil || len(v) != 1 || v[0].F != n {
		t.Fatalf("count(up) over %d series: %v %v", n, v, err)
	}
	o := DefaultOptions()
	o.MaxSamplesRead = n // the series and their samples are more
	if _, err := run(NewQueryable(st, o), `count(up)`); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "would load more than") {
		t.Fatalf("over the loaded samples limit: %v", err)
	}
	if _, err := run(NewQueryable(st, DefaultOptions()), `count(max_over_time(up[10000d:1ms]))`); !errors.Is(err, ErrLimit) {
		t.Fatalf("hostile query: %v", err)
	}
}
