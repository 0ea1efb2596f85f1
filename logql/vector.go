package logql

import (
	"slices"
	"sort"
)

// aggregate applies the vector aggregations of e (outermost last) to the
// range aggregation's series.
func (ev *Evaluator) aggregate(e Expr, in []Series) []Series {
	va, ok := e.(*VectorAgg)
	if !ok {
		return in
	}
	in = ev.aggregate(va.Inner, in)
	// Index every series' points by step.
	type cell struct {
		s int
		v float64
	}
	steps := make([][]cell, ev.n)
	for i, s := range in {
		for _, p := range s.Points {
			k := (p.T - ev.start) / ev.step
			steps[k] = append(steps[k], cell{i, p.V})
		}
	}
	groupOf := func(ls LabelSet) LabelSet { return groupLabels(va.Grouping, ls) }
	out := map[string]*Series{}
	var order []string
	emit := func(ls LabelSet, t int64, v float64) {
		key := ls.Key()
		s := out[key]
		if s == nil {
			s = &Series{Labels: ls}
			out[key] = s
			order = append(order, key)
		}
		s.Points = append(s.Points, Point{t, v})
	}
	for k, cells := range steps {
		t := ev.start + int64(k)*ev.step
		groups := map[string][]cell{}
		var gkeys []string
		glabels := map[string]LabelSet{}
		for _, c := range cells {
			g := groupOf(in[c.s].Labels)
			key := g.Key()
			if _, ok := groups[key]; !ok {
				gkeys = append(gkeys, key)
				glabels[key] = g
			}
			groups[key] = append(groups[key], c)
		}
		for _, key := range gkeys {
			cs := groups[key]
			switch va.Op {
			case "topk", "bottomk":
				sort.SliceStable(cs, func(i, j int) bool {
					if va.Op == "topk" {
						return cs[i].v > cs[j].v
					}
					return cs[i].v < cs[j].v
				})
				for _, c := range cs[:min(len(cs), va.Param)] {
					emit(in[c.s].Labels, t, c.v)
				}
				continue
			}
			var v float64
			switch va.Op {
			case "sum", "avg":
				for _, c := range cs {
					v += c.v
				}
				if va.Op == "avg" {
					v /= float64(len(cs))
				}
			case "count":
				v = float64(len(cs))
			case "min", "max":
				v = cs[0].v
				for _, c := range cs {
					if va.Op == "min" {
						v = min(v, c.v)
					} else {
						v = max(v, c.v)
					}
				}
			}
			emit(glabels[key], t, v)
		}
	}
	res := make([]Series, 0, len(order))
	for _, key := range order {
		res = append(res, *out[key])
	}
	return res
}

// groupLabels keeps the labels of ls that g keeps (none for no grouping).
func groupLabels(g *Grouping, ls LabelSet) LabelSet {
	if g == nil {
		return LabelSet{}
	}
	if g.Without {
		return slices.DeleteFunc(slices.Clone(ls), func(l Label) bool { return slices.Contains(g.Labels, l.Name) })
	}
	out := LabelSet{}
	for _, l := range ls {
		if slices.Contains(g.Labels, l.Name) {
			out = append(out, l)
		}
	}
	return out
}
