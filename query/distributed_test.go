package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// memSearcher is one searcher of a distributed search: a sorted slice that
// answers a page exactly as Engine.Search does (the matching records of the
// range strictly after the cursor, in order, at most Limit of them, and a
// next cursor when the page is full). With max set it answers at most max
// records a page whatever the limit, as a searcher bounded by its own page
// size (or message size) would: then a page with More can be shorter than
// the limit, and the merge must stop at its last record.
type memSearcher struct {
	recs []model.Record
	max  int
}

func (m *memSearcher) Search(_ context.Context, p SearchParams) (*SearchResult, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	if m.max > 0 {
		limit = min(limit, m.max)
	}
	var cur *position
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, err
		}
		cur = &c
	}
	recs := slices.Clone(m.recs)
	sort.Slice(recs, func(i, j int) bool { return Ahead(&recs[i], &recs[j], p.Asc) })
	res := &SearchResult{}
	for i := range recs {
		r := &recs[i]
		pos := position{t: r.Time, id: r.ID}
		if !p.Range.Contains(r.Time) || cur != nil && !better(*cur, pos, p.Asc) {
			continue
		}
		if p.Query != nil && !p.Query.MatchRecord(r) {
			continue
		}
		res.Records = append(res.Records, *r)
		if len(res.Records) == limit {
			res.NextCursor = Cursor(r)
			break
		}
	}
	return res, nil
}

// fanSearcher is what a cluster does with its searchers: the same request
// to each, their pages merged.
type fanSearcher []Searcher

func (f fanSearcher) Search(ctx context.Context, p SearchParams) (*SearchResult, error) {
	pages := make([]Page, len(f))
	for i, s := range f {
		r, err := s.Search(ctx, p)
		if err != nil {
			return nil, err
		}
		pages[i] = Page{Records: r.Records, More: r.NextCursor != ""}
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	return MergePages(pages, limit, p.Asc), nil
}

// drec is a record at second sec (from a fixed base) with an id of stream
// and line.
func drec(sec int64, stream uint64, line uint32) model.Record {
	return model.Record{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano() + sec*int64(time.Second),
		ID: model.ID{Stream: stream, Day: 20513, Line: line}, Message: fmt.Sprintf("s%d l%d", stream, line),
		Labels: model.Labels{Service: "api", Host: fmt.Sprintf("h%d", stream)}}
}

// secs lists the records' seconds (from drec's base), for messages.
func secs(recs []model.Record) []string {
	out := make([]string, len(recs))
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	for i, r := range recs {
		out[i] = fmt.Sprintf("%d/%d.%d", (r.Time-base)/int64(time.Second), r.ID.Stream, r.ID.Line)
	}
	return out
}

func TestMergePages(t *testing.T) {
	a1, a5, a9 := drec(1, 1, 1), drec(5, 1, 2), drec(9, 1, 3)
	b3, b6, b7 := drec(3, 2, 1), drec(6, 2, 2), drec(7, 2, 3)
	c5, c8 := drec(5, 3, 1), drec(8, 3, 2) // c5 ties a5 on time; ids break the tie (stream 1 < 3)
	for _, tc := range []struct {
		name     string
		pages    []Page
		limit    int
		asc      bool
		want     []model.Record
		wantNext *model.Record // nil: no next cursor
	}{
		{name: "nothing", pages: []Page{{}, {}}, limit: 10, asc: true},
		{name: "no pages", limit: 10},
		{name: "asc, everything fits", limit: 10, asc: true,
			pages: []Page{{Records: []model.Record{a1, a5, a9}}, {Records: []model.Record{b3, b6, b7}}, {Records: []model.Record{c5, c8}}},
			want:  []model.Record{a1, b3, a5, c5, b6, b7, c8, a9}},
		{name: "desc, everything fits", limit: 10,
			pages: []Page{{Records: []model.Record{a9, a5, a1}}, {Records: []model.Record{b7, b6, b3}}, {Records: []model.Record{c8, c5}}},
			want:  []model.Record{a9, c8, b7, b6, c5, a5, b3, a1}},
		{name: "asc, limit cuts", limit: 3, asc: true,
			pages:    []Page{{Records: []model.Record{a1, a5, a9}}, {Records: []model.Record{b3, b6, b7}}, {Records: []model.Record{c5, c8}}},
			want:     []model.Record{a1, b3, a5},
			wantNext: &a5},
		{name: "desc, limit cuts", limit: 2,
			pages:    []Page{{Records: []model.Record{a9, a5}, More: true}, {Records: []model.Record{b7, b6}, More: true}, {Records: []model.Record{c8, c5}}},
			want:     []model.Record{a9, c8},
			wantNext: &c8},
		{name: "asc, one searcher has more: stop at its last record", limit: 10, asc: true,
			// The first searcher's page is full at a5: it may hold records
			// between a5 and the others' b6, b7, c8.
			pages:    []Page{{Records: []model.Record{a1, a5}, More: true}, {Records: []model.Record{b3, b6, b7}}, {Records: []model.Record{c5, c8}}},
			want:     []model.Record{a1, b3, a5},
			wantNext: &a5},
		{name: "asc, the horizon is the earliest of several", limit: 10, asc: true,
			pages:    []Page{{Records: []model.Record{a1, a5}, More: true}, {Records: []model.Record{b3}, More: true}, {Records: []model.Record{c5, c8}}},
			want:     []model.Record{a1, b3},
			wantNext: &b3},
		{name: "asc, a tie on time at the horizon is broken by id", limit: 10, asc: true,
			pages:    []Page{{Records: []model.Record{a1, a5, a9}}, {Records: []model.Record{b3}}, {Records: []model.Record{c5}, More: true}},
			want:     []model.Record{a1, b3, a5, c5},
			wantNext: &c5},
		{name: "desc, one searcher has more: stop at its last record", limit: 10,
			pages:    []Page{{Records: []model.Record{a9, a5, a1}}, {Records: []model.Record{b7, b6}, More: true}, {Records: []model.Record{c8, c5}}},
			want:     []model.Record{a9, c8, b7, b6},
			wantNext: &b6},
		{name: "more with everything before the horizon still has a next cursor", limit: 10, asc: true,
			pages:    []Page{{Records: []model.Record{a1}}, {Records: []model.Record{b3, b6}, More: true}},
			want:     []model.Record{a1, b3, b6},
			wantNext: &b6},
		{name: "duplicates removed", limit: 10, asc: true,
			pages: []Page{{Records: []model.Record{a1, a5}}, {Records: []model.Record{a1, b3, a5}}, {Records: []model.Record{a5}}},
			want:  []model.Record{a1, b3, a5}},
		{name: "duplicates removed before the limit counts", limit: 2, asc: true,
			pages:    []Page{{Records: []model.Record{a1, a5}, More: true}, {Records: []model.Record{a1, a5}, More: true}},
			want:     []model.Record{a1, a5},
			wantNext: &a5},
		{name: "same time, other id: not a duplicate", limit: 10, asc: true,
			pages: []Page{{Records: []model.Record{a5}}, {Records: []model.Record{c5}}},
			want:  []model.Record{a5, c5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages := make([]Page, len(tc.pages))
			for i, p := range tc.pages {
				pages[i] = Page{Records: slices.Clone(p.Records), More: p.More}
			}
			res := MergePages(pages, tc.limit, tc.asc)
			if !slices.EqualFunc(res.Records, tc.want, func(a, b model.Record) bool { return a.ID == b.ID && a.Time == b.Time }) {
				t.Fatalf("records %v, want %v", secs(res.Records), secs(tc.want))
			}
			want := ""
			if tc.wantNext != nil {
				want = Cursor(tc.wantNext)
			}
			if res.NextCursor != want {
				t.Fatalf("next cursor %q, want %q (after %v)", res.NextCursor, want, secs(res.Records))
			}
		})
	}
}

// TestMergePagesNextPage follows the cursor of a page cut at a searcher's
// horizon: the next page starts right after it and misses nothing.
func TestMergePagesNextPage(t *testing.T) {
	for _, asc := range []bool{true, false} {
		t.Run(fmt.Sprintf("asc=%v", asc), func(t *testing.T) {
			// Searcher 0 has many records early, the others few and late:
			// every page of 0 is full and its horizon cuts the others' pages.
			var s0, s1, s2 []model.Record
			for i := range 10 {
				s0 = append(s0, drec(int64(i), 1, uint32(i)))
			}
			s1 = []model.Record{drec(2, 2, 0), drec(20, 2, 1), drec(21, 2, 2)}
			s2 = []model.Record{drec(4, 3, 0), drec(4, 3, 1), drec(30, 3, 2)}
			for _, max0 := range []int{0, 2} {
				fan := fanSearcher{&memSearcher{recs: s0, max: max0}, &memSearcher{recs: s1}, &memSearcher{recs: s2}}
				got := pageThrough(t, fan, nil, asc, func(int) int { return 4 })
				want := sortedUnique(asc, s0, s1, s2)
				if !slices.EqualFunc(got, want, sameRecord) {
					t.Fatalf("searcher 0 pages at most %d: paged %v\nwant  %v", max0, secs(got), secs(want))
				}
			}
		})
	}
}

func sameRecord(a, b model.Record) bool { return a.ID == b.ID && a.Time == b.Time }

// pageThrough reads every page of s, the limit of page i being limit(i).
func pageThrough(t testing.TB, s Searcher, q *Query, asc bool, limit func(i int) int) []model.Record {
	t.Helper()
	var out []model.Record
	cursor := ""
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatalf("more than 10000 pages: the cursor does not advance (at %v)", secs(out[max(0, len(out)-3):]))
		}
		lim := limit(i)
		res, err := s.Search(context.Background(), SearchParams{Query: q, Range: model.TimeRange{Start: math.MinInt64, End: math.MaxInt64},
			Limit: lim, Cursor: cursor, Asc: asc})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) > lim {
			t.Fatalf("page %d: %d records over the limit of %d", i, len(res.Records), lim)
		}
		if res.NextCursor != "" && len(res.Records) == 0 {
			t.Fatalf("page %d: a next cursor after an empty page", i)
		}
		out = append(out, res.Records...)
		if res.NextCursor == "" {
			return out
		}
		if want := Cursor(&res.Records[len(res.Records)-1]); res.NextCursor != want {
			t.Fatalf("page %d: next cursor %q is not the last record's %q", i, res.NextCursor, want)
		}
		cursor = res.NextCursor
	}
}

// sortedUnique is every record of the sets once, in the search order.
func sortedUnique(asc bool, sets ...[]model.Record) []model.Record {
	var all []model.Record
	for _, s := range sets {
		all = append(all, s...)
	}
	sort.Slice(all, func(i, j int) bool { return Ahead(&all[i], &all[j], asc) })
	return slices.CompactFunc(all, sameRecord)
}

// TestMergePagesProperty splits random records across three searchers and
// pages through their merged answers with varying limits: every record comes
// exactly once, in the global order.
func TestMergePagesProperty(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := rng.IntN(120)
		spread := int64(1 + rng.IntN(60)) // few distinct seconds: many ties on time
		sets := make([][]model.Record, 3)
		for i := range n {
			r := drec(rng.Int64N(spread), uint64(1+rng.IntN(4)), uint32(i))
			s := rng.IntN(3)
			sets[s] = append(sets[s], r)
			if rng.IntN(10) == 0 { // the same record from a second searcher
				sets[(s+1)%3] = append(sets[(s+1)%3], r)
			}
		}
		fan := make(fanSearcher, 3)
		for i := range fan {
			m := &memSearcher{recs: sets[i]}
			if rng.IntN(3) == 0 {
				m.max = 1 + rng.IntN(5)
			}
			fan[i] = m
		}
		for _, asc := range []bool{true, false} {
			maxLimit := 1 + rng.IntN(15)
			got := pageThrough(t, fan, nil, asc, func(int) int { return 1 + rng.IntN(maxLimit) })
			want := sortedUnique(asc, sets...)
			if !slices.EqualFunc(got, want, sameRecord) {
				t.Fatalf("seed %d asc=%v: paged %d records %v\nwant %d %v", seed, asc, len(got), secs(got), len(want), secs(want))
			}
		}
	}
}

// TestMergePagesEngines is the property over real engines on real stores,
// one per "partition" (distinct stream seeds, as in cluster mode), with and
// without a filter.
func TestMergePagesEngines(t *testing.T) {
	o := store.DefaultOptions()
	o.ChunkMaxLines = 16 // several chunks per stream
	o.ChunkMaxAge, o.Maintenance = time.Hour, time.Hour
	o.BadgerMemTable, o.BadgerCache = 8<<20, 8<<20
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	var engines fanSearcher
	var all []model.Record
	for p := range 3 {
		o.StreamSeed = uint64(p) + 1
		st, err := store.Open(t.TempDir(), o, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		var b model.Batch
		for i := range 150 {
			lv := model.LevelInfo
			if i%7 == 0 {
				lv = model.LevelError
			}
			// Times collide within and across stores.
			b.Records = append(b.Records, model.Record{Time: base + rng.Int64N(40)*int64(time.Millisecond),
				Labels: model.Labels{Service: []string{"api", "web"}[i%2], Host: fmt.Sprintf("h%d", rng.IntN(3))},
				Level:  lv, Message: fmt.Sprintf("p%d line %d", p, i)})
		}
		if res, err := st.Append(context.Background(), b); err != nil || res.Accepted != len(b.Records) {
			t.Fatalf("append: %+v %v", res, err)
		}
		eng := New(st, DefaultOptions())
		engines = append(engines, eng)
		r, err := eng.Search(context.Background(), SearchParams{Range: model.TimeRange{Start: 0, End: math.MaxInt64}, Limit: 1000, Asc: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Records) != 150 {
			t.Fatalf("store %d holds %d records, want 150", p, len(r.Records))
		}
		all = append(all, r.Records...)
	}
	ids := map[model.ID]bool{}
	for _, r := range all {
		if ids[r.ID] {
			t.Fatalf("two records of the stores have the id %s", r.ID)
		}
		ids[r.ID] = true
	}
	for _, qs := range []string{"", "level:error", "service:api"} {
		q, err := Parse(qs)
		if err != nil {
			t.Fatal(err)
		}
		var want []model.Record
		for i := range all {
			if q.MatchRecord(&all[i]) {
				want = append(want, all[i])
			}
		}
		for _, asc := range []bool{true, false} {
			for _, lim := range []int{1, 7, 50} {
				got := pageThrough(t, engines, q, asc, func(int) int { return lim })
				w := sortedUnique(asc, want)
				if len(got) != len(w) {
					t.Fatalf("q=%q asc=%v limit=%d: %d records, want %d", qs, asc, lim, len(got), len(w))
				}
				for i := range got {
					if !sameRecord(got[i], w[i]) || got[i].Message != w[i].Message {
						t.Fatalf("q=%q asc=%v limit=%d: record %d is %s %q, want %s %q", qs, asc, lim, i, got[i].ID, got[i].Message, w[i].ID, w[i].Message)
					}
				}
			}
		}
	}
}

func TestSpecRoundTrip(t *testing.T) {
	recs := []model.Record{
		{Labels: model.Labels{Service: "api", Host: "web-1"}, Level: model.LevelError, Message: "api failed"},
		{Labels: model.Labels{Service: "api", Host: "web-2"}, Level: model.LevelError, Message: "db failed"},
		{Labels: model.Labels{Service: "api", Host: "web-1"}, Level: model.LevelInfo, Message: "api ok"},
		{Labels: model.Labels{Service: "web", Host: "web-1"}, Level: model.LevelError, Message: "api down"},
		{Labels: model.Labels{Service: "web", Host: "web-3"}, Level: model.LevelWarn, Message: "slow"},
	}
	matches := func(q *Query) []bool {
		out := make([]bool, len(recs))
		for i := range recs {
			out[i] = q.MatchRecord(&recs[i])
		}
		return out
	}
	// Spec travels as JSON between nodes.
	travel := func(t *testing.T, s Spec) Spec {
		t.Helper()
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var out Spec
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    *Query
		spec Spec
		want []bool
	}{
		{"parsed", mustParse(t, "level:error api"), Spec{Q: "level:error api"}, []bool{true, false, false, true, false}},
		{"empty", mustParse(t, ""), Spec{}, []bool{true, true, true, true, true}},
		{"context: same service and host", sameHost("api", "web-1"), Spec{Same: true, Service: "api", Host: "web-1"}, []bool{true, false, true, false, false}},
		{"context: other hosts", otherHosts("web-1"), Spec{OtherHost: true, Host: "web-1"}, []bool{false, true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.q.Spec(); got != tc.spec {
				t.Fatalf("Spec() = %+v, want %+v", got, tc.spec)
			}
			if m := matches(tc.q); !slices.Equal(m, tc.want) {
				t.Fatalf("the query matches %v, want %v", m, tc.want)
			}
			q2, err := travel(t, tc.q.Spec()).Query()
			if err != nil {
				t.Fatalf("Spec().Query(): %v", err)
			}
			if m := matches(q2); !slices.Equal(m, tc.want) {
				t.Fatalf("after the round trip the query matches %v, want %v", m, tc.want)
			}
			if q2.String() != tc.q.String() || q2.Spec() != tc.q.Spec() {
				t.Fatalf("after the round trip: %q %+v, want %q %+v", q2.String(), q2.Spec(), tc.q.String(), tc.q.Spec())
			}
			if !reflect.DeepEqual(q2.Cond(), tc.q.Cond()) {
				t.Fatalf("after the round trip the store condition differs: %+v, want %+v", q2.Cond(), tc.q.Cond())
			}
		})
	}
	if _, err := (Spec{Q: "("}).Query(); !errors.Is(err, ErrBadQuery) {
		t.Fatalf("Spec{Q: \"(\"}.Query(): %v, want ErrBadQuery", err)
	}
}

func mustParse(t testing.TB, s string) *Query {
	t.Helper()
	q, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// mapGetter finds records in a map.
type mapGetter map[model.ID]model.Record

func (g mapGetter) Get(id model.ID) (model.Record, error) {
	if r, ok := g[id]; ok {
		return r, nil
	}
	return model.Record{}, fmt.Errorf("record %s: %w", id, store.ErrNotFound)
}

// TestContextOverMerged runs a context request over three searchers: the
// lines before and after come from every searcher holding the same service
// and host, in order.
func TestContextOverMerged(t *testing.T) {
	var sets [3][]model.Record
	g := mapGetter{}
	for i := range 30 {
		r := drec(int64(i), uint64(1+i%3), uint32(i))
		r.Host = []string{"web-1", "web-2"}[i%5/4] // every fifth line on web-2
		sets[i%3] = append(sets[i%3], r)
		g[r.ID] = r
	}
	fan := fanSearcher{&memSearcher{recs: sets[0]}, &memSearcher{recs: sets[1]}, &memSearcher{recs: sets[2]}}
	target := sets[0][5] // line 15, at second 15 on web-1
	res, err := ContextOver(context.Background(), fan, g, ContextParams{ID: target.ID, Before: 3, After: 4, Cross: true, Window: 2 * time.Second, CrossLimit: 10}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	lines := func(recs []model.Record) []uint32 {
		var out []uint32
		for _, r := range recs {
			out = append(out, r.ID.Line)
		}
		return out
	}
	if res.Record.ID != target.ID {
		t.Fatalf("record %s, want %s", res.Record.ID, target.ID)
	}
	if got, want := lines(res.Before), []uint32{11, 12, 13}; !slices.Equal(got, want) {
		t.Errorf("before %v, want %v", got, want)
	}
	if got, want := lines(res.After), []uint32{16, 17, 18, 20}; !slices.Equal(got, want) {
		t.Errorf("after %v, want %v", got, want)
	}
	if got, want := lines(res.Cross), []uint32{14}; !slices.Equal(got, want) {
		t.Errorf("cross %v, want %v", got, want)
	}
	for _, p := range []ContextParams{
		{ID: target.ID, Before: -1},
		{ID: target.ID, After: 1001},
		{ID: target.ID, Before: 1, Cross: true, Window: 2 * time.Hour, CrossLimit: 1},
		{ID: target.ID, Before: 1, Cross: true, Window: time.Second},
	} {
		if _, err := ContextOver(context.Background(), fan, g, p, 1000); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%+v: %v, want ErrBadQuery", p, err)
		}
	}
	if _, err := ContextOver(context.Background(), fan, g, ContextParams{ID: model.ID{Stream: 9}, Before: 1}, 1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
}

func TestCoverage(t *testing.T) {
	var c Coverage
	if c.Partial() || len(c.Missing) != 0 {
		t.Fatalf("zero coverage: partial %v, missing %v", c.Partial(), c.Missing)
	}
	c.Add()
	for i := range 8 {
		c.Add(7-i, 3, 7-i)
	}
	if got, want := c.Missing, []int{0, 1, 2, 3, 4, 5, 6, 7}; !c.Partial() || !slices.Equal(got, want) {
		t.Fatalf("missing %v (partial %v), want %v", got, c.Partial(), want)
	}
}

// partialSearcher answers as a cluster missing partitions would.
type partialSearcher struct {
	Searcher
	missing []int
}

func (p partialSearcher) Search(ctx context.Context, sp SearchParams) (*SearchResult, error) {
	res, err := p.Searcher.Search(ctx, sp)
	if err == nil {
		res.Coverage.Add(p.missing...)
	}
	return res, err
}

// TestContextOverCoverage: what each of a context's searches lacked is in
// the context's answer.
func TestContextOverCoverage(t *testing.T) {
	g := mapGetter{}
	var recs []model.Record
	for i := range 10 {
		r := drec(int64(i), 1, uint32(i))
		recs = append(recs, r)
		g[r.ID] = r
	}
	s := partialSearcher{Searcher: &memSearcher{recs: recs}, missing: []int{4, 2}}
	res, err := ContextOver(context.Background(), s, g, ContextParams{ID: recs[5].ID, Before: 2, After: 2, Cross: true, Window: time.Second, CrossLimit: 4}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Coverage.Missing; !slices.Equal(got, []int{2, 4}) || len(res.Before) != 2 || len(res.After) != 2 {
		t.Fatalf("missing %v, before %d, after %d; want [2 4], 2, 2", got, len(res.Before), len(res.After))
	}
}
