package query_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// TestHistogram compares every bucket with a brute-force count, for
// countable queries (labels and one level, counted from chunk metadata where
// a chunk fits in a bucket) and others, over ranges and steps that do and do
// not line up with the data.
func TestHistogram(t *testing.T) {
	recs := searchData()
	s := loadGenerated(t, recs, 16)
	e := query.New(s, query.DefaultOptions())
	first, last := recs[0].Time, recs[0].Time
	for _, r := range recs {
		first, last = min(first, r.Time), max(last, r.Time)
	}
	ranges := []struct {
		name string
		tr   model.TimeRange
	}{
		{"all", model.TimeRange{Start: first - int64(48*time.Hour), End: last + int64(48*time.Hour)}},
		{"exact", model.TimeRange{Start: first, End: last}}, // the last instant is out
		{"exact+1", model.TimeRange{Start: first, End: last + 1}},
		{"odd", model.TimeRange{Start: first + int64(13*time.Minute+7*time.Second), End: last - int64(3*time.Hour+1)}},
		{"inside one chunk", model.TimeRange{Start: first + int64(20*time.Hour), End: first + int64(20*time.Hour+45*time.Minute)}},
	}
	steps := []time.Duration{time.Minute, 29 * time.Minute, time.Hour, 7 * time.Hour, 24 * time.Hour, 30 * 24 * time.Hour}
	queries := filterCases(recs)
	queries = append(queries,
		filterCase{"service:svc-1", func(r model.Record) bool { return r.Service == "svc-1" }},
		filterCase{"host:host-3 build_id:build-000000", func(r model.Record) bool { return r.Host == "host-3" && r.BuildID == "build-000000" }},
		filterCase{"level:warn", func(r model.Record) bool { return level(r) == model.LevelWarn }},
		filterCase{"NOT service:svc-1", func(r model.Record) bool { return r.Service != "svc-1" }},
		filterCase{"level:error OR level:warn", func(r model.Record) bool { return level(r) == model.LevelError || level(r) == model.LevelWarn }},
		filterCase{"status:500", func(r model.Record) bool { v, _ := r.Attr("status"); return v == "500" }},
	)
	for _, fc := range queries {
		q := mustParse(t, fc.query)
		for _, rg := range ranges {
			for _, step := range steps {
				t.Run(fmt.Sprintf("%q/%s/%s", fc.query, rg.name, step), func(t *testing.T) {
					got, err := e.Histogram(context.Background(), q, rg.tr, step)
					if err != nil {
						t.Fatal(err)
					}
					st := int64(step)
					if len(got) == 0 {
						t.Fatal("no buckets")
					}
					if b := got[0].Start; b%st != 0 || b > rg.tr.Start || b+st <= rg.tr.Start {
						t.Fatalf("first bucket starts at %d; want the multiple of %s holding %d", b, step, rg.tr.Start)
					}
					if b := got[len(got)-1].Start; b >= rg.tr.End || b+st < rg.tr.End {
						t.Fatalf("last bucket starts at %d; want the one holding %d", b, rg.tr.End-1)
					}
					want := make([]int, len(got))
					for _, r := range recs {
						if rg.tr.Contains(r.Time) && fc.match(r) {
							want[(r.Time-got[0].Start)/st]++
						}
					}
					for i, b := range got {
						if b.Start != got[0].Start+int64(i)*st {
							t.Fatalf("bucket %d starts at %d", i, b.Start)
						}
						if b.Count != want[i] {
							t.Errorf("bucket %s: %d, want %d", time.Unix(0, b.Start).UTC().Format(time.RFC3339), b.Count, want[i])
						}
					}
				})
			}
		}
	}
}

func TestHistogramErrors(t *testing.T) {
	s := openStore(t, testOptions(16))
	e := query.New(s, query.Options{MaxBuckets: 10})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		tr   model.TimeRange
		step time.Duration
	}{
		{"zero step", model.TimeRange{Start: 0, End: 100}, 0},
		{"negative step", model.TimeRange{Start: 0, End: 100}, -time.Second},
		{"empty range", model.TimeRange{Start: 100, End: 100}, time.Second},
		{"inverted range", model.TimeRange{Start: 100, End: 0}, time.Second},
		{"too many buckets", model.TimeRange{Start: 0, End: int64(11 * time.Second)}, time.Second},
	} {
		if _, err := e.Histogram(ctx, nil, tc.tr, tc.step); !errors.Is(err, query.ErrBadQuery) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Ten buckets are allowed; a range that starts mid-bucket may need eleven.
	if b, err := e.Histogram(ctx, nil, model.TimeRange{Start: 0, End: int64(10 * time.Second)}, time.Second); err != nil || len(b) != 10 {
		t.Errorf("ten buckets: %d, %v", len(b), err)
	}
	if _, err := e.Histogram(ctx, nil, model.TimeRange{Start: int64(time.Second / 2), End: int64(10 * time.Second)}, time.Second); err != nil {
		t.Errorf("ten buckets from mid-bucket: %v", err)
	}
	if _, err := e.Histogram(ctx, nil, model.TimeRange{Start: int64(time.Second / 2), End: int64(10*time.Second) + 1}, time.Second); !errors.Is(err, query.ErrBadQuery) {
		t.Errorf("eleven buckets: %v", err)
	}
}
