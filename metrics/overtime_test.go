package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestOverTimeAsPrometheus: the inlined max_over_time and min_over_time
// answer as Prometheus' own functions, NaN, infinities, empty windows and
// histograms mixed in included, annotations too.
func TestOverTimeAsPrometheus(t *testing.T) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(`max_over_time(x[5m])`)
	if err != nil {
		t.Fatal(err)
	}
	args := expr.(*parser.Call).Args
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, -0.0, 1, -1}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		s := promql.Series{Metric: labels.FromStrings("__name__", "x")}
		for j := rng.IntN(6); j > 0; j-- {
			v := rng.NormFloat64()
			if rng.IntN(3) == 0 {
				v = special[rng.IntN(len(special))]
			}
			s.Floats = append(s.Floats, promql.FPoint{T: int64(j), F: v})
		}
		if rng.IntN(5) == 0 {
			s.Histograms = append(s.Histograms, promql.HPoint{T: 9, H: &histogram.FloatHistogram{Count: 1, Sum: 1}})
		}
		m := promql.Matrix{s}
		for _, c := range []struct {
			name       string
			ours, orig promql.FunctionCall
		}{
			{"max_over_time", promql.FunctionCalls["max_over_time"], promMaxOverTime},
			{"min_over_time", promql.FunctionCalls["min_over_time"], promMinOverTime},
		} {
			got, gotAnn := c.ours(nil, m, args, &promql.EvalNodeHelper{})
			want, wantAnn := c.orig(nil, m, args, &promql.EvalNodeHelper{})
			if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotAnn.AsErrors()) != fmt.Sprint(wantAnn.AsErrors()) {
				t.Fatalf("%s of %v: %v %v, Prometheus: %v %v", c.name, s, got, gotAnn.AsErrors(), want, wantAnn.AsErrors())
			}
		}
	}
}
