package server

// Running LogQL over the store: log queries page through shiplog's search;
// metric queries count with histograms where the query allows it (a stream
// selector and line filters only, counted and summed by stream labels), else
// read the matching lines once and aggregate them.

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/shiplog/shiplog/logql"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// lokiStream is one stream of a streams result.
type lokiStream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

func streamEntries(ss []lokiStream) int {
	n := 0
	for _, s := range ss {
		n += len(s.Values)
	}
	return n
}

// scan pages through the records of q over tr in time order (newest first
// unless asc), handing each to fn until fn returns false, the records run out
// or more than lokiMaxScan were read.
func (a *lokiAPI) scan(ctx context.Context, q *query.Query, tr model.TimeRange, asc bool, page int, fn func(*model.Record) (bool, error)) error {
	cursor := ""
	read := 0
	for {
		res, err := a.core.Backend.Search(ctx, query.SearchParams{Query: q, Range: tr, Limit: page, Cursor: cursor, Asc: asc})
		if err != nil {
			return err
		}
		noteCoverage(ctx, res.Coverage)
		for i := range res.Records {
			more, err := fn(&res.Records[i])
			if err != nil || !more {
				return err
			}
		}
		read += len(res.Records)
		if res.NextCursor == "" {
			return nil
		}
		if read >= lokiMaxScan {
			return invalid("the query reads more than %d lines past its stream selector and line filters; narrow the time range or add line filters", lokiMaxScan)
		}
		cursor = res.NextCursor
	}
}

// logQuery answers a log query: up to limit lines in direction order, as
// streams.
func (a *lokiAPI) logQuery(ctx context.Context, le *logql.LogExpr, tr model.TimeRange, limit int, fwd bool) ([]lokiStream, lokiStats, error) {
	var st lokiStats
	tl := logql.Translate(le)
	out := []lokiStream{}
	if tl.None || tr.Start >= tr.End {
		return out, st, nil
	}
	q, err := query.Parse(tl.Query)
	if err != nil {
		return nil, st, err
	}
	pl := logql.NewPipeline(le)
	idx := map[string]int{}
	kept := 0
	page := limit
	if !tl.Exact {
		page = lokiPage
	}
	err = a.scan(ctx, q, tr, fwd, page, func(rec *model.Record) (bool, error) {
		st.read(rec)
		row, ok := pl.Process(rec)
		if !ok {
			return true, nil
		}
		ls := row.Labels()
		key := ls.Key()
		i, seen := idx[key]
		if !seen {
			i = len(out)
			idx[key] = i
			out = append(out, lokiStream{Stream: ls.Map()})
		}
		out[i].Values = append(out[i].Values, [2]string{strconv.FormatInt(rec.Time, 10), row.Line})
		kept++
		st.Summary.TotalPostFilterLines++
		return kept < limit, nil
	})
	if err != nil {
		return nil, st, err
	}
	sort.Slice(out, func(i, j int) bool { return labelKey(out[i].Stream) < labelKey(out[j].Stream) })
	return out, st, nil
}

func labelKey(m map[string]string) string {
	b, _ := json.Marshal(m) // maps marshal with sorted keys
	return string(b)
}

// lokiMatrix and lokiVector are Loki's (and Prometheus') metric results.
type lokiMatrix struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type lokiVector struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promPoint renders a point as [seconds, "value"].
func promPoint(p logql.Point) [2]any {
	return [2]any{json.Number(strconv.FormatFloat(float64(p.T)/1e9, 'f', -1, 64)), strconv.FormatFloat(p.V, 'f', -1, 64)}
}

func (a *lokiAPI) metricResult(ctx context.Context, e logql.Expr, start, end int64, step time.Duration, instant bool, began time.Time) (any, error) {
	if c, ok := e.(*logql.ConstVector); ok {
		return constResult(c, start, end, step, instant, began)
	}
	ev, err := logql.NewEvaluator(e, start, end, step, logql.EvalLimits{MaxSeries: lokiMaxSeries, MaxSamples: lokiMaxSamples, MaxSteps: lokiMaxSteps})
	if err != nil {
		return nil, err
	}
	var st lokiStats
	if err := a.evaluate(ctx, e, ev, &st); err != nil {
		return nil, err
	}
	series := ev.Result()
	if instant {
		res := make([]lokiVector, 0, len(series))
		for _, s := range series {
			res = append(res, lokiVector{Metric: s.Labels.Map(), Value: promPoint(s.Points[len(s.Points)-1])})
		}
		st.finish(began, len(res))
		return lokiOK(lokiResult{ResultType: "vector", Result: res, Stats: st}), nil
	}
	res := make([]lokiMatrix, 0, len(series))
	n := 0
	for _, s := range series {
		m := lokiMatrix{Metric: s.Labels.Map(), Values: make([][2]any, len(s.Points))}
		for i, p := range s.Points {
			m.Values[i] = promPoint(p)
		}
		n += len(s.Points)
		res = append(res, m)
	}
	st.finish(began, n)
	return lokiOK(lokiResult{ResultType: "matrix", Result: res, Stats: st}), nil
}

// evaluate feeds ev: by histograms when it can, else by reading the lines.
func (a *lokiAPI) evaluate(ctx context.Context, e logql.Expr, ev *logql.Evaluator, st *lokiStats) error {
	le := logql.Log(e)
	tl := logql.Translate(le)
	if tl.None {
		return nil
	}
	from, to := ev.Span()
	tr := model.TimeRange{Start: max(from, 0), End: to}
	if tr.Start >= tr.End {
		return nil
	}
	if ok, err := a.evaluateFast(ctx, e, ev, tl, tr); ok || err != nil {
		return err
	}
	q, err := query.Parse(tl.Query)
	if err != nil {
		return err
	}
	pl := logql.NewPipeline(le)
	return a.scan(ctx, q, tr, true, lokiPage, func(rec *model.Record) (bool, error) {
		st.read(rec)
		row, ok := pl.Process(rec)
		if !ok {
			return true, nil
		}
		st.Summary.TotalPostFilterLines++
		return true, ev.Add(row)
	})
}

var lokiStreamLabels = []string{"build_id", "deploy_id", "host", "level", "service"}

// sumBy is the by (...) list of the sum directly over a counting range
// aggregation (outer aggregations work on its output alone), the one shape
// whose groups can be counted without telling streams apart: nil when e is
// not of that shape; empty for a sum without by.
func sumBy(e logql.Expr) []string {
	va, ok := e.(*logql.VectorAgg)
	if !ok {
		return nil
	}
	if _, inner := va.Inner.(*logql.RangeAgg); !inner {
		return sumBy(va.Inner)
	}
	if va.Op != "sum" {
		return nil
	}
	if va.Grouping == nil {
		return []string{}
	}
	if va.Grouping.Without {
		return nil
	}
	out := []string{}
	for _, l := range va.Grouping.Labels {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// fastGroups are the stream labels the histograms must keep apart: those of
// an outer sum by (...) when that is all the query does with them, else
// every stream label; nil when a group is an attribute.
func fastGroups(e logql.Expr) []string {
	by := sumBy(e)
	if by == nil {
		return lokiStreamLabels
	}
	for _, l := range by {
		if !slices.Contains(lokiStreamLabels, l) {
			return nil
		}
	}
	return by
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// constResult answers vector(n) (Grafana's health check sends
// vector(1)+vector(1)).
func constResult(c *logql.ConstVector, start, end int64, step time.Duration, instant bool, began time.Time) (any, error) {
	var st lokiStats
	if instant {
		st.finish(began, 1)
		return lokiOK(lokiResult{ResultType: "vector", Stats: st,
			Result: []lokiVector{{Metric: map[string]string{}, Value: promPoint(logql.Point{T: end, V: c.V})}}}), nil
	}
	if (end-start)/int64(step) >= lokiMaxSteps {
		return nil, invalid("more than %d steps of %s; use a larger step or a shorter range", lokiMaxSteps, step)
	}
	m := lokiMatrix{Metric: map[string]string{}}
	for t := start; t <= end; t += int64(step) {
		m.Values = append(m.Values, promPoint(logql.Point{T: t, V: c.V}))
	}
	st.finish(began, len(m.Values))
	return lokiOK(lokiResult{ResultType: "matrix", Result: []lokiMatrix{m}, Stats: st}), nil
}
