package query_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// slowLines stores n lines of one stream, each long enough that the pattern
// slowPattern costs milliseconds to match (and never matches). With one open
// chunk of them, nothing but the matching loop can notice a done context.
func slowLines(t testing.TB, n int) *query.Engine {
	t.Helper()
	msg := strings.Repeat("abcdefghij ", 200)
	recs := make([]model.Record, n)
	for i := range recs {
		recs[i] = model.Record{Time: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Level: model.LevelInfo,
			Labels: model.Labels{Service: "slow", Host: "h1"}, Message: msg}
	}
	s := openStore(t, testOptions(n+1))
	appendRecords(t, s, recs)
	return query.New(s, query.DefaultOptions())
}

const slowPattern = `/[a-j ]{300}[k-z]/`

func TestMatchingStopsOnCancelledContext(t *testing.T) {
	e := slowLines(t, 300)
	q := mustParse(t, slowPattern)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err := e.Search(ctx, query.SearchParams{Query: q, Range: everything, Limit: 10})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("search on a cancelled context: err %v, want context.Canceled", err)
	}
	_, err = e.Histogram(ctx, q, model.TimeRange{Start: t0.UnixNano(), End: t0.Add(time.Hour).UnixNano()}, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("histogram on a cancelled context: err %v, want context.Canceled", err)
	}
	t.Logf("both answered in %s", time.Since(start))
}

func TestMatchingStopsAtDeadline(t *testing.T) {
	e := slowLines(t, 1000) // about 6 ms a line: 6 s to scan
	q := mustParse(t, slowPattern)
	tr := model.TimeRange{Start: t0.UnixNano(), End: t0.Add(time.Hour).UnixNano()}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"search", func(ctx context.Context) error {
			_, err := e.Search(ctx, query.SearchParams{Query: q, Range: tr, Limit: 10})
			return err
		}},
		{"histogram", func(ctx context.Context) error {
			_, err := e.Histogram(ctx, q, tr, time.Minute)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tc.run(ctx)
			took := time.Since(start)
			t.Logf("ended after %s (deadline 100ms)", took)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

func TestPatternSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		q  string
		ok bool
	}{
		{`/[a-j ]{1000}[k-z]/`, true},
		{`/(error|warn|fatal|panic|timeout|refused)/ host:web-*`, true},
		{`/[a-j ]{1000}[k-z]/ OR /[a-j ]{1000}[k-z]/`, false},
		{`/` + strings.Repeat(`[a-z]{1000}`, 5) + `/`, false},
		{`path:/` + strings.Repeat(`x{900}`, 3) + `/`, false},
	} {
		_, err := query.Parse(tc.q)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%.60q): %v, want ok=%v", tc.q, err, tc.ok)
		}
		if err != nil && !errors.Is(err, query.ErrBadQuery) {
			t.Errorf("Parse(%.60q): %v is not ErrBadQuery", tc.q, err)
		}
	}
}
