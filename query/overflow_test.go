package query_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	. "github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// Steps and ranges whose bucket arithmetic would overflow int64 are refused
// with a bad-query error, never a panic in a worker goroutine.
func TestHistogramHugeStepsAndRanges(t *testing.T) {
	s := openStore(t, store.DefaultOptions())
	now := time.Now()
	appendRecords(t, s, []model.Record{{Time: now.UnixNano(), Message: "hello world", Labels: model.Labels{Service: "a"}}})
	e := New(s, Options{})
	q, err := Parse("hello")
	if err != nil {
		t.Fatal(err)
	}
	// The largest step makes one bucket from the epoch.
	b, err := e.Histogram(context.Background(), q, model.TimeRange{Start: now.Add(-time.Hour).UnixNano(), End: now.Add(time.Hour).UnixNano()}, time.Duration(math.MaxInt64))
	if err != nil || len(b) != 1 || b[0].Count != 1 {
		t.Fatalf("largest step: %+v %v", b, err)
	}
	for _, c := range []struct {
		tr   model.TimeRange
		step time.Duration
	}{
		{model.TimeRange{Start: math.MinInt64 / 2, End: math.MaxInt64 / 2}, 106000 * 24 * time.Hour},
		{model.TimeRange{Start: math.MinInt64, End: math.MaxInt64}, time.Minute},
	} {
		_, err := e.Histogram(context.Background(), q, c.tr, c.step)
		if !errors.Is(err, ErrBadQuery) {
			t.Fatalf("range %v step %s: err %v, want a bad-query error", c.tr, c.step, err)
		}
	}
	for _, in := range []string{"1680-01-01T00:00:00Z", "2262-01-01T00:00:00Z", "-5"} {
		if _, err := ParseTime(in, now); err == nil {
			t.Fatalf("ParseTime(%q) accepted", in)
		}
	}
}
