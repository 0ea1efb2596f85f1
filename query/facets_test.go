package query_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// bruteFacet counts one field's values over the matching records.
func bruteFacet(recs []model.Record, match func(model.Record) bool, name string) map[string]int64 {
	out := map[string]int64{}
	for _, r := range recs {
		if !match(r) {
			continue
		}
		switch name {
		case "service", "host", "build_id", "deploy_id", "level":
			out[fieldOf(r, name)]++
		default:
			if v, ok := r.Attr(name); ok {
				out[v]++
			}
		}
	}
	return out
}

// TestFacetsExact compares every facet with brute-force counts, with the
// default fields (labels, level, attribute keys) and chosen ones.
func TestFacetsExact(t *testing.T) {
	recs := statsData()
	e := query.New(loadGenerated(t, recs, 16), query.DefaultOptions())
	for _, fc := range append(filterCases(recs), filterCase{"service:svc-2", func(r model.Record) bool { return r.Service == "svc-2" }},
		filterCase{"level:error build_id:build-000001", func(r model.Record) bool { return level(r) == model.LevelError && r.BuildID == "build-000001" }}) {
		for _, fields := range [][]string{nil, {"host", "level"}, {"path", "service"}} {
			t.Run(fmt.Sprintf("%q/%v", fc.query, fields), func(t *testing.T) {
				got, err := e.Facets(context.Background(), query.FacetsParams{Query: mustParse(t, fc.query), Range: everything, Fields: fields, Limit: 3})
				if err != nil {
					t.Fatal(err)
				}
				var total int64
				for _, r := range recs {
					if fc.match(r) {
						total++
					}
				}
				if got.Total != total {
					t.Fatalf("total %d, want %d", got.Total, total)
				}
				want := fields
				if want == nil {
					want = []string{"service", "host", "build_id", "deploy_id", "level"}
					if total > 0 {
						want = append(want, "latency_ms", "n", "path", "status")
					}
				}
				if len(got.Fields) != len(want) {
					t.Fatalf("%d fields, want %v", len(got.Fields), want)
				}
				for i, f := range got.Fields {
					if f.Name != want[i] {
						t.Fatalf("field %d is %s, want %s", i, f.Name, want[i])
					}
					vals := bruteFacet(recs, fc.match, f.Name)
					if f.Distinct != int64(len(vals)) || f.Capped {
						t.Fatalf("%s: %d distinct (capped %v), want %d", f.Name, f.Distinct, f.Capped, len(vals))
					}
					var counts []int64
					for _, c := range vals {
						counts = append(counts, c)
					}
					sort.Slice(counts, func(i, j int) bool { return counts[i] > counts[j] })
					if len(f.Values) != min(3, len(vals)) {
						t.Fatalf("%s: %d values", f.Name, len(f.Values))
					}
					for k, v := range f.Values {
						if v.Count != vals[v.Value] || v.Count != counts[k] {
							t.Fatalf("%s=%s: %d, want %d (rank %d: %d)", f.Name, v.Value, v.Count, vals[v.Value], k, counts[k])
						}
					}
				}
			})
		}
	}
	if _, err := e.Facets(context.Background(), query.FacetsParams{Range: everything, Fields: []string{"message"}}); !errors.Is(err, query.ErrBadQuery) {
		t.Fatalf("facets of message: %v, want ErrBadQuery", err)
	}
	if _, err := e.Facets(context.Background(), query.FacetsParams{Range: everything, Limit: query.MaxFacetLimit + 1}); !errors.Is(err, query.ErrBadQuery) {
		t.Fatalf("limit over the bound: %v, want ErrBadQuery", err)
	}
}

// TestFacetsCapped tracks at most the bound of distinct values a field.
func TestFacetsCapped(t *testing.T) {
	var recs []model.Record
	for i := range 3000 {
		recs = append(recs, model.Record{Time: t0.Add(time.Duration(i) * time.Second).UnixNano(), Labels: model.Labels{Service: "s", Host: "h"},
			Message: "m", Attrs: []model.Attr{{Key: "req", Value: fmt.Sprint(i)}}})
	}
	s := openStore(t, testOptions(100))
	appendRecords(t, s, recs)
	o := query.DefaultOptions()
	o.MaxGroups = 100 // facets track max(1000, MaxGroups/10) values a field
	got, err := query.New(s, o).Facets(context.Background(), query.FacetsParams{Range: everything, Fields: []string{"req"}})
	if err != nil {
		t.Fatal(err)
	}
	f := got.Fields[0]
	if !f.Capped || f.Distinct >= 3000 || f.Count != 3000 {
		t.Fatalf("capped %v distinct %d count %d; want capped, < 3000, 3000", f.Capped, f.Distinct, f.Count)
	}
}
