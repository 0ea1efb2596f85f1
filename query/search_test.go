package query_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// searchData is 150 instants 29 minutes apart from 20:00 on 2026-03-01 (four
// day partitions), at each of which 4 streams log (identical timestamps
// across streams, ties broken by id), plus a second line of stream 0 every 10
// instants (identical timestamps within a stream). The append order is
// shuffled, so chunks overlap in time.
func searchData() []model.Record {
	return generate(genOptions{
		start: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC), ticks: 150, step: 29 * time.Minute,
		streams: 4, services: 3, dupEvery: 10, shuffle: true, seed: 7,
	})
}

// filterCase is a query with the brute-force predicate it must agree with.
type filterCase struct {
	query string
	match func(r model.Record) bool
}

func filterCases(recs []model.Record) []filterCase {
	idWord := ""
	for _, r := range recs {
		if _, after, ok := cut(r.Message, "request_id="); ok {
			idWord = after
			break
		}
	}
	return []filterCase{
		{"", func(model.Record) bool { return true }},
		{"alpha", func(r model.Record) bool { return hasWord(r.Message, "alpha") }},
		{"level:error", func(r model.Record) bool { return level(r) == model.LevelError }},
		{"level:info", func(r model.Record) bool { return level(r) == model.LevelInfo }},
		{"service:svc-0 level:warn", func(r model.Record) bool { return r.Service == "svc-0" && level(r) == model.LevelWarn }},
		{"alpha OR service:svc-2", func(r model.Record) bool { return hasWord(r.Message, "alpha") || r.Service == "svc-2" }},
		{"n:>=100 -host:host-1", func(r model.Record) bool { n, _ := attrNum(r, "n"); return n >= 100 && r.Host != "host-1" }},
		{"again", func(r model.Record) bool { return hasWord(r.Message, "again") }},
		// Every line of the stream's chunks matches: the text of those
		// whose lines fit in the page is loaded with their times.
		{"host:host-2", func(r model.Record) bool { return r.Host == "host-2" }},
		{idWord, func(r model.Record) bool { return hasWord(r.Message, idWord) }},
	}
}

func cut(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// TestSearchPaging pages through every match in both orders and checks the
// pages add up to the full sorted set: same records, same order, none twice.
func TestSearchPaging(t *testing.T) {
	recs := searchData()
	s := loadGenerated(t, recs, 16)
	e := query.New(s, query.DefaultOptions())
	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, less)
	tick := func(k int) int64 { return sorted[0].Time + int64(k)*int64(29*time.Minute) }
	ranges := []struct {
		name string
		tr   model.TimeRange
	}{
		{"all", everything},
		// start is inclusive and end exclusive, to the nanosecond.
		{"ticks 40-99", model.TimeRange{Start: tick(40), End: tick(100)}},
		{"ticks 41-100", model.TimeRange{Start: tick(40) + 1, End: tick(100) + 1}},
		{"one tick", model.TimeRange{Start: tick(70), End: tick(70) + 1}},
		{"day two", model.TimeRange{Start: model.DayStart(model.Day(tick(20))), End: model.DayStart(model.Day(tick(20)) + 1)}},
		{"empty", model.TimeRange{Start: tick(5) + 1, End: tick(6)}},
	}
	for _, fc := range filterCases(recs) {
		q := mustParse(t, fc.query)
		for _, rg := range ranges {
			var want []model.ID
			for _, r := range sorted {
				if rg.tr.Contains(r.Time) && fc.match(r) {
					want = append(want, r.ID)
				}
			}
			for _, limit := range []int{7, 100} {
				for _, asc := range []bool{true, false} {
					name := fmt.Sprintf("%q/%s/limit=%d/asc=%v", fc.query, rg.name, limit, asc)
					t.Run(name, func(t *testing.T) {
						got := searchAll(t, e, q, rg.tr, asc, limit)
						ids := make([]model.ID, len(got))
						for i, r := range got {
							ids[i] = r.ID
						}
						w := slices.Clone(want)
						if !asc {
							slices.Reverse(w)
						}
						if !slices.Equal(ids, w) {
							t.Fatalf("%d records, want %d; first difference at %d", len(ids), len(w), firstDiff(ids, w))
						}
					})
				}
			}
		}
	}

	// One record a page, across chunks, streams and days.
	t.Run("limit=1", func(t *testing.T) {
		tr := model.TimeRange{Start: tick(44), End: tick(52)}
		var want []model.ID
		for _, r := range sorted {
			if tr.Contains(r.Time) {
				want = append(want, r.ID)
			}
		}
		for _, asc := range []bool{true, false} {
			got := searchAll(t, e, mustParse(t, ""), tr, asc, 1)
			w := slices.Clone(want)
			if !asc {
				slices.Reverse(w)
			}
			ids := make([]model.ID, len(got))
			for i, r := range got {
				ids[i] = r.ID
			}
			if !slices.Equal(ids, w) {
				t.Fatalf("asc=%v: %d records, want %d; first difference at %d", asc, len(ids), len(w), firstDiff(ids, w))
			}
		}
	})
}

func firstDiff(a, b []model.ID) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSearchRecords checks that records come back whole, their text loaded
// with their times (a label query whose matches fit in the page) or after
// the scan.
func TestSearchRecords(t *testing.T) {
	recs := searchData()
	s := loadGenerated(t, recs, 16)
	e := query.New(s, query.DefaultOptions())
	byID := map[model.ID]model.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	for _, qs := range []string{"", "level:error", "alpha", "host:host-0", "service:svc-1"} {
		for _, r := range searchAll(t, e, mustParse(t, qs), everything, false, 1000) {
			want := byID[r.ID]
			want.Level = level(want)
			if r.Time != want.Time || r.Labels != want.Labels || r.Level != want.Level || r.Message != want.Message ||
				r.Seq != want.Seq || !slices.Equal(r.Attrs, want.Attrs) {
				t.Fatalf("%q: got %+v\nwant %+v", qs, r, want)
			}
		}
	}
}

func TestSearchErrors(t *testing.T) {
	s := openStore(t, testOptions(16))
	e := query.New(s, query.Options{MaxLimit: 50})
	ctx := context.Background()
	if _, err := e.Search(ctx, query.SearchParams{Range: everything, Limit: 51}); !errors.Is(err, query.ErrBadQuery) {
		t.Errorf("limit above the maximum: %v", err)
	}
	for _, c := range []string{"!", "AAAA", "not a cursor", "AA", "_w"} {
		if _, err := e.Search(ctx, query.SearchParams{Range: everything, Cursor: c}); !errors.Is(err, query.ErrBadQuery) {
			t.Errorf("cursor %q: %v", c, err)
		}
	}
	// An empty or inverted range holds nothing.
	for _, tr := range []model.TimeRange{{Start: 5, End: 5}, {Start: 6, End: 5}} {
		res, err := e.Search(ctx, query.SearchParams{Range: tr, Limit: 10})
		if err != nil || len(res.Records) != 0 || res.NextCursor != "" {
			t.Errorf("range %v: %+v, %v", tr, res, err)
		}
	}
}

// textCounter is a store that counts the chunks whose text is loaded after
// their times.
type textCounter struct {
	*store.Store
	loadText atomic.Int32
}

func (c *textCounter) LoadText(ctx context.Context, l *store.Lines) error {
	c.loadText.Add(1)
	return c.Store.LoadText(ctx, l)
}

// A label query whose every match fits in the page loads each sealed
// chunk's text with its times, in one read; when they do not fit, the
// text of the chunks with hits is loaded after the scan. Both answer the
// same.
func TestSearchLoadsTextWithTimes(t *testing.T) {
	recs := searchData()
	c := &textCounter{Store: loadGenerated(t, recs, 16)}
	e := query.New(c, query.DefaultOptions())
	q := mustParse(t, "host:host-0")
	var want []model.Record
	for _, r := range recs {
		if r.Host == "host-0" {
			r.Level = level(r)
			want = append(want, r)
		}
	}
	slices.SortFunc(want, less)
	for _, limit := range []int{1000, len(want), 10} {
		c.loadText.Store(0)
		got := searchAll(t, e, q, everything, true, limit)
		if len(got) != len(want) {
			t.Fatalf("limit %d: %d records, want %d", limit, len(got), len(want))
		}
		for i, r := range got {
			w := want[i]
			if r.ID != w.ID || r.Time != w.Time || r.Labels != w.Labels || r.Level != w.Level || r.Message != w.Message ||
				r.Seq != w.Seq || !slices.Equal(r.Attrs, w.Attrs) {
				t.Fatalf("limit %d, record %d: got %+v\nwant %+v", limit, i, r, w)
			}
		}
		if n := c.loadText.Load(); (limit >= len(want)) != (n == 0) {
			t.Errorf("limit %d (%d matches): text loaded after the scan for %d chunks", limit, len(want), n)
		}
	}
}
