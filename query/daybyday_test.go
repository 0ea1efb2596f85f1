package query_test

import (
	"context"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// countingStore records the days of the candidates a search takes.
type countingStore struct {
	*store.Store
	mu   sync.Mutex
	days []uint32
}

func (c *countingStore) Candidates(ctx context.Context, tr model.TimeRange, cond *store.Cond, asc bool) iter.Seq2[[]store.ChunkRef, error] {
	return func(yield func([]store.ChunkRef, error) bool) {
		for refs, err := range c.Store.Candidates(ctx, tr, cond, asc) {
			if err == nil {
				c.mu.Lock()
				c.days = append(c.days, refs[0].Meta.Day)
				c.mu.Unlock()
			}
			if !yield(refs, err) {
				return
			}
		}
	}
}

// A newest-first page over 30 days that the newest day fills reads that
// day's candidates only; paging on with the cursor through every day gives
// every line once, in order, oldest first too.
func TestSearchDayByDay(t *testing.T) {
	st := openStore(t, testOptions(16))
	day0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var recs []model.Record
	for d := 0; d < 30; d++ {
		for i := 0; i < 40; i++ {
			recs = append(recs, model.Record{Time: day0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute).UnixNano(),
				Labels: model.Labels{Service: "api", Host: "h"}, Message: "request done"})
		}
	}
	appendRecords(t, st, recs)
	cs := &countingStore{Store: st}
	eng := query.New(cs, query.DefaultOptions())
	q, err := query.Parse("service:api")
	if err != nil {
		t.Fatal(err)
	}
	tr := model.TimeRange{Start: day0.UnixNano(), End: day0.Add(30 * 24 * time.Hour).UnixNano()}
	res, err := eng.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 30 || res.Records[0].Time != recs[len(recs)-1].Time {
		t.Fatalf("first page: %d records", len(res.Records))
	}
	if len(cs.days) != 1 || cs.days[0] != model.Day(day0.Add(29*24*time.Hour).UnixNano()) {
		t.Fatalf("the first page took candidates of days %v", cs.days)
	}
	for _, asc := range []bool{false, true} {
		var got []int64
		cursor := ""
		for {
			res, err := eng.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: 70, Cursor: cursor, Asc: asc})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Records {
				got = append(got, r.Time)
			}
			if cursor = res.NextCursor; cursor == "" {
				break
			}
		}
		if len(got) != len(recs) {
			t.Fatalf("asc=%v: paged %d records, want %d", asc, len(got), len(recs))
		}
		for i, tm := range got {
			want := recs[i].Time
			if !asc {
				want = recs[len(recs)-1-i].Time
			}
			if tm != want {
				t.Fatalf("asc=%v: record %d at %d, want %d", asc, i, tm, want)
			}
		}
	}
}
