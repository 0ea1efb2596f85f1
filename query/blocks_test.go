package query_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// A rare word in chunks of several message blocks (some of which a search
// skips): search, histogram and stats find exactly its lines, in any case and
// behind escape sequences, and a word in no line finds none.
func TestSearchWordBlocks(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, testOptions(2000), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var recs []model.Record
	want := map[int]bool{3: true, 700: true, 1999: true, 2600: true}
	for i := 0; i < 3000; i++ {
		msg := fmt.Sprintf("request %d done", i)
		if want[i] {
			msg = []string{"DEADLOCK found", "dead\x1b[31mlock found", "a deadlock found", "Deadlock: found"}[len(recs)%4]
		}
		recs = append(recs, model.Record{Time: t0.Add(time.Duration(i) * time.Second).UnixNano(),
			Labels: model.Labels{Service: "api", Host: fmt.Sprintf("h%d", i%2)}, Message: msg})
	}
	appendRecords(t, st, recs)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = store.Open(dir, testOptions(2000), nil, nil); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := query.New(st, query.DefaultOptions())
	tr := model.TimeRange{Start: t0.UnixNano(), End: t0.Add(time.Hour).UnixNano()}
	for _, tc := range []struct {
		q    string
		want int
	}{{"deadlock", 4}, {"deadlock found", 4}, {"deadlock host:h0", 2}, {"nosuchword", 0}, {"request", 2996}} {
		q := mustParse(t, tc.q)
		res, err := e.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) != tc.want {
			t.Fatalf("%s: %d records, want %d", tc.q, len(res.Records), tc.want)
		}
		for _, r := range res.Records {
			if tc.want == 4 && !want[int(time.Duration(r.Time-t0.UnixNano())/time.Second)] {
				t.Fatalf("%s: line %q", tc.q, r.Message)
			}
		}
		h, err := e.Histogram(context.Background(), q, tr, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 1 || h[0].Count != tc.want {
			t.Fatalf("%s: histogram %v, want %d", tc.q, h, tc.want)
		}
		sr, err := e.Stats(context.Background(), query.StatsParams{Query: q, Range: tr, By: []string{"host"}})
		if err != nil {
			t.Fatal(err)
		}
		if sr.Total != int64(tc.want) {
			t.Fatalf("%s: stats total %d, want %d", tc.q, sr.Total, tc.want)
		}
	}
}
