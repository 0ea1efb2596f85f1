package query

import (
	"context"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Exact aggregations: counts of matching records grouped by up to MaxBy
// fields (labels, level, attribute keys), with numeric aggregates over an
// attribute. Each scan builds a StatsPartial, which merges exactly with
// others (counts and sums add, min and max compare, quantiles merge their
// sketches, distinct values their sets), so a cluster merges the partials
// of its owners into the same answer one node would give.

// ErrTooManyGroups is returned when an aggregation would track more groups
// (or distinct values) than the engine's bound allows.
var ErrTooManyGroups = errors.New("too many groups")

// Bounds of a stats request.
const (
	MaxBy          = 4 // fields to group by
	MaxAggs        = 8 // aggregates of one request
	MaxStatsLimit  = 10000
	DefStatsLimit  = 100
	MaxFacetFields = 32
	MaxFacetLimit  = 1000
	DefFacetLimit  = 10
)

// StatsParams describe a stats request.
type StatsParams struct {
	Query *Query
	Range model.TimeRange
	// By names the fields to group by: service, host, build_id, deploy_id,
	// level, or an attribute key (a record without it has "" there).
	By []string
	// Aggs are aggregates as written: count, count_distinct(f), sum(f),
	// avg(f), min(f), max(f), quantile(q,f). Each group's Values holds
	// them under these names (count is always in Count).
	Aggs []string
	// Step, when set, also counts each group per step (buckets aligned to
	// multiples of Step since the epoch, as Histogram's).
	Step time.Duration
	// AlignStart starts the buckets at Range.Start instead (LogQL's
	// windows end at start + k*step, whatever start is).
	AlignStart bool
	// Limit is the number of groups kept (default 100); the others are
	// summed into Other.
	Limit int
}

// StatsGroup is one group of an answer.
type StatsGroup struct {
	Labels  map[string]string
	Count   int64
	Buckets []Bucket // with Step: every bucket of the range, empty ones included
	// Values holds the numeric aggregates by name; an aggregate with no
	// numeric value in the group is left out.
	Values map[string]float64
}

// StatsResult is the answer to a stats request: Groups by count, largest
// first (ties by labels), Total the matching records, Other the records of
// the groups past Limit, Skipped the attribute values that were not numbers.
type StatsResult struct {
	Groups       []StatsGroup
	Total, Other int64
	Skipped      int64
	OtherGroups  int64 // groups summed into Other
	Coverage     Coverage
}

// field is one field of a grouping or an aggregate.
type field struct {
	name  string // as answered: service, host, build_id, deploy_id, level, or the key
	label string // a store label field, or ""
	level bool
	attr  bool
}

func parseField(s string) (field, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return field{}, badf("empty field name")
	}
	if len(s) > 256 {
		return field{}, badf("field name %.40q... is longer than 256 bytes", s)
	}
	if l, ok := labelField(s); ok {
		return field{name: l, label: l}, nil
	}
	switch s {
	case fLevel:
		return field{name: s, level: true}, nil
	case fMessage, fTrace, fSpan, fID, "time":
		return field{}, badf("cannot group or aggregate by %s: use a label, level or an attribute key", s)
	}
	return field{name: s, attr: true}, nil
}

// value is field f of line i.
func (f *field) value(l *store.Lines, i int) string {
	switch {
	case f.label != "":
		return labelValue(l.Meta, f.label)
	case f.level:
		return levelOf(l.Levels[i]).String()
	}
	v, _ := attrOf(l.Attrs[i], f.name)
	return v
}

func levelOf(lv model.Level) model.Level {
	if lv == model.LevelUnset {
		return model.LevelInfo
	}
	return lv
}

type aggKind uint8

const (
	aggCount aggKind = iota
	aggDistinct
	aggSum
	aggAvg
	aggMin
	aggMax
	aggQuantile
)

// aggSpec is one parsed aggregate.
type aggSpec struct {
	name string // as written (trimmed)
	kind aggKind
	f    field
	q    float64
}

var aggNames = map[string]aggKind{"count_distinct": aggDistinct, "sum": aggSum, "avg": aggAvg,
	"min": aggMin, "max": aggMax, "quantile": aggQuantile}

func parseAgg(s string) (aggSpec, error) {
	s = strings.TrimSpace(s)
	if s == "count" || s == "count()" {
		return aggSpec{name: s, kind: aggCount}, nil
	}
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return aggSpec{}, badf("aggregate %q: want count, count_distinct(f), sum(f), avg(f), min(f), max(f) or quantile(q,f)", s)
	}
	fn, args := strings.TrimSpace(s[:open]), s[open+1:len(s)-1]
	kind, ok := aggNames[fn]
	if !ok {
		return aggSpec{}, badf("aggregate %q: unknown function %q (want count, count_distinct, sum, avg, min, max or quantile)", s, fn)
	}
	a := aggSpec{name: s, kind: kind}
	if kind == aggQuantile {
		qs, f, ok := strings.Cut(args, ",")
		q, err := strconv.ParseFloat(strings.TrimSpace(qs), 64)
		if !ok || err != nil || !(q >= 0 && q <= 1) {
			return aggSpec{}, badf("aggregate %q: want quantile(q,field) with q between 0 and 1, e.g. quantile(0.99,latency_ms)", s)
		}
		a.q, args = q, f
	}
	f, err := parseField(args)
	if err != nil {
		return aggSpec{}, badf("aggregate %q: %v", s, strings.TrimPrefix(err.Error(), ErrBadQuery.Error()+": "))
	}
	if kind != aggDistinct && !f.attr {
		return aggSpec{}, badf("aggregate %q: %s is not numeric; numeric aggregates take an attribute key", s, f.name)
	}
	a.f = f
	return a, nil
}

// SplitAggs splits a comma-separated list of aggregates, leaving the commas
// inside parentheses ("quantile(0.99,latency_ms),avg(size)").
func SplitAggs(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if strings.TrimSpace(s[start:]) != "" || len(out) > 0 {
		out = append(out, s[start:])
	}
	return out
}

// statsPlan is a validated request.
type statsPlan struct {
	q         *Query
	tr        model.TimeRange
	by        []field
	aggs      []aggSpec
	first     int64 // the first bucket's start (with step)
	step      int64 // 0: no buckets
	nb        int
	limit     int
	maxGroups int
	// metaOnly: every by field is a label or level and no aggregate reads
	// a value, so chunk metadata can answer whole chunks.
	metaOnly bool
	attrs    bool // some field is an attribute: lines need their attributes
	byAttr   bool // some by field is an attribute
}

// cells a group costs for the group bound: a quantile sketch or a distinct
// set may hold many values.
func (p *statsPlan) cellsPerGroup() int {
	n := 4 + p.nb
	for _, a := range p.aggs {
		switch a.kind {
		case aggQuantile, aggDistinct:
			n += 64
		default:
			n += 4
		}
	}
	return n
}

// planQuery checks the range and resolves q (nil: every line) over it.
func (e *Engine) planQuery(q *Query, tr model.TimeRange) (*Query, error) {
	if tr.Start >= tr.End {
		return nil, badf("start must be before end")
	}
	if q == nil {
		q, _ = Parse("")
	}
	return e.resolve(q, tr), nil
}

// parseFields parses the field names of a by or fields parameter, each once.
func parseFields(param string, names []string) ([]field, error) {
	out := make([]field, 0, len(names))
	seen := map[string]bool{}
	for _, s := range names {
		f, err := parseField(s)
		if err != nil {
			return nil, err
		}
		if seen[f.name] {
			return nil, badf("%s names %s twice", param, f.name)
		}
		seen[f.name] = true
		out = append(out, f)
	}
	return out, nil
}

func (e *Engine) planStats(p StatsParams) (*statsPlan, error) {
	q, err := e.planQuery(p.Query, p.Range)
	if err != nil {
		return nil, err
	}
	pl := &statsPlan{q: q, tr: p.Range, limit: p.Limit, metaOnly: true}
	if pl.limit == 0 {
		pl.limit = DefStatsLimit
	}
	if pl.limit < 0 || pl.limit > MaxStatsLimit {
		return nil, badf("limit %d: want 1 to %d groups", p.Limit, MaxStatsLimit)
	}
	if len(p.By) > MaxBy {
		return nil, badf("by names %d fields; at most %d", len(p.By), MaxBy)
	}
	if pl.by, err = parseFields("by", p.By); err != nil {
		return nil, err
	}
	for _, f := range pl.by {
		if f.attr {
			pl.metaOnly, pl.attrs, pl.byAttr = false, true, true
		}
	}
	if len(p.Aggs) > MaxAggs {
		return nil, badf("%d aggregates; at most %d", len(p.Aggs), MaxAggs)
	}
	for _, s := range p.Aggs {
		a, err := parseAgg(s)
		if err != nil {
			return nil, err
		}
		if a.kind == aggCount {
			continue // always answered, as Count
		}
		pl.aggs = append(pl.aggs, a)
		pl.metaOnly = false
		pl.attrs = pl.attrs || a.f.attr
	}
	if p.Step < 0 {
		return nil, badf("step must be positive")
	}
	if p.Step > 0 {
		first, nb, err := e.buckets(p.Range, p.Step, p.AlignStart)
		if err != nil {
			return nil, err
		}
		pl.first, pl.step, pl.nb = first, int64(p.Step), nb
	}
	pl.maxGroups = min(e.opts.MaxGroups, max(1, e.opts.MaxCells/pl.cellsPerGroup()))
	return pl, nil
}

// buckets checks a histogram-style bucketing of tr by step (from tr.Start
// with alignStart).
func (e *Engine) buckets(tr model.TimeRange, step time.Duration, alignStart bool) (first int64, n int, err error) {
	st := int64(step)
	first = floorDiv(tr.Start, st) * st
	if alignStart {
		first = tr.Start
	}
	span := uint64(tr.End) - uint64(first)
	nb := span / uint64(st)
	if span%uint64(st) != 0 {
		nb++
	}
	if nb < 1 || nb > uint64(e.opts.MaxBuckets) || first > tr.Start || span > math.MaxInt64 {
		return 0, 0, badf("%d buckets of %s: a step cuts the range into 1 to %d buckets; use a larger step or a shorter range", nb, step, e.opts.MaxBuckets)
	}
	return first, int(nb), nil
}

// Stats counts matching records by group, exactly; see StatsParams.
func (e *Engine) Stats(ctx context.Context, p StatsParams) (*StatsResult, error) {
	part, err := e.StatsPartial(ctx, p)
	if err != nil {
		return nil, err
	}
	return e.FinishStats(p, part)
}

// StatsPartial is Stats before the groups are ranked and cut to Limit: the
// form that merges exactly with other nodes' (FinishStats merges).
func (e *Engine) StatsPartial(ctx context.Context, p StatsParams) (*StatsPartial, error) {
	pl, err := e.planStats(p)
	if err != nil {
		return nil, err
	}
	acc, err := e.scanStats(ctx, pl)
	if err != nil {
		return nil, err
	}
	return acc.partial(), nil
}

// FinishStats merges partials answered for the same params into the answer.
func (e *Engine) FinishStats(p StatsParams, parts ...*StatsPartial) (*StatsResult, error) {
	pl, err := e.planStats(p)
	if err != nil {
		return nil, err
	}
	acc := newStatsAcc(pl)
	for _, part := range parts {
		if err := acc.mergePartial(part); err != nil {
			return nil, err
		}
	}
	return acc.result(), nil
}

// result ranks the groups and keeps the first limit.
func (a *statsAcc) result() *StatsResult {
	pl := a.pl
	res := &StatsResult{Skipped: a.skipped}
	type kv struct {
		vals []string
		g    *groupState
	}
	all := make([]kv, 0, len(a.groups))
	for k, g := range a.groups {
		all = append(all, kv{decodeKey(k, len(pl.by)), g})
		res.Total += g.count
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].g.count != all[j].g.count {
			return all[i].g.count > all[j].g.count
		}
		return slicesLess(all[i].vals, all[j].vals)
	})
	for i, x := range all {
		if i >= pl.limit {
			res.Other += x.g.count
			res.OtherGroups++
			continue
		}
		sg := StatsGroup{Labels: make(map[string]string, len(pl.by)), Count: x.g.count}
		for k, f := range pl.by {
			sg.Labels[f.name] = x.vals[k]
		}
		if pl.nb > 0 {
			sg.Buckets = make([]Bucket, pl.nb)
			for b := range sg.Buckets {
				c := 0
				if x.g.buckets != nil {
					c = int(x.g.buckets[b])
				}
				sg.Buckets[b] = Bucket{Start: pl.first + int64(b)*pl.step, Count: c}
			}
		}
		if len(pl.aggs) > 0 {
			sg.Values = map[string]float64{}
			for k, ag := range pl.aggs {
				if v, ok := x.g.aggs[k].value(ag); ok {
					sg.Values[ag.name] = v
				}
			}
		}
		res.Groups = append(res.Groups, sg)
	}
	return res
}

func slicesLess(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
