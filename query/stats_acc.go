package query

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/shiplog/shiplog/store"
)

// groupState is one group's running aggregates.
type groupState struct {
	count   int64
	buckets []int64 // with step; nil until the first line
	aggs    []aggState
}

// aggState is one aggregate of one group.
type aggState struct {
	n             int64 // numeric values seen
	sum, min, max float64
	sketch        *Sketch
	distinct      map[uint64]struct{} // xxhash64 of each value
}

func (s *aggState) add(v float64) {
	if s.n == 0 || v < s.min {
		s.min = v
	}
	if s.n == 0 || v > s.max {
		s.max = v
	}
	s.n++
	s.sum += v
	if s.sketch != nil {
		s.sketch.Add(v)
	}
}

// value is the aggregate's answer; false when it has none (no numeric value).
func (s *aggState) value(a aggSpec) (float64, bool) {
	switch a.kind {
	case aggDistinct:
		return float64(len(s.distinct)), true
	case aggSum:
		return s.sum, s.n > 0
	case aggAvg:
		return s.sum / float64(s.n), s.n > 0
	case aggMin:
		return s.min, s.n > 0
	case aggMax:
		return s.max, s.n > 0
	case aggQuantile:
		if s.n == 0 {
			return 0, false
		}
		v := s.sketch.Quantile(a.q)
		// The sketch's bucket middle may fall outside the values seen.
		return math.Min(math.Max(v, s.min), s.max), true
	}
	return 0, false
}

// statsAcc accumulates one scan's (or one merge's) groups.
type statsAcc struct {
	pl       *statsPlan
	groups   map[string]*groupState
	skipped  int64
	distinct int // distinct values held by every group's count_distinct
	key      []byte
}

func newStatsAcc(pl *statsPlan) *statsAcc {
	return &statsAcc{pl: pl, groups: map[string]*groupState{}}
}

func appendKey(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func decodeKey(k string, n int) []string {
	out := make([]string, n)
	for i := range out {
		l, m := binary.Uvarint([]byte(k[:min(len(k), binary.MaxVarintLen64)]))
		if m <= 0 || uint64(len(k)-m) < l {
			return out
		}
		out[i], k = k[m:m+int(l)], k[m+int(l):]
	}
	return out
}

func (a *statsAcc) tooMany() error {
	names := make([]string, len(a.pl.by))
	for i, f := range a.pl.by {
		names[i] = f.name
	}
	return fmt.Errorf("%w: more than %d groups of %v (with their buckets and aggregates) in one answer; group by fewer or coarser fields, use a larger step, or narrow the query or range",
		ErrTooManyGroups, a.pl.maxGroups, names)
}

// group returns the group of the key in a.key, adding it when new.
func (a *statsAcc) group() (*groupState, error) {
	if g, ok := a.groups[string(a.key)]; ok {
		return g, nil
	}
	if len(a.groups) >= a.pl.maxGroups {
		return nil, a.tooMany()
	}
	g := &groupState{}
	if a.pl.nb > 0 {
		g.buckets = make([]int64, a.pl.nb)
	}
	if len(a.pl.aggs) > 0 {
		g.aggs = make([]aggState, len(a.pl.aggs))
		for i, ag := range a.pl.aggs {
			switch ag.kind {
			case aggQuantile:
				g.aggs[i].sketch = &Sketch{}
			case aggDistinct:
				g.aggs[i].distinct = map[uint64]struct{}{}
			}
		}
	}
	a.groups[string(a.key)] = g
	return g, nil
}

// addLine adds line i (at time t) of l.
func (a *statsAcc) addLine(l *store.Lines, i int, t int64) error {
	pl := a.pl
	a.key = a.key[:0]
	for k := range pl.by {
		a.key = appendKey(a.key, pl.by[k].value(l, i))
	}
	g, err := a.group()
	if err != nil {
		return err
	}
	g.count++
	if pl.nb > 0 {
		g.buckets[(t-pl.first)/pl.step]++
	}
	skip := false
	for k := range pl.aggs {
		ag := &pl.aggs[k]
		st := &g.aggs[k]
		if ag.kind == aggDistinct {
			v := ag.f.value(l, i)
			if ag.f.attr {
				if _, ok := attrOf(l.Attrs[i], ag.f.name); !ok {
					continue
				}
			}
			h := xxhash.Sum64String(v)
			if _, ok := st.distinct[h]; !ok {
				if a.distinct >= a.pl.maxGroups*8 {
					return fmt.Errorf("%w: more than %d distinct values for %s", ErrTooManyGroups, a.pl.maxGroups*8, ag.name)
				}
				st.distinct[h] = struct{}{}
				a.distinct++
			}
			continue
		}
		s, ok := attrOf(l.Attrs[i], ag.f.name)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			skip = true
			continue
		}
		st.add(v)
	}
	if skip {
		a.skipped++
	}
	return nil
}

// addCount adds n lines of one group without values (metadata counts): the
// key is in a.key; bucket is -1 without step.
func (a *statsAcc) addCount(n int64, bucket int64) error {
	if n == 0 {
		return nil
	}
	g, err := a.group()
	if err != nil {
		return err
	}
	g.count += n
	if bucket >= 0 && g.buckets != nil {
		g.buckets[bucket] += n
	}
	return nil
}

// merge adds o's groups to a.
func (a *statsAcc) merge(o *statsAcc) error {
	a.skipped += o.skipped
	for k, og := range o.groups {
		a.key = append(a.key[:0], k...)
		g, err := a.group()
		if err != nil {
			return err
		}
		g.count += og.count
		for b, c := range og.buckets {
			g.buckets[b] += c
		}
		for i := range og.aggs {
			if err := a.mergeAgg(&g.aggs[i], &og.aggs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *statsAcc) mergeAgg(s, o *aggState) error {
	if o.n > 0 {
		if s.n == 0 || o.min < s.min {
			s.min = o.min
		}
		if s.n == 0 || o.max > s.max {
			s.max = o.max
		}
		s.n += o.n
		s.sum += o.sum
		if s.sketch != nil {
			s.sketch.Merge(o.sketch)
		}
	}
	for h := range o.distinct {
		if _, ok := s.distinct[h]; !ok {
			if a.distinct >= a.pl.maxGroups*8 {
				return fmt.Errorf("%w: more than %d distinct values", ErrTooManyGroups, a.pl.maxGroups*8)
			}
			s.distinct[h] = struct{}{}
			a.distinct++
		}
	}
	return nil
}

// StatsPartial is a scan's groups in a form that travels between nodes and
// merges exactly (FinishStats).
type StatsPartial struct {
	Groups  []PartialGroup `json:"g,omitempty"`
	Skipped int64          `json:"s,omitempty"`
}

// PartialGroup is one group of a StatsPartial: its field values in the
// order of By, its count, buckets and aggregate states.
type PartialGroup struct {
	Values  []string     `json:"v"`
	Count   int64        `json:"c"`
	Buckets []int64      `json:"b,omitempty"`
	Aggs    []PartialAgg `json:"a,omitempty"`
}

// PartialAgg is one aggregate's state: the count, sum, min and max of its
// numeric values, their quantile sketch, and the hashes of distinct values.
type PartialAgg struct {
	N        int64    `json:"n,omitempty"`
	Sum      float64  `json:"s,omitempty"`
	Min      float64  `json:"mi,omitempty"`
	Max      float64  `json:"ma,omitempty"`
	Sketch   *Sketch  `json:"q,omitempty"`
	Distinct []uint64 `json:"d,omitempty"`
}

func (a *statsAcc) partial() *StatsPartial {
	out := &StatsPartial{Skipped: a.skipped, Groups: make([]PartialGroup, 0, len(a.groups))}
	for k, g := range a.groups {
		pg := PartialGroup{Values: decodeKey(k, len(a.pl.by)), Count: g.count, Buckets: g.buckets}
		for _, s := range g.aggs {
			pa := PartialAgg{N: s.n, Sum: s.sum, Min: s.min, Max: s.max, Sketch: s.sketch}
			for h := range s.distinct {
				pa.Distinct = append(pa.Distinct, h)
			}
			pg.Aggs = append(pg.Aggs, pa)
		}
		out.Groups = append(out.Groups, pg)
	}
	return out
}

func (a *statsAcc) mergePartial(p *StatsPartial) error {
	if p == nil {
		return nil
	}
	a.skipped += p.Skipped
	pl := a.pl
	for i := range p.Groups {
		pg := &p.Groups[i]
		if len(pg.Values) != len(pl.by) || pg.Buckets != nil && len(pg.Buckets) != pl.nb || pg.Aggs != nil && len(pg.Aggs) != len(pl.aggs) {
			return fmt.Errorf("stats partial does not fit the request (%d values, %d buckets, %d aggregates)", len(pg.Values), len(pg.Buckets), len(pg.Aggs))
		}
		a.key = a.key[:0]
		for _, v := range pg.Values {
			a.key = appendKey(a.key, v)
		}
		g, err := a.group()
		if err != nil {
			return err
		}
		g.count += pg.Count
		for b, c := range pg.Buckets {
			g.buckets[b] += c
		}
		for k := range pg.Aggs {
			pa := &pg.Aggs[k]
			o := aggState{n: pa.N, sum: pa.Sum, min: pa.Min, max: pa.Max, sketch: pa.Sketch}
			if len(pa.Distinct) > 0 {
				o.distinct = make(map[uint64]struct{}, len(pa.Distinct))
				for _, h := range pa.Distinct {
					o.distinct[h] = struct{}{}
				}
			}
			if err := a.mergeAgg(&g.aggs[k], &o); err != nil {
				return err
			}
		}
	}
	return nil
}
