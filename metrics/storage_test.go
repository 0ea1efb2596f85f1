package metrics

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/store"
)

// readStorage returns every series in s as labels -> samples (of a native
// histogram, its count).
func readStorage(t testing.TB, s storage.Queryable) map[string][]float64 {
	t.Helper()
	q, err := s.Querier(0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string][]float64{}
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	for set.Next() {
		it := set.At().Iterator(nil)
		var vs []float64
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				_, v := it.At()
				vs = append(vs, v)
			default:
				_, h := it.AtFloatHistogram(nil)
				vs = append(vs, h.Count)
			}
		}
		out[set.At().Labels().String()] = vs
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStorageAppend(t *testing.T) {
	s := NewStorage(openStore(t, store.DefaultOptions()), Options{})
	ctx := context.Background()
	up := labels.FromStrings("__name__", "up", "job", "a", "zone", "")

	// Rolled back: nothing stored.
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, up, 0, 1000, 1, nil, nil, storage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := readStorage(t, s); len(got) != 0 {
		t.Fatalf("after Rollback: %v", got)
	}

	// Committed, through both appenders; the empty label is no label.
	app = s.AppenderV2(ctx)
	for i, v := range []float64{1, math.Inf(1)} {
		if _, err := app.Append(0, up, 0, int64(1000*(i+1)), v, nil, nil, storage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	hist := labels.FromStrings("__name__", "rpc_seconds", "job", "a")
	if _, err := app.Append(0, hist, 0, 5000, 0, nil, &histogram.FloatHistogram{Count: 2, ZeroCount: 2}, storage.AOptions{}); err != nil {
		t.Fatalf("native histogram: %v", err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	a1 := s.Appender(ctx)
	if _, err := a1.Append(0, up, 3000, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := a1.AppendHistogram(0, hist, 6000, &histogram.Histogram{Count: 3, ZeroCount: 3}, nil); err != nil {
		t.Fatalf("native histogram (v1): %v", err)
	}
	if err := a1.Commit(); err != nil {
		t.Fatal(err)
	}
	got := readStorage(t, s)
	if vs := got[`{__name__="up", job="a"}`]; len(got) != 2 || len(vs) != 3 || vs[0] != 1 || !math.IsInf(vs[1], 1) || vs[2] != 3 {
		t.Fatalf("stored: %v", got)
	}
	// An integer histogram after a float one starts a chunk of its own.
	if hs := got[`{__name__="rpc_seconds", job="a"}`]; len(hs) != 2 || hs[0] != 2 || hs[1] != 3 {
		t.Fatalf("stored histograms: %v", got)
	}

	// A sample the store drops fails the Commit.
	app = s.AppenderV2(ctx)
	if _, err := app.Append(0, up, 0, 3000, 4, nil, nil, storage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err == nil {
		t.Fatal("a duplicate committed without error")
	}
	if _, err := s.AppenderV2(ctx).Append(0, up, 0, -1, 0, nil, nil, storage.AOptions{}); !errors.Is(err, storage.ErrOutOfBounds) {
		t.Fatalf("negative time: %v, want ErrOutOfBounds", err)
	}
}
