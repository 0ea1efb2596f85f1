package logql

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Point is one sample of a result series (T in Unix nanoseconds).
type Point struct {
	T int64
	V float64
}

// Series is one result series.
type Series struct {
	Labels LabelSet
	Points []Point
}

// EvalLimits bound a metric evaluation.
type EvalLimits struct {
	MaxSeries  int // series of the range aggregation
	MaxSamples int // samples held for min/max/avg/quantile_over_time
	MaxSteps   int
}

// Evaluator computes a metric query at the steps start, start+step, ...,
// up to end, from the rows of its log expression (fed in time order).
//
// A step at time t aggregates the lines with t-range <= time < t: a line
// exactly on a step's boundary counts in the window starting there, as in
// shiplog's histograms.
type Evaluator struct {
	expr   Expr
	ra     *RangeAgg
	start  int64
	step   int64
	rng    int64
	n      int
	lim    EvalLimits
	series map[string]*acc
	held   int
	// wanted are the labels an outer by (...) names: attributes among them
	// join the series' labels (as Loki's structured metadata does).
	wanted []string
	// reduce is the grouping of a sum directly over an additive range
	// aggregation: its series can be summed as they are made.
	reduce *Grouping
}

// acc accumulates one series of the range aggregation.
type acc struct {
	labels  LabelSet
	diff    []float64 // difference array of sums (sum-like functions)
	cnt     []int32   // difference array of sample counts
	samples []Point   // for the functions that need every value
}

// NewEvaluator prepares the evaluation of a metric expression.
func NewEvaluator(e Expr, start, end int64, step time.Duration, lim EvalLimits) (*Evaluator, error) {
	ra := RangeOf(e)
	if ra == nil {
		return nil, syntaxf("not a metric query")
	}
	if step <= 0 {
		return nil, syntaxf("step must be positive")
	}
	if end < start {
		return nil, syntaxf("end is before start")
	}
	n := (end-start)/int64(step) + 1
	if n > int64(lim.MaxSteps) {
		return nil, syntaxf("%d steps of %s: the limit is %d; use a larger step or a shorter range", n, step, lim.MaxSteps)
	}
	return &Evaluator{expr: e, ra: ra, start: start, step: int64(step), rng: int64(ra.Range), n: int(n), lim: lim,
		series: map[string]*acc{}, wanted: byLabels(e, nil), reduce: reducible(e)}, nil
}

// reducible is the grouping of the sum directly over e's range aggregation
// when summing early gives the same answer (the range function adds up);
// nil otherwise.
func reducible(e Expr) *Grouping {
	va, ok := e.(*VectorAgg)
	if !ok {
		return nil
	}
	ra, ok := va.Inner.(*RangeAgg)
	if !ok {
		return reducible(va.Inner)
	}
	if va.Op != "sum" || ra.Grouping != nil || needsSamples(ra.Func) {
		return nil
	}
	if va.Grouping == nil {
		return &Grouping{}
	}
	return va.Grouping
}

// byLabels lists the labels of every by (...) of the vector aggregations.
func byLabels(e Expr, out []string) []string {
	va, ok := e.(*VectorAgg)
	if !ok {
		return out
	}
	if va.Grouping != nil && !va.Grouping.Without {
		for _, l := range va.Grouping.Labels {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return byLabels(va.Inner, out)
}

// Span is the time range whose lines the evaluation reads: [start-range, end).
func (ev *Evaluator) Span() (int64, int64) {
	return ev.start - ev.rng, ev.start + int64(ev.n-1)*ev.step
}

// Steps is the number of evaluation steps.
func (ev *Evaluator) Steps() int { return ev.n }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func needsSamples(fn string) bool {
	switch fn {
	case "avg_over_time", "min_over_time", "max_over_time", "quantile_over_time":
		return true
	}
	return false
}

// seriesLabels are the labels of the range aggregation's series for row.
func (ev *Evaluator) seriesLabels(row *Row) LabelSet {
	if r := ev.reduce; r != nil && !r.Without {
		out := make(LabelSet, 0, len(r.Labels))
		for _, n := range r.Labels {
			if v, ok := row.Get(n); ok && v != "" && out.Get(n) == "" {
				out = append(out, Label{n, v})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	g := ev.ra.Grouping
	if r := ev.reduce; r != nil {
		g = r // sum without (...): the same labels go now
	}
	ls := row.Labels()
	for _, n := range ev.wanted {
		if ls.Get(n) != "" {
			continue
		}
		if v, ok := row.Get(n); ok && v != "" {
			ls = append(slices.Clone(ls), Label{n, v})
			sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
		}
	}
	if ev.ra.Unwrap != "" {
		ls = slices.DeleteFunc(slices.Clone(ls), func(l Label) bool { return l.Name == ev.ra.Unwrap })
	}
	if g == nil {
		return ls
	}
	if g.Without {
		return slices.DeleteFunc(slices.Clone(ls), func(l Label) bool { return slices.Contains(g.Labels, l.Name) })
	}
	out := make(LabelSet, 0, len(g.Labels))
	for _, n := range g.Labels {
		if v, ok := row.Get(n); ok && v != "" {
			out = append(out, Label{n, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (ev *Evaluator) get(ls LabelSet) (*acc, error) {
	key := ls.Key()
	a := ev.series[key]
	if a == nil {
		if len(ev.series) >= ev.lim.MaxSeries {
			return nil, fmt.Errorf("%w: the query makes more than %d series; group by fewer labels or select fewer streams", ErrUnsupported, ev.lim.MaxSeries)
		}
		a = &acc{labels: ls}
		if !needsSamples(ev.ra.Func) {
			a.diff = make([]float64, ev.n+1)
			a.cnt = make([]int32, ev.n+1)
		}
		ev.series[key] = a
	}
	return a, nil
}

// Add feeds one row that passed the pipeline.
func (ev *Evaluator) Add(row *Row) error {
	v := 1.0
	switch ev.ra.Func {
	case "bytes_over_time", "bytes_rate":
		v = float64(len(row.Line))
	case "count_over_time", "rate":
	default:
		s, ok := row.Get(ev.ra.Unwrap)
		if !ok {
			return nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil // not a number: the line has no sample
		}
		v = f
	}
	a, err := ev.get(ev.seriesLabels(row))
	if err != nil {
		return err
	}
	ts := row.Rec.Time
	if a.samples != nil || needsSamples(ev.ra.Func) {
		if ev.held >= ev.lim.MaxSamples {
			return fmt.Errorf("%w: the query holds more than %d samples; narrow the range or the selector", ErrUnsupported, ev.lim.MaxSamples)
		}
		ev.held++
		a.samples = append(a.samples, Point{ts, v})
		return nil
	}
	// The steps t with t-range <= ts < t.
	ev.addRange(a, floorDiv(ts-ev.start, ev.step)+1, floorDiv(ts+ev.rng-ev.start, ev.step), v, 1)
	return nil
}

func (ev *Evaluator) addRange(a *acc, k0, k1 int64, v float64, c int32) {
	k0 = max(k0, 0)
	k1 = min(k1, int64(ev.n-1))
	if k0 > k1 {
		return
	}
	a.diff[k0] += v
	a.diff[k1+1] -= v
	a.cnt[k0] += c
	a.cnt[k1+1] -= c
}

// CanAddCounts reports whether AddCount may be used: counting functions only.
func (ev *Evaluator) CanAddCounts() bool {
	switch ev.ra.Func {
	case "count_over_time", "rate":
		return ev.ra.Grouping == nil
	}
	return false
}

// AddCount feeds count lines of the series ls in [b, b+width): the bucket must
// lie inside every window it is counted in (width divides range and step, and
// b is aligned to it).
func (ev *Evaluator) AddCount(ls LabelSet, b int64, width time.Duration, count int) error {
	if count == 0 {
		return nil
	}
	a, err := ev.get(ls)
	if err != nil {
		return err
	}
	w := int64(width)
	// The steps t with t-range <= b and b+w <= t.
	k0 := floorDiv(b+w-ev.start+ev.step-1, ev.step)
	k1 := floorDiv(b+ev.rng-ev.start, ev.step)
	ev.addRange(a, k0, k1, float64(count), int32(count))
	return nil
}

// Result evaluates every step.
func (ev *Evaluator) Result() []Series {
	// The range aggregation, series by series.
	inner := make([]Series, 0, len(ev.series))
	for _, a := range ev.series {
		s := Series{Labels: a.labels}
		if a.samples != nil {
			s.Points = ev.windowed(a.samples)
		} else {
			sum, c := 0.0, int32(0)
			for k := 0; k < ev.n; k++ {
				sum += a.diff[k]
				c += a.cnt[k]
				if c <= 0 {
					continue
				}
				v := math.Round(sum*1e9) / 1e9 // undo float drift of the running sum
				switch ev.ra.Func {
				case "rate", "bytes_rate":
					v /= float64(ev.rng) / 1e9
				}
				s.Points = append(s.Points, Point{ev.start + int64(k)*ev.step, v})
			}
		}
		if len(s.Points) > 0 {
			inner = append(inner, s)
		}
	}
	out := ev.aggregate(ev.expr, inner)
	sort.Slice(out, func(i, j int) bool { return out[i].Labels.Key() < out[j].Labels.Key() })
	return out
}

// windowed computes a value function over each step's window of samples
// (in time order).
func (ev *Evaluator) windowed(ss []Point) []Point {
	sort.SliceStable(ss, func(i, j int) bool { return ss[i].T < ss[j].T })
	var out []Point
	lo, hi := 0, 0
	var buf []float64
	for k := 0; k < ev.n; k++ {
		t := ev.start + int64(k)*ev.step
		for hi < len(ss) && ss[hi].T < t {
			hi++
		}
		for lo < hi && ss[lo].T < t-ev.rng {
			lo++
		}
		if lo >= hi {
			continue
		}
		w := ss[lo:hi]
		var v float64
		switch ev.ra.Func {
		case "sum_over_time":
			for _, p := range w {
				v += p.V
			}
		case "avg_over_time":
			for _, p := range w {
				v += p.V
			}
			v /= float64(len(w))
		case "min_over_time":
			v = w[0].V
			for _, p := range w {
				v = min(v, p.V)
			}
		case "max_over_time":
			v = w[0].V
			for _, p := range w {
				v = max(v, p.V)
			}
		case "quantile_over_time":
			buf = buf[:0]
			for _, p := range w {
				buf = append(buf, p.V)
			}
			v = quantile(ev.ra.Param, buf)
		}
		out = append(out, Point{t, v})
	}
	return out
}

// quantile is Prometheus' quantile: linear interpolation between the closest
// ranks.
func quantile(q float64, vs []float64) float64 {
	sort.Float64s(vs)
	if len(vs) == 1 {
		return vs[0]
	}
	rank := q * float64(len(vs)-1)
	lo := math.Floor(rank)
	hi := math.Ceil(rank)
	w := rank - lo
	return vs[int(lo)]*(1-w) + vs[int(hi)]*w
}

// Start is the first step's time.
func (ev *Evaluator) Start() int64 { return ev.start }

// Step is the time between steps.
func (ev *Evaluator) Step() time.Duration { return time.Duration(ev.step) }
