package query_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// statsData is searchData with a latency_ms attribute on most records (a
// spread of values, some not numbers, some missing) and a path attribute.
func statsData() []model.Record {
	recs := searchData()
	for i := range recs {
		r := &recs[i]
		n, _ := strconv.Atoi(r.Attrs[0].Value)
		r.Attrs = slices.Clone(r.Attrs)
		switch {
		case i%11 == 0: // no latency
		case i%13 == 0:
			r.Attrs = append(r.Attrs, model.Attr{Key: "latency_ms", Value: "n/a"})
		default:
			v := float64((n*37+i)%1000) * math.Pow(1.01, float64(i%300))
			r.Attrs = append(r.Attrs, model.Attr{Key: "latency_ms", Value: strconv.FormatFloat(v, 'f', 3, 64)})
		}
		r.Attrs = append(r.Attrs, model.Attr{Key: "path", Value: fmt.Sprintf("/p/%d", i%7)})
	}
	return recs
}

// fieldOf is a record's value for a by field, as Stats groups it.
func fieldOf(r model.Record, f string) string {
	switch f {
	case "service":
		return r.Service
	case "host":
		return r.Host
	case "build_id":
		return r.BuildID
	case "deploy_id":
		return r.DeployID
	case "level":
		return level(r).String()
	}
	v, _ := r.Attr(f)
	return v
}

type bruteGroup struct {
	labels  []string
	count   int64
	buckets map[int64]int64
	vals    []float64
}

// brute groups the matching records of recs by hand.
func brute(recs []model.Record, match func(model.Record) bool, tr model.TimeRange, by []string, step int64, attr string) (map[string]*bruteGroup, int64) {
	out := map[string]*bruteGroup{}
	var skipped int64
	for _, r := range recs {
		if !tr.Contains(r.Time) || !match(r) {
			continue
		}
		var vals []string
		for _, f := range by {
			vals = append(vals, fieldOf(r, f))
		}
		k := strings.Join(vals, "\x00")
		g := out[k]
		if g == nil {
			g = &bruteGroup{labels: vals, buckets: map[int64]int64{}}
			out[k] = g
		}
		g.count++
		if step > 0 {
			g.buckets[r.Time-((r.Time%step)+step)%step]++
		}
		if s, ok := r.Attr(attr); ok && attr != "" {
			if v, err := strconv.ParseFloat(s, 64); err == nil {
				g.vals = append(g.vals, v)
			} else {
				skipped++
			}
		}
	}
	return out, skipped
}

func groupKey(g query.StatsGroup, by []string) string {
	var vals []string
	for _, f := range by {
		vals = append(vals, g.Labels[f])
	}
	return strings.Join(vals, "\x00")
}

// TestStatsExact compares every group's count, buckets and aggregates with
// a brute-force pass over the same records, for groupings the chunk
// metadata answers and groupings by attribute, over queries of every kind.
func TestStatsExact(t *testing.T) {
	recs := statsData()
	s := loadGenerated(t, recs, 16)
	e := query.New(s, query.DefaultOptions())
	first, last := recs[0].Time, recs[0].Time
	for _, r := range recs {
		first, last = min(first, r.Time), max(last, r.Time)
	}
	all := model.TimeRange{Start: first - int64(time.Hour), End: last + int64(time.Hour)}
	odd := model.TimeRange{Start: first + int64(13*time.Minute+7*time.Second), End: last - int64(3*time.Hour+1)}
	aggs := []string{"count", "sum(latency_ms)", "avg(latency_ms)", "min(latency_ms)", "max(latency_ms)", "quantile(0.99, latency_ms)", "quantile(0.5,latency_ms)", "count_distinct(host)"}
	queries := append(filterCases(recs),
		filterCase{"service:svc-1", func(r model.Record) bool { return r.Service == "svc-1" }},
		filterCase{"level:warn", func(r model.Record) bool { return level(r) == model.LevelWarn }},
		filterCase{"host:host-3 level:error", func(r model.Record) bool { return r.Host == "host-3" && level(r) == model.LevelError }},
		filterCase{"status:500", func(r model.Record) bool { v, _ := r.Attr("status"); return v == "500" }},
	)
	bys := [][]string{nil, {"service"}, {"service", "level"}, {"level", "host"}, {"path"}, {"service", "status", "level", "deploy_id"}}
	for _, fc := range queries {
		for _, by := range bys {
			for _, tr := range []model.TimeRange{all, odd} {
				for _, step := range []time.Duration{0, 7 * time.Hour} {
					for _, withAggs := range []bool{false, true} {
						if withAggs && len(by) > 2 {
							continue
						}
						name := fmt.Sprintf("%q/by=%v/%d/%s/aggs=%v", fc.query, by, tr.Start, step, withAggs)
						t.Run(name, func(t *testing.T) {
							p := query.StatsParams{Query: mustParse(t, fc.query), Range: tr, By: by, Step: step, Limit: 1000}
							attr := ""
							if withAggs {
								p.Aggs, attr = aggs, "latency_ms"
							}
							got, err := e.Stats(context.Background(), p)
							if err != nil {
								t.Fatal(err)
							}
							want, skipped := brute(recs, fc.match, tr, by, int64(step), attr)
							checkStats(t, got, want, skipped, p)
						})
					}
				}
			}
		}
	}
}

func checkStats(t *testing.T, got *query.StatsResult, want map[string]*bruteGroup, skipped int64, p query.StatsParams) {
	t.Helper()
	if len(got.Groups) != len(want) {
		t.Fatalf("%d groups, want %d", len(got.Groups), len(want))
	}
	var total int64
	for _, g := range want {
		total += g.count
	}
	if got.Total != total || got.Other != 0 || got.Skipped != skipped {
		t.Fatalf("total %d other %d skipped %d, want %d, 0, %d", got.Total, got.Other, got.Skipped, total, skipped)
	}
	for i, g := range got.Groups {
		w := want[groupKey(g, p.By)]
		if w == nil {
			t.Fatalf("group %v is not in the data", g.Labels)
		}
		if g.Count != w.count {
			t.Fatalf("group %v: count %d, want %d", g.Labels, g.Count, w.count)
		}
		if i > 0 && got.Groups[i-1].Count < g.Count {
			t.Fatalf("groups not by count, largest first at %d", i)
		}
		if p.Step > 0 {
			var sum int64
			for _, b := range g.Buckets {
				if int64(b.Count) != w.buckets[b.Start] {
					t.Fatalf("group %v bucket %d: %d, want %d", g.Labels, b.Start, b.Count, w.buckets[b.Start])
				}
				sum += int64(b.Count)
			}
			if sum != g.Count {
				t.Fatalf("group %v: buckets sum to %d, count %d", g.Labels, sum, g.Count)
			}
		}
		if p.Aggs != nil {
			checkValues(t, g, w)
		}
	}
}

func checkValues(t *testing.T, g query.StatsGroup, w *bruteGroup) {
	t.Helper()
	if len(w.vals) == 0 {
		if _, ok := g.Values["avg(latency_ms)"]; ok {
			t.Fatalf("group %v: avg without values", g.Labels)
		}
		return
	}
	vals := slices.Clone(w.vals)
	sort.Float64s(vals)
	var sum float64
	for _, v := range vals {
		sum += v
	}
	near := func(name string, got, want, rel float64) {
		if math.Abs(got-want) > rel*math.Abs(want)+1e-9 {
			t.Fatalf("group %v: %s = %v, want %v", g.Labels, name, got, want)
		}
	}
	near("sum", g.Values["sum(latency_ms)"], sum, 1e-9)
	near("avg", g.Values["avg(latency_ms)"], sum/float64(len(vals)), 1e-9)
	near("min", g.Values["min(latency_ms)"], vals[0], 0)
	near("max", g.Values["max(latency_ms)"], vals[len(vals)-1], 0)
	near("p99", g.Values["quantile(0.99, latency_ms)"], vals[int(0.99*float64(len(vals)-1))], query.SketchAccuracy)
	near("p50", g.Values["quantile(0.5,latency_ms)"], vals[int(0.5*float64(len(vals)-1))], query.SketchAccuracy)
	if _, ok := g.Values["count_distinct(host)"]; !ok {
		t.Fatalf("group %v: no count_distinct", g.Labels)
	}
}

// TestStatsLimitOther keeps the largest groups and sums the rest into other.
func TestStatsLimitOther(t *testing.T) {
	recs := statsData()
	e := query.New(loadGenerated(t, recs, 16), query.DefaultOptions())
	want, _ := brute(recs, func(model.Record) bool { return true }, everything, []string{"host", "path"}, 0, "")
	counts := []int64{}
	for _, g := range want {
		counts = append(counts, g.count)
	}
	sort.Slice(counts, func(i, j int) bool { return counts[i] > counts[j] })
	got, err := e.Stats(context.Background(), query.StatsParams{Range: everything, By: []string{"host", "path"}, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != 5 || got.Total != int64(len(recs)) || got.OtherGroups != int64(len(want)-5) {
		t.Fatalf("%d groups, total %d, other groups %d; want 5, %d, %d", len(got.Groups), got.Total, got.OtherGroups, len(recs), len(want)-5)
	}
	var kept int64
	for i, g := range got.Groups {
		if g.Count != counts[i] || want[groupKey(g, []string{"host", "path"})].count != g.Count {
			t.Fatalf("group %d %v: %d, want %d", i, g.Labels, g.Count, counts[i])
		}
		kept += g.Count
	}
	if got.Other != int64(len(recs))-kept {
		t.Fatalf("other %d, want %d", got.Other, int64(len(recs))-kept)
	}
}

// TestStatsBounds refuses requests over the bounds with ErrBadQuery, and a
// grouping over too many groups with ErrTooManyGroups.
func TestStatsBounds(t *testing.T) {
	recs := statsData()
	o := query.DefaultOptions()
	o.MaxGroups = 10
	e := query.New(loadGenerated(t, recs, 16), o)
	bad := []query.StatsParams{
		{Range: everything, By: []string{"a", "b", "c", "d", "e"}},
		{Range: everything, By: []string{"host", "host"}},
		{Range: everything, By: []string{"message"}},
		{Range: everything, Limit: query.MaxStatsLimit + 1},
		{Range: everything, Aggs: []string{"median(x)"}},
		{Range: everything, Aggs: []string{"quantile(2,x)"}},
		{Range: everything, Aggs: []string{"sum(level)"}},
		{Range: everything, Aggs: []string{"sum(x"}},
		{Range: everything, Step: time.Nanosecond},
		{Range: model.TimeRange{Start: 5, End: 5}},
	}
	for _, p := range bad {
		if _, err := e.Stats(context.Background(), p); !errors.Is(err, query.ErrBadQuery) {
			t.Errorf("%+v: err %v, want ErrBadQuery", p, err)
		}
	}
	_, err := e.Stats(context.Background(), query.StatsParams{Range: everything, By: []string{"n"}})
	if !errors.Is(err, query.ErrTooManyGroups) {
		t.Fatalf("by n (150 values, bound 10): err %v, want ErrTooManyGroups", err)
	}
}

// TestStatsPartialMerge splits the records over three stores and merges
// their partials: the answer is the one store's with all the records.
func TestStatsPartialMerge(t *testing.T) {
	recs := statsData()
	var sets [3][]model.Record
	for _, r := range recs {
		sets[r.ID.Stream%3] = append(sets[r.ID.Stream%3], r)
	}
	first, last := recs[0].Time, recs[0].Time
	for _, r := range recs {
		first, last = min(first, r.Time), max(last, r.Time)
	}
	p := query.StatsParams{Query: mustParse(t, "status:500 OR level:error"), Range: model.TimeRange{Start: first, End: last + 1}, By: []string{"service", "level"},
		Aggs: []string{"quantile(0.9,latency_ms)", "avg(latency_ms)", "count_distinct(path)"}, Step: time.Hour, Limit: 3}
	one := query.New(loadGenerated(t, recs, 16), query.DefaultOptions())
	want, err := one.Stats(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*query.StatsPartial
	for _, set := range sets {
		e := query.New(loadGenerated(t, set, 16), query.DefaultOptions())
		part, err := e.StatsPartial(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, part)
	}
	got, err := one.FinishStats(p, parts...)
	if err != nil {
		t.Fatal(err)
	}
	// Sums added in another order may differ in their last bits.
	for _, r := range []*query.StatsResult{got, want} {
		for _, g := range r.Groups {
			for k, v := range g.Values {
				g.Values[k] = float64(float32(v))
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("merged:\n%v\nwant\n%v", got, want)
	}
}
