package query_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// benchEngine is an engine over 100,000 records: 20 streams of 5 services
// logging every 3 seconds for about four hours, in time order, in chunks of
// 1,024 lines.
func benchEngine(b *testing.B) (*query.Engine, model.TimeRange) {
	b.Helper()
	recs := generate(genOptions{
		start: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), ticks: 5000, step: 3 * time.Second,
		streams: 20, services: 5,
	})
	s := loadGenerated(b, recs, 1024)
	tr := model.TimeRange{Start: recs[0].Time, End: recs[len(recs)-1].Time + 1}
	return query.New(s, query.DefaultOptions()), tr
}

func BenchmarkSearch(b *testing.B) {
	e, tr := benchEngine(b)
	for _, bc := range []struct {
		name, query string
		asc         bool
	}{
		{"all", "", false},
		{"all/asc", "", true},
		{"level", "level:error", false},
		{"labels", "service:svc-1 host:host-11", false},
		{"word", "alpha", false},
		{"phrase", `"from host-7"`, false},
		{"rare-id", fmt.Sprintf("%08x", 1000*7919), false}, // request_id of one line: the bloom filters
		{"rare-word/asc", "items AND n:4321", true},
		{"attr-range", "n:>=4990", false},
		{"regexp", "/items.49[0-9][0-9].from/", false},
		{"not", "NOT alpha -level:info", false},
	} {
		q, err := query.Parse(bc.query)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: 100, Asc: bc.asc}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHistogram(b *testing.B) {
	e, tr := benchEngine(b)
	for _, bc := range []struct {
		name, query string
		step        time.Duration
	}{
		{"all/1m", "", time.Minute},
		{"all/1h", "", time.Hour},
		{"level/1h", "level:error", time.Hour},
		{"labels+level/1m", "service:svc-2 level:warn", time.Minute},
		{"word/1m", "alpha", time.Minute},
		{"attr/1m", "status:500", time.Minute},
	} {
		q, err := query.Parse(bc.query)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Histogram(context.Background(), q, tr, bc.step); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStats(b *testing.B) {
	e, tr := benchEngine(b)
	for _, bc := range []struct {
		name string
		p    query.StatsParams
	}{
		{"service,level", query.StatsParams{By: []string{"service", "level"}}},
		{"host/level:error", query.StatsParams{Query: mustParse(b, "level:error"), By: []string{"host"}}},
		{"host/step", query.StatsParams{By: []string{"host"}, Step: 10 * time.Minute}},
		{"status/word", query.StatsParams{Query: mustParse(b, "alpha"), By: []string{"status"}}},
		{"p99-n/service", query.StatsParams{By: []string{"service"}, Aggs: []string{"quantile(0.99,n)"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.p.Range = tr
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Stats(context.Background(), bc.p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFacets(b *testing.B) {
	e, tr := benchEngine(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Facets(context.Background(), query.FacetsParams{Query: mustParse(b, "service:svc-1"), Range: tr}); err != nil {
			b.Fatal(err)
		}
	}
}
