package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/shiplog/shiplog/store"
)

// TestGuard: hostile expressions are refused with ErrLimit before anything
// is evaluated (on the old engine the first one ran out of memory), and
// everyday ones pass.
func TestGuard(t *testing.T) {
	st := openStore(t, store.DefaultOptions())
	e := NewEngine(DefaultOptions(), nil, nil)
	q := NewQueryable(st, DefaultOptions())
	now := time.Now()
	cases := []struct {
		expr   string
		rng    time.Duration // 0: an instant query
		step   time.Duration
		refuse bool
	}{
		{expr: `max_over_time(vector(1)[10000d:1ms])`, refuse: true},
		{expr: `sum_over_time((max_over_time(vector(1)[1d:1s]))[1d:1s])`, refuse: true},
		{expr: `max_over_time(max_over_time(max_over_time(vector(1)[6h:1s])[6h:1s])[6h:1s])`, refuse: true},
		{expr: `rate(x[100000d])`, refuse: true},
		{expr: `count_over_time(up[1y:1s])`, refuse: true},
		{expr: `vector(1)[5000d:1ms]`, refuse: true},
		{expr: `max_over_time(rate(x[1y])[1y:1m])`, refuse: true},
		{expr: `sum(rate(x[5m])) + max_over_time(vector(1)[1000d:10ms])`, refuse: true},
		{expr: `max_over_time(vector(1)[100d:])`, rng: 7 * 24 * time.Hour, step: time.Minute, refuse: true}, // default step 1m
		{expr: `vector(1)`, rng: 10 * 24 * time.Hour, step: time.Millisecond, refuse: true},                 // 8.6e8 steps
		{expr: `rate(x[1d])`, rng: 10 * 24 * time.Hour, step: time.Minute, refuse: true},                    // 14401 steps
		{expr: `avg_over_time(x[300d:1s] @ 0 offset -1d)`, refuse: true},
		{expr: `max_over_time(vector(1)[1y:1s])`, refuse: true}, // took 3.3 GB before the engine refused it
		{expr: `max_over_time(vector(1)[1d:1s])`, rng: 24 * time.Hour, step: 10 * time.Second, refuse: true},
		// Everyday queries.
		{expr: `sum by (job) (rate(http_requests_total[5m]))`, rng: 7 * 24 * time.Hour, step: time.Minute},
		{expr: `increase(x[1d])`, rng: 30 * 24 * time.Hour, step: 15 * time.Minute},
		{expr: `max_over_time(rate(x[5m])[1d:1m])`, rng: 7 * 24 * time.Hour, step: time.Minute},
		{expr: `avg_over_time(x[30d:1m])`},
		{expr: `sum_over_time((max_over_time(rate(x[5m])[1h:1m]))[1d:5m])`, rng: 24 * time.Hour, step: 5 * time.Minute},
		{expr: `max_over_time(vector(1)[10d:1m])`},
		{expr: `rate(x[1y])`},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, rng: 24 * time.Hour, step: 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			var err error
			if c.rng == 0 {
				_, err = e.NewInstantQuery(context.Background(), q, nil, c.expr, now)
			} else {
				_, err = e.NewRangeQuery(context.Background(), q, nil, c.expr, now.Add(-c.rng), now, c.step)
			}
			if got := errors.Is(err, ErrLimit); got != c.refuse {
				t.Fatalf("refused %v (err %v), want %v", got, err, c.refuse)
			}
			if c.refuse {
				t.Log(err)
			}
		})
	}
	// A query the parser refuses keeps the parser's error.
	if _, err := e.NewInstantQuery(context.Background(), q, nil, `rate(x[5m]`, now); err == nil || errors.Is(err, ErrLimit) {
		t.Fatalf("bad query: %v", err)
	}
}

func TestEstimatePoints(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, c := range []struct {
		expr string
		span time.Duration // 0: an instant query
		want float64
	}{
		{`vector(1)`, 0, 1},
		{`vector(1)`, 99 * time.Second, 100},
		{`rate(x[1m])`, 0, 1 + 4}, // 60s/15s
		// 60 points read by max_over_time, 61 evaluations of vector(1).
		{`max_over_time(vector(1)[1m:1s])`, 0, 1 + 60 + 61},
		{`max_over_time(vector(1)[1m:1s])`, 9 * time.Second, 10 + 10*60 + 70},
		{`max_over_time(rate(x[1m])[1m:1s])`, 0, 1 + 121 + 61*4},
		{`max_over_time(max_over_time(vector(1)[1m:1s])[1m:1s])`, 0, 1 + 121 + 61*60 + 121},
		{`max_over_time(vector(1)[2m:])`, 0, 1 + 2 + 3}, // default step 1m
	} {
		expr, err := p.ParseExpr(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := EstimatePoints(expr, c.span, time.Second).Points; got != c.want {
			t.Errorf("%s over %v: %v points, want %v", c.expr, c.span, got, c.want)
		}
	}
}
