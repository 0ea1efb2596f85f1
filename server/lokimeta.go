package server

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shiplog/shiplog/logql"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// selectorOf parses an optional stream selector parameter (nil: every stream).
func selectorOf(s string) (*logql.LogExpr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	e, err := logql.Parse(s)
	if err != nil {
		return nil, err
	}
	le, ok := e.(*logql.LogExpr)
	if !ok {
		return nil, invalid("want a stream selector such as {service=\"api\"}, not a metric query")
	}
	return le, nil
}

// lokiSeries are the label sets (streams with a level) of the selected
// streams over tr.
func (a *lokiAPI) lokiSeries(ctx context.Context, sels []*logql.LogExpr, tr model.TimeRange) ([]logql.LabelSet, []*store.StreamInfo, error) {
	cat, err := a.catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	streams := cat.Streams()
	var out []logql.LabelSet
	var infos []*store.StreamInfo
	for i := range streams {
		si := &streams[i]
		for _, le := range sels {
			var ms []logql.Matcher
			if le != nil {
				ms = le.Matchers
			}
			if !streamMatches(si, ms, tr) {
				continue
			}
			for _, lv := range streamLevels(si, ms) {
				rec := model.Record{Labels: si.Labels}
				rec.Level, _ = model.ParseLevel(lv)
				out = append(out, logql.StreamLabels(&rec))
				infos = append(infos, si)
			}
			break
		}
	}
	return out, infos, nil
}

// selectorRange reads a metadata request's range and its optional
// (required with need) stream selector, the query parameter.
func selectorRange(r *http.Request, need bool) (model.TimeRange, *logql.LogExpr, error) {
	tr, err := lokiRange(r, time.Now())
	if err != nil {
		return tr, nil, err
	}
	le, err := selectorOf(r.FormValue("query"))
	if err == nil && le == nil && need {
		err = invalid("query: want a stream selector")
	}
	return tr, le, err
}

func (a *lokiAPI) labels(ctx context.Context, r *http.Request) (any, error) {
	tr, le, err := selectorRange(r, false)
	if err != nil {
		return nil, err
	}
	series, _, err := a.lokiSeries(ctx, []*logql.LogExpr{le}, tr)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, ls := range series {
		for _, l := range ls {
			if !slices.Contains(names, l.Name) {
				names = append(names, l.Name)
			}
		}
	}
	if slices.Contains(names, "service") {
		names = append(names, "service_name")
	}
	sort.Strings(names)
	return lokiOK(names), nil
}

func (a *lokiAPI) labelValues(ctx context.Context, r *http.Request) (any, error) {
	tr, le, err := selectorRange(r, false)
	if err != nil {
		return nil, err
	}
	name := logql.CanonicalLabel(r.PathValue("name"))
	series, _, err := a.lokiSeries(ctx, []*logql.LogExpr{le}, tr)
	if err != nil {
		return nil, err
	}
	vals := []string{}
	for _, ls := range series {
		if v := ls.Get(name); v != "" && !slices.Contains(vals, v) {
			vals = append(vals, v)
		}
	}
	sort.Strings(vals)
	return lokiOK(vals), nil
}

func (a *lokiAPI) series(ctx context.Context, r *http.Request) (any, error) {
	tr, err := lokiRange(r, time.Now())
	if err != nil {
		return nil, err
	}
	ms := r.Form["match[]"]
	if len(ms) == 0 {
		ms = r.Form["match"]
	}
	if len(ms) > lokiMaxMatches {
		return nil, invalid("%d match[] selectors; the limit is %d", len(ms), lokiMaxMatches)
	}
	sels := []*logql.LogExpr{nil}
	if len(ms) > 0 {
		sels = sels[:0]
		for _, m := range ms {
			le, err := selectorOf(m)
			if err != nil {
				return nil, err
			}
			sels = append(sels, le)
		}
	}
	series, _, err := a.lokiSeries(ctx, sels, tr)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, 0, len(series))
	seen := map[string]bool{}
	for _, ls := range series {
		if k := ls.Key(); !seen[k] {
			seen[k] = true
			out = append(out, ls.Map())
		}
	}
	return lokiOK(out), nil
}

// countOver counts the lines of the shiplog query qs over tr, by histogram.
func (a *lokiAPI) countOver(ctx context.Context, qs string, tr model.TimeRange) (int, error) {
	q, err := query.Parse(qs)
	if err != nil {
		return 0, err
	}
	step := time.Duration(tr.End - tr.Start)
	for (tr.End-tr.Start)/int64(step) >= lokiMaxBuckets-2 {
		step *= 2
	}
	h, err := a.core.Backend.Histogram(ctx, q, tr, max(step, time.Nanosecond))
	if err != nil {
		return 0, err
	}
	noteCoverage(ctx, h.Coverage)
	n := 0
	for _, b := range h.Buckets {
		n += b.Count
	}
	return n, nil
}

// indexStats answers {streams, chunks, entries, bytes} for a selector:
// entries are counted exactly; bytes are not known without reading the
// lines and are 0; chunks are the streams' (shiplog does not list them).
func (a *lokiAPI) indexStats(ctx context.Context, r *http.Request) (any, error) {
	tr, le, err := selectorRange(r, true)
	if err != nil {
		return nil, err
	}
	_, infos, err := a.lokiSeries(ctx, []*logql.LogExpr{le}, tr)
	if err != nil {
		return nil, err
	}
	streams := map[*store.StreamInfo]bool{}
	for _, si := range infos {
		streams[si] = true
	}
	entries := 0
	if tl := logql.Translate(le); len(streams) > 0 && !tl.None && tr.Start < tr.End {
		if entries, err = a.countOver(ctx, tl.Query, tr); err != nil {
			return nil, err
		}
	}
	return map[string]int{"streams": len(streams), "chunks": len(streams), "entries": entries, "bytes": 0}, nil
}

// volume answers /index/volume as a vector of line counts per label set
// (Loki reports bytes; shiplog counts lines), largest first.
func (a *lokiAPI) volume(ctx context.Context, r *http.Request) (any, error) {
	tr, le, err := selectorRange(r, true)
	if err != nil {
		return nil, err
	}
	limit := 100
	if v := r.FormValue("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > lokiMaxFastHist*100 {
			return nil, invalid("limit %q: want 1 to %d", v, lokiMaxFastHist*100)
		}
	}
	var targets []string
	for _, t := range strings.Split(r.FormValue("targetLabels"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			targets = append(targets, logql.CanonicalLabel(t))
		}
	}
	if len(targets) == 0 {
		for _, m := range le.Matchers {
			targets = append(targets, m.Name)
		}
		if r.FormValue("aggregateBy") == "series" {
			targets = lokiStreamLabels
		}
	}
	series, infos, err := a.lokiSeries(ctx, []*logql.LogExpr{le}, tr)
	if err != nil {
		return nil, err
	}
	sums := map[string]*lokiVector{}
	var keys []string
	counts := map[string]uint64{}
	for i, ls := range series {
		g := logql.LabelSet{}
		for _, l := range ls {
			if slices.Contains(targets, l.Name) {
				g = append(g, l)
			}
		}
		k := g.Key()
		if sums[k] == nil {
			sums[k] = &lokiVector{Metric: g.Map()}
			keys = append(keys, k)
		}
		lv, _ := model.ParseLevel(ls.Get("level"))
		counts[k] += infos[i].Levels[lv]
		if lv == model.LevelInfo {
			counts[k] += infos[i].Levels[model.LevelUnset]
		}
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	res := make([]lokiVector, 0, min(len(keys), limit))
	for _, k := range keys[:min(len(keys), limit)] {
		v := sums[k]
		v.Value = promPoint(logql.Point{T: tr.End, V: float64(counts[k])})
		res = append(res, *v)
	}
	return lokiOK(lokiResult{ResultType: "vector", Result: res, Stats: lokiStats{}}), nil
}
