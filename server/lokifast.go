package server

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shiplog/shiplog/logql"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// catalog is the catalog one request reads (the cluster's in cluster mode;
// what it lacked becomes the answer's warning).
func (a *lokiAPI) catalog(ctx context.Context) (query.Catalog, error) {
	c, err := a.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	noteCoverage(ctx, c.Coverage)
	return c, nil
}

// streamMatches reports whether a stream's labels pass the selector's
// matchers other than those on level, and it overlaps tr.
func streamMatches(si *store.StreamInfo, ms []logql.Matcher, tr model.TimeRange) bool {
	if si.Lines == 0 || si.Last < tr.Start || si.First >= tr.End {
		return false
	}
	for i := range ms {
		m := &ms[i]
		if m.Name == "level" {
			continue
		}
		if !m.Matches(labelOf(si.Labels, m.Name)) {
			return false
		}
	}
	return true
}

func labelOf(l model.Labels, name string) string {
	switch name {
	case "service":
		return l.Service
	case "host":
		return l.Host
	case "build_id":
		return l.BuildID
	case "deploy_id":
		return l.DeployID
	}
	return ""
}

// streamLevels are the level names of si with lines that pass the level
// matchers of ms.
func streamLevels(si *store.StreamInfo, ms []logql.Matcher) []string {
	var out []string
	for lv := model.Level(0); lv < model.NumLevels; lv++ {
		if si.Levels[lv] == 0 {
			continue
		}
		name := lv.String()
		ok := true
		for i := range ms {
			if ms[i].Name == "level" && !ms[i].Matches(name) {
				ok = false
			}
		}
		if ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// fastCombo is one histogram: the labels it counts for and their terms.
type fastCombo struct {
	labels logql.LabelSet
	terms  []string
}

// fastCombos lists the distinct values of the labels in groups among the
// selected streams, at most lokiMaxFastHist of them.
func (a *lokiAPI) fastCombos(ctx context.Context, le *logql.LogExpr, groups []string, tr model.TimeRange) ([]fastCombo, bool, error) {
	if len(groups) == 0 {
		return []fastCombo{{labels: logql.LabelSet{}}}, true, nil
	}
	cat, err := a.catalog(ctx)
	if err != nil {
		return nil, false, err
	}
	seen := map[string]bool{}
	var out []fastCombo
	streams := cat.Streams()
	for i := range streams {
		si := &streams[i]
		if !streamMatches(si, le.Matchers, tr) {
			continue
		}
		lvs := []string{""}
		if slices.Contains(groups, "level") {
			lvs = streamLevels(si, le.Matchers)
		}
		for _, lv := range lvs {
			var c fastCombo
			for _, g := range groups {
				v := labelOf(si.Labels, g)
				if g == "level" {
					v = lv
				}
				if v != "" {
					c.labels = append(c.labels, logql.Label{Name: g, Value: v})
					c.terms = append(c.terms, g+":"+logql.Quote(v))
				} else {
					c.terms = append(c.terms, "-"+g+":/.+/")
				}
			}
			key := c.labels.Key() + "|" + strings.Join(c.terms, " ")
			if seen[key] {
				continue
			}
			seen[key] = true
			if len(out) >= lokiMaxFastHist {
				return nil, false, nil
			}
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].labels.Key() < out[j].labels.Key() })
	return out, true, nil
}

// evaluateFast counts a count_over_time or rate whose log query is a stream
// selector with line filters, by histograms (which count whole chunks from
// their metadata where they can) instead of reading lines. false when the
// query is not of that kind.
func (a *lokiAPI) evaluateFast(ctx context.Context, e logql.Expr, ev *logql.Evaluator, tl logql.Translation, tr model.TimeRange) (bool, error) {
	if !tl.Exact || !ev.CanAddCounts() {
		return false, nil
	}
	rng, step := int64(logql.Range(e)), int64(ev.Step())
	// Buckets from the first window's start, of a width that divides the
	// range and the step: every window is a run of whole buckets.
	if w := gcd(rng, step); w > 0 {
		if by := sumBy(e); by != nil && len(by) <= query.MaxBy && (tr.End-tr.Start)/w < lokiMaxBuckets && tr.Start == ev.Start()-rng {
			return true, a.evaluateStats(ctx, ev, tl, tr, by, time.Duration(w))
		}
	}
	// Histogram buckets are aligned to the epoch: their width must divide
	// the start too.
	w := gcd(rng, gcd(step, ev.Start()))
	if w <= 0 || (tr.End-tr.Start)/w >= lokiMaxBuckets || tr.Start%w != 0 {
		return false, nil
	}
	groups := fastGroups(e)
	if groups == nil {
		return false, nil
	}
	combos, ok, err := a.fastCombos(ctx, logql.Log(e), groups, tr)
	if err != nil || !ok {
		return false, err
	}
	for _, c := range combos {
		qs := strings.TrimSpace(tl.Query + " " + strings.Join(c.terms, " "))
		q, err := query.Parse(qs)
		if err != nil {
			return false, err
		}
		h, err := a.core.Backend.Histogram(ctx, q, tr, time.Duration(w))
		if err != nil {
			return false, err
		}
		noteCoverage(ctx, h.Coverage)
		for _, b := range h.Buckets {
			if err := ev.AddCount(c.labels, b.Start, time.Duration(w), b.Count); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// evaluateStats counts a sum by (...) of count_over_time or rate with one
// grouped count per bucket of width w (labels, level or attributes).
func (a *lokiAPI) evaluateStats(ctx context.Context, ev *logql.Evaluator, tl logql.Translation, tr model.TimeRange, by []string, w time.Duration) error {
	q, err := query.Parse(tl.Query)
	if err != nil {
		return err
	}
	res, err := a.core.Backend.Stats(ctx, query.StatsParams{Query: q, Range: tr, By: by, Step: w, AlignStart: true, Limit: lokiMaxSeries})
	if err != nil {
		return err
	}
	noteCoverage(ctx, res.Coverage)
	if res.OtherGroups > 0 {
		return invalid("the query makes more than %d series; group by fewer labels or select fewer streams", lokiMaxSeries)
	}
	for _, g := range res.Groups {
		ls := logql.LabelSet{}
		for _, name := range by {
			if v := g.Labels[name]; v != "" {
				ls = append(ls, logql.Label{Name: name, Value: v})
			}
		}
		for _, b := range g.Buckets {
			if err := ev.AddCount(ls, b.Start, w, b.Count); err != nil {
				return err
			}
		}
	}
	return nil
}
