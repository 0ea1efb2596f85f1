package query_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/shiplog/shiplog/query"
)

// TestSketchQuantiles checks every quantile of mixed-sign values, merged
// from two sketches, within the sketch's relative error.
func TestSketchQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b query.Sketch
	var vals []float64
	for i := range 20000 {
		v := math.Exp(rng.NormFloat64()*3) * float64(1-2*(i%5/4))
		if i%97 == 0 {
			v = 0
		}
		vals = append(vals, v)
		if i%2 == 0 {
			a.Add(v)
		} else {
			b.Add(v)
		}
	}
	a.Merge(&b)
	sort.Float64s(vals)
	if a.Count() != int64(len(vals)) {
		t.Fatalf("count %d, want %d", a.Count(), len(vals))
	}
	for _, q := range []float64{0, 0.01, 0.1, 0.2, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals)-1))]
		got := a.Quantile(q)
		if math.Abs(got-want) > query.SketchAccuracy*math.Abs(want) {
			t.Errorf("q=%v: %v, want %v within 1%%", q, got, want)
		}
	}
	var empty query.Sketch
	if !math.IsNaN(empty.Quantile(0.5)) {
		t.Fatal("empty sketch has a quantile")
	}
}

func TestSplitAggs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                 nil,
		"count":                            {"count"},
		"quantile(0.99,latency_ms),avg(x)": {"quantile(0.99,latency_ms)", "avg(x)"},
		"quantile(0.5, a), count , sum(b)": {"quantile(0.5, a)", " count ", " sum(b)"},
	} {
		if got := query.SplitAggs(in); !slices.Equal(got, want) {
			t.Errorf("SplitAggs(%q) = %q, want %q", in, got, want)
		}
	}
}
