package store

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiplog/shiplog/model"
)

// TestMetricsSeriesLimit: at MaxSeries, a write's new series are refused
// with their samples (counted in the result and on /metrics) while existing
// series, in the same write and later, keep taking samples, also after a
// restart. Before the limit every new series was indexed, without bound.
func TestMetricsSeriesLimit(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.MaxSeries = 3
	reg := prometheus.NewRegistry()
	s, err := Open(dir, o, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	sr := func(name string, ts ...int64) model.Series {
		x := model.Series{Labels: metricLabels("m", "k", name)}
		for _, tt := range ts {
			x.Samples = append(x.Samples, model.Sample{T: tt, V: 1})
		}
		return x
	}
	write := func(s *Store, want model.MetricsResult, ss ...model.Series) {
		t.Helper()
		res, err := s.AppendSamples(ctx, ss)
		if err != nil {
			t.Fatal(err)
		}
		if res != want {
			t.Fatalf("result %+v, want %+v", res, want)
		}
	}
	write(s, model.MetricsResult{Accepted: 2}, sr("a", t0), sr("b", t0))
	// Room for one more: c is created, d and e (and e again) are refused.
	write(s, model.MetricsResult{Accepted: 2, OverSeriesLimit: 4, NewSeriesRefused: 2, MaxSeries: 3},
		sr("a", t0+1000), sr("c", t0+1000), sr("d", t0+1000), sr("e", t0+1000, t0+2000), sr("e", t0+3000))
	write(s, model.MetricsResult{Accepted: 3}, sr("a", t0+2000), sr("b", t0+2000), sr("c", t0+2000))
	write(s, model.MetricsResult{Accepted: 1, OverSeriesLimit: 1, NewSeriesRefused: 1, MaxSeries: 3}, sr("b", t0+3000), sr("d", t0+3000))
	if got := testutil.ToFloat64(s.ms.m.seriesLimit); got != 3 {
		t.Errorf("shiplog_metrics_series_limit %v, want 3", got)
	}
	if got := testutil.ToFloat64(s.ms.m.seriesRefused); got != 3 {
		t.Errorf("shiplog_metrics_series_refused_total %v, want 3", got)
	}
	got := readAll(t, s, 0, t0+10000, eq(model.MetricNameLabel, "m"))
	if len(got) != 3 || len(got[`m{k="a"}`]) != 3 || len(got[`m{k="b"}`]) != 3 || len(got[`m{k="c"}`]) != 2 {
		t.Fatalf("stored %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart the loaded series count: still no room.
	s = testOpen(t, dir, o)
	defer s.Close()
	write(s, model.MetricsResult{Accepted: 1, OverSeriesLimit: 1, NewSeriesRefused: 1, MaxSeries: 3}, sr("a", t0+4000), sr("f", t0+4000))
	// A larger limit makes room.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.Metrics.MaxSeries = 4
	s = testOpen(t, dir, o)
	defer s.Close()
	write(s, model.MetricsResult{Accepted: 1, OverSeriesLimit: 1, NewSeriesRefused: 1, MaxSeries: 4}, sr("f", t0+5000), sr("g", t0+5000))
}
