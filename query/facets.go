package query

import (
	"context"
	"sort"
	"strings"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Facets: for each field, how many distinct values the matching records
// have and the most frequent ones with their exact counts (a search page's
// field sidebar).

// MaxFacetKeys bounds the attribute keys a facets request without fields
// reports (the first seen are kept).
const MaxFacetKeys = 32

// FacetsParams describe a facets request.
type FacetsParams struct {
	Query *Query
	Range model.TimeRange
	// Fields to report; empty: the labels, level and the attribute keys of
	// the matching records (at most MaxFacetKeys of them).
	Fields []string
	Limit  int // top values per field (default 10)
}

// FacetValue is one value of a field and the records that have it.
type FacetValue struct {
	Value string
	Count int64
}

// Facet is one field of a facets answer. Records without an attribute are
// not counted in its facet (a label is always there, maybe empty).
type Facet struct {
	Name     string
	Distinct int64        // distinct values
	Count    int64        // records that have the field
	Values   []FacetValue // the Limit most frequent, largest first (ties by value)
	// Capped is set when the field has more distinct values than the engine
	// tracks (Options.MaxGroups/10): Distinct is then a lower bound, the
	// records of the values not tracked are in Count but in no value, and a
	// value first seen after the cap is missing from Values.
	Capped bool
}

// FacetsResult answers a facets request.
type FacetsResult struct {
	Fields   []Facet
	Total    int64 // matching records
	Coverage Coverage
}

type facetPlan struct {
	q       *Query
	tr      model.TimeRange
	fields  []field
	auto    bool // fields: labels, level, then the attribute keys seen
	limit   int
	maxVals int
	// metaOnly: every field is a label or level: chunk metadata answers.
	metaOnly bool
}

func (e *Engine) planFacets(p FacetsParams) (*facetPlan, error) {
	q, err := e.planQuery(p.Query, p.Range)
	if err != nil {
		return nil, err
	}
	pl := &facetPlan{q: q, tr: p.Range, limit: p.Limit, maxVals: max(1000, e.opts.MaxGroups/10), metaOnly: true}
	if pl.limit == 0 {
		pl.limit = DefFacetLimit
	}
	if pl.limit < 0 || pl.limit > MaxFacetLimit {
		return nil, badf("limit %d: want 1 to %d values a field", p.Limit, MaxFacetLimit)
	}
	if len(p.Fields) > MaxFacetFields {
		return nil, badf("%d fields; at most %d", len(p.Fields), MaxFacetFields)
	}
	names := p.Fields
	if len(names) == 0 {
		names = []string{"service", "host", "build_id", "deploy_id", "level"}
		pl.auto, pl.metaOnly = true, false
	}
	if pl.fields, err = parseFields("fields", names); err != nil {
		return nil, err
	}
	for _, f := range pl.fields {
		if f.attr {
			pl.metaOnly = false
		}
	}
	return pl, nil
}

// facetField counts one field's values.
type facetField struct {
	f      field
	vals   map[string]int64
	count  int64
	capped bool
}

func (ff *facetField) add(v string, n int64, max int) {
	ff.count += n
	if c, ok := ff.vals[v]; ok {
		ff.vals[v] = c + n
		return
	}
	if len(ff.vals) >= max {
		ff.capped = true
		return
	}
	ff.vals[strings.Clone(v)] = n
}

type facetAcc struct {
	pl     *facetPlan
	fields []*facetField
	byName map[string]*facetField
	total  int64
}

func newFacetAcc(pl *facetPlan) *facetAcc {
	a := &facetAcc{pl: pl, byName: map[string]*facetField{}}
	for _, f := range pl.fields {
		a.field(f)
	}
	return a
}

// field returns f's counter, adding it when new.
func (a *facetAcc) field(f field) *facetField {
	if ff := a.byName[f.name]; ff != nil {
		return ff
	}
	ff := &facetField{f: f, vals: map[string]int64{}}
	a.fields = append(a.fields, ff)
	a.byName[f.name] = ff
	return ff
}

func (a *facetAcc) addLine(l *store.Lines, i int) {
	a.total++
	for _, ff := range a.fields[:len(a.pl.fields)] {
		if ff.f.attr {
			if v, ok := attrOf(l.Attrs[i], ff.f.name); ok {
				ff.add(v, 1, a.pl.maxVals)
			}
			continue
		}
		ff.add(ff.f.value(l, i), 1, a.pl.maxVals)
	}
	if !a.pl.auto {
		return
	}
	for _, at := range l.Attrs[i] {
		ff := a.byName[at.Key]
		if ff == nil {
			if len(a.fields) >= len(a.pl.fields)+MaxFacetKeys {
				continue
			}
			if _, err := parseField(at.Key); err != nil {
				continue
			}
			ff = a.field(field{name: strings.Clone(at.Key), attr: true})
		}
		if ff.f.attr {
			ff.add(at.Value, 1, a.pl.maxVals)
		}
	}
}

// addMeta counts a whole chunk from its metadata (labels and level only).
func (a *facetAcc) addMeta(q *Query, m *store.ChunkMeta) {
	n := int64(q.metaCount(m))
	a.total += n
	for _, ff := range a.fields {
		if !ff.f.level {
			ff.add(labelValue(m, ff.f.label), n, a.pl.maxVals)
			continue
		}
		for lv := model.LevelUnset + 1; lv < model.NumLevels; lv++ {
			if c := m.Levels[lv]; c > 0 && (q.countLevel == model.LevelUnset || lv == q.countLevel) {
				ff.add(lv.String(), int64(c), a.pl.maxVals)
			}
		}
	}
}

// FacetsPartial is a scan's facets in a form that travels between nodes and
// merges exactly (FinishFacets).
type FacetsPartial struct {
	Fields []PartialFacet `json:"f,omitempty"`
	Total  int64          `json:"t,omitempty"`
}

// PartialFacet is one field's value counts.
type PartialFacet struct {
	Name   string           `json:"n"`
	Values map[string]int64 `json:"v,omitempty"`
	Count  int64            `json:"c,omitempty"`
	Capped bool             `json:"x,omitempty"`
}

func (a *facetAcc) partial() *FacetsPartial {
	out := &FacetsPartial{Total: a.total}
	for _, ff := range a.fields {
		out.Fields = append(out.Fields, PartialFacet{Name: ff.f.name, Values: ff.vals, Count: ff.count, Capped: ff.capped})
	}
	return out
}

func (a *facetAcc) mergePartial(p *FacetsPartial) error {
	if p == nil {
		return nil
	}
	a.total += p.Total
	for _, pf := range p.Fields {
		ff := a.byName[pf.Name]
		if ff == nil {
			f, err := parseField(pf.Name)
			if err != nil || !a.pl.auto || len(a.fields) >= len(a.pl.fields)+MaxFacetKeys {
				continue
			}
			ff = a.field(f)
		}
		var counted int64
		for v, c := range pf.Values {
			ff.add(v, c, a.pl.maxVals)
			counted += c
		}
		ff.count += pf.Count - counted // the records of values not tracked there
		ff.capped = ff.capped || pf.Capped
	}
	return nil
}

func (a *facetAcc) result() *FacetsResult {
	res := &FacetsResult{Total: a.total}
	fixed := len(a.pl.fields)
	attrs := a.fields[fixed:]
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].f.name < attrs[j].f.name })
	for _, ff := range a.fields {
		fc := Facet{Name: ff.f.name, Distinct: int64(len(ff.vals)), Count: ff.count, Capped: ff.capped}
		for v, c := range ff.vals {
			fc.Values = append(fc.Values, FacetValue{v, c})
		}
		sort.Slice(fc.Values, func(i, j int) bool {
			x, y := fc.Values[i], fc.Values[j]
			return x.Count > y.Count || x.Count == y.Count && x.Value < y.Value
		})
		if len(fc.Values) > a.pl.limit {
			fc.Values = fc.Values[:a.pl.limit]
		}
		res.Fields = append(res.Fields, fc)
	}
	return res
}

// Facets counts the values of fields over the matching records, exactly.
func (e *Engine) Facets(ctx context.Context, p FacetsParams) (*FacetsResult, error) {
	part, err := e.FacetsPartial(ctx, p)
	if err != nil {
		return nil, err
	}
	return e.FinishFacets(p, part)
}

// FinishFacets merges partials answered for the same params into the answer.
func (e *Engine) FinishFacets(p FacetsParams, parts ...*FacetsPartial) (*FacetsResult, error) {
	pl, err := e.planFacets(p)
	if err != nil {
		return nil, err
	}
	acc := newFacetAcc(pl)
	for _, part := range parts {
		if err := acc.mergePartial(part); err != nil {
			return nil, err
		}
	}
	return acc.result(), nil
}

// FacetsPartial is Facets before the values are ranked and cut to Limit.
func (e *Engine) FacetsPartial(ctx context.Context, p FacetsParams) (*FacetsPartial, error) {
	pl, err := e.planFacets(p)
	if err != nil {
		return nil, err
	}
	q := pl.q
	refs := eachRef(e.st.Candidates(ctx, pl.tr, q.cond, true))
	acc := newFacetAcc(pl)
	accs := make([]*facetAcc, e.opts.Workers)
	for w := range accs {
		accs[w] = newFacetAcc(pl)
	}
	err = e.fanOut(ctx, refs,
		func(r store.ChunkRef) (bool, error) {
			m := r.Meta
			if pl.metaOnly && q.countable && m.MinT >= pl.tr.Start && m.MaxT < pl.tr.End {
				acc.addMeta(q, m)
				return true, nil
			}
			return false, nil
		},
		func(ctx context.Context, w int, r store.ChunkRef) error { return e.facetChunk(ctx, pl, r, accs[w]) })
	if err != nil {
		return nil, err
	}
	for _, a := range accs {
		if err := acc.mergePartial(a.partial()); err != nil {
			return nil, err
		}
	}
	return acc.partial(), nil
}

func (e *Engine) facetChunk(ctx context.Context, pl *facetPlan, r store.ChunkRef, acc *facetAcc) error {
	q, tr := pl.q, pl.tr
	l, err := e.loadFor(ctx, r, q, !pl.metaOnly)
	if err != nil {
		return err
	}
	var marks []bool
	if !r.All && q.text {
		marks = candidateLines(l, q.need)
	}
	done := ctx.Done()
	for j := 0; j < l.Len(); j++ {
		if marks != nil && !marks[j] {
			continue
		}
		if !tr.Contains(l.Times[j]) {
			continue
		}
		if !r.All {
			if err := stopped(ctx, done); err != nil {
				return err
			}
			if !q.root.match(l, j) {
				continue
			}
		}
		acc.addLine(l, j)
	}
	return nil
}
