package query

import (
	"bufio"
	"context"
	"errors"
	"iter"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// seedQueries are the queries of the testdata case files and a few broken ones.
func seedQueries(tb testing.TB) []string {
	tb.Helper()
	out := []string{"", "(", ")", "()", `"`, "/", "a AND", "OR b", "NOT", "word~2", `d:>"2020-01-01"`,
		"-", "+", "a:", ":a", `\`, "a\\", "id:" + strings.Repeat("0", 32), "x:>=1e400", "x:<-0", "/(?i)a|b/"}
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range files {
		if filepath.Base(name) == "fixture.txt" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if i := strings.LastIndex(line, "=>"); i >= 0 && !strings.HasPrefix(line, "#") {
				out = append(out, strings.TrimSpace(line[:i]))
			}
		}
		f.Close()
	}
	return out
}

// fuzzLines are a few lines to evaluate parsed queries on.
func fuzzLines() *store.Lines {
	return &store.Lines{
		Meta:   &store.ChunkMeta{ID: 1, Stream: 2, Day: 3, FirstLine: 4, Count: 4, Labels: model.Labels{Service: "api", Host: "web-1", BuildID: "b", DeployID: "d"}},
		Times:  []int64{1, 2, 3, 4},
		Levels: []model.Level{model.LevelUnset, model.LevelError, model.LevelWarn, model.NumLevels - 1},
		Msgs:   []string{"", "connection refused by db-1", "Ünïcode ✓ 8f3a9c21 \xff", "a b c a b c"},
		Traces: []string{"", "4bf92f", "", ""},
		Spans:  []string{"", "", "00f0", ""},
		Attrs:  [][]model.Attr{nil, {{Key: "status", Value: "500"}}, {{Key: "n", Value: "NaN"}, {Key: "x", Value: ""}}, {{Key: "n", Value: "-1e9"}}},
		Seqs:   []uint64{0, 1, 2, 3},
	}
}

// FuzzParse: the parser never panics, reports every failure as ErrBadQuery,
// and what it accepts can be evaluated.
func FuzzParse(f *testing.F) {
	for _, s := range seedQueries(f) {
		f.Add(s)
	}
	l := fuzzLines()
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("Parse(%q): %v does not wrap ErrBadQuery", s, err)
			}
			return
		}
		if q.String() != s || q.Cond() == nil || q.root == nil {
			t.Fatalf("Parse(%q) = %+v", s, q)
		}
		for i := 0; i < l.Len(); i++ {
			q.root.match(l, i)
			r := l.Record(i)
			q.MatchRecord(&r)
		}
	})
}

// fakeStore is a Store whose methods are its func fields.
type fakeStore struct {
	CandidatesFunc func(ctx context.Context, tr model.TimeRange, c *store.Cond, asc bool) iter.Seq2[[]store.ChunkRef, error]
	LoadFunc       func(ctx context.Context, r store.ChunkRef, text bool) (*store.Lines, error)
	LoadTextFunc   func(ctx context.Context, l *store.Lines) error
}

func (f *fakeStore) Candidates(ctx context.Context, tr model.TimeRange, c *store.Cond, asc bool) iter.Seq2[[]store.ChunkRef, error] {
	return f.CandidatesFunc(ctx, tr, c, asc)
}

func (f *fakeStore) Load(ctx context.Context, r store.ChunkRef, text bool) (*store.Lines, error) {
	return f.LoadFunc(ctx, r, text)
}

func (f *fakeStore) LoadText(ctx context.Context, l *store.Lines) error {
	return f.LoadTextFunc(ctx, l)
}

// oneChunkStore serves the lines of fuzzLines as one chunk.
func oneChunkStore() *fakeStore {
	l := fuzzLines()
	l.Meta.MinT, l.Meta.MaxT = l.Times[0], l.Times[len(l.Times)-1]
	return &fakeStore{
		CandidatesFunc: func(context.Context, model.TimeRange, *store.Cond, bool) iter.Seq2[[]store.ChunkRef, error] {
			return func(yield func([]store.ChunkRef, error) bool) { yield([]store.ChunkRef{{Meta: l.Meta}}, nil) }
		},
		LoadFunc:     func(context.Context, store.ChunkRef, bool) (*store.Lines, error) { return l, nil },
		LoadTextFunc: func(context.Context, *store.Lines) error { return nil },
	}
}

// FuzzCursor: a cursor that is not one the server gave out is refused as a
// bad query, never a panic; one that decodes continues a search after its
// position.
func FuzzCursor(f *testing.F) {
	for _, p := range []position{{}, {t: 2, id: model.ID{Stream: 2, Day: 3, Line: 5}}, {t: -1, id: model.ID{Stream: math.MaxUint64, Day: math.MaxUint32, Line: math.MaxUint32}}, {t: math.MaxInt64}, {t: math.MinInt64}} {
		f.Add(encodeCursor(p))
	}
	for _, s := range []string{"", "!", "AAAA", "____", "AA==", "gICAgICAgICAgAE", "AQIDBA"} {
		f.Add(s)
	}
	e := New(oneChunkStore(), Options{})
	f.Fuzz(func(t *testing.T, c string) {
		p, derr := decodeCursor(c)
		for _, asc := range []bool{true, false} {
			res, err := e.Search(context.Background(), SearchParams{Range: model.TimeRange{Start: math.MinInt64, End: math.MaxInt64}, Cursor: c, Asc: asc, Limit: 2})
			if derr != nil && c != "" {
				if !errors.Is(err, ErrBadQuery) {
					t.Fatalf("cursor %q: %v, want a bad query error", c, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("cursor %q: %v", c, err)
			}
			for _, r := range res.Records {
				if got := (position{t: r.Time, id: r.ID}); c != "" && !better(p, got, asc) {
					t.Fatalf("cursor %q (%+v), asc=%v: record %+v does not come after it", c, p, asc, got)
				}
			}
		}
		if derr == nil {
			if p2, err := decodeCursor(encodeCursor(p)); err != nil || p2 != p {
				t.Fatalf("cursor %+v: round trip gives %+v, %v", p, p2, err)
			}
		}
	})
}

// FuzzStatsParams: any by, aggregate or facet field list either runs or is
// refused with ErrBadQuery, never a crash.
func FuzzStatsParams(f *testing.F) {
	for _, s := range []string{"service", "level,host", "quantile(0.99,latency_ms)", "count_distinct(host)", "sum(", "quantile(,)", "avg(a(b))", "min(message)", "count()"} {
		f.Add(s, s)
	}
	e := New(oneChunkStore(), Options{})
	tr := model.TimeRange{Start: 0, End: math.MaxInt64}
	f.Fuzz(func(t *testing.T, by, agg string) {
		_, err := e.Stats(context.Background(), StatsParams{Range: tr, By: strings.Split(by, ","), Aggs: SplitAggs(agg)})
		if err != nil && !errors.Is(err, ErrBadQuery) {
			t.Fatalf("Stats(by %q, agg %q): %v", by, agg, err)
		}
		_, err = e.Facets(context.Background(), FacetsParams{Range: tr, Fields: strings.Split(by, ",")})
		if err != nil && !errors.Is(err, ErrBadQuery) {
			t.Fatalf("Facets(%q): %v", by, err)
		}
	})
}
