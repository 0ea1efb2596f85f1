package query

import (
	"math"
	"sort"
)

// Sketch is a mergeable quantile sketch with a relative error of at most
// SketchAccuracy on every value it returns: DDSketch's logarithmic buckets
// (Masson, Rim and Lee, VLDB 2019), written here. A positive value v falls
// into bucket ceil(log_gamma(v)) with gamma = (1+a)/(1-a); every value of a
// bucket is within a of the bucket's middle 2*gamma^i/(gamma+1). Negative
// values go to a mirror set of buckets, zeros to a counter of their own.
// Merging two sketches adds their buckets, so a quantile merged from many
// nodes is the quantile of all their values, with the same error bound.
//
// Its size is bounded by the range of values, not their number: values
// between 1e-9 and 1e18 take at most about 3,100 buckets.
type Sketch struct {
	Pos  map[int32]int64 `json:"p,omitempty"`
	Neg  map[int32]int64 `json:"n,omitempty"`
	Zero int64           `json:"z,omitempty"`
}

// SketchAccuracy is the sketch's relative error bound.
const SketchAccuracy = 0.01

var (
	sketchGamma    = (1 + SketchAccuracy) / (1 - SketchAccuracy)
	sketchLogGamma = math.Log(sketchGamma)
)

// sketchMin is the smallest magnitude kept apart from zero; smaller ones
// count as zero (their error is below any the sketch promises to resolve).
const sketchMin = 1e-9

func sketchIndex(v float64) int32 {
	return int32(math.Ceil(math.Log(v) / sketchLogGamma))
}

func sketchValue(i int32) float64 {
	return 2 * math.Pow(sketchGamma, float64(i)) / (sketchGamma + 1)
}

// Add adds one value (NaN and infinities are the caller's to refuse).
func (s *Sketch) Add(v float64) {
	switch {
	case v > sketchMin:
		if s.Pos == nil {
			s.Pos = map[int32]int64{}
		}
		s.Pos[sketchIndex(v)]++
	case v < -sketchMin:
		if s.Neg == nil {
			s.Neg = map[int32]int64{}
		}
		s.Neg[sketchIndex(-v)]++
	default:
		s.Zero++
	}
}

// Merge adds o's values to s.
func (s *Sketch) Merge(o *Sketch) {
	if o == nil {
		return
	}
	s.Zero += o.Zero
	for i, c := range o.Pos {
		if s.Pos == nil {
			s.Pos = map[int32]int64{}
		}
		s.Pos[i] += c
	}
	for i, c := range o.Neg {
		if s.Neg == nil {
			s.Neg = map[int32]int64{}
		}
		s.Neg[i] += c
	}
}

// Count is the number of values added.
func (s *Sketch) Count() int64 {
	n := s.Zero
	for _, c := range s.Pos {
		n += c
	}
	for _, c := range s.Neg {
		n += c
	}
	return n
}

// Quantile returns the q-quantile (0 <= q <= 1) of the values added, within
// SketchAccuracy of the value of rank floor(q*(n-1)) in sorted order; NaN
// when the sketch is empty.
func (s *Sketch) Quantile(q float64) float64 {
	n := s.Count()
	if n == 0 {
		return math.NaN()
	}
	rank := int64(q * float64(n-1))
	type bucket struct {
		i int32
		c int64
	}
	sorted := func(m map[int32]int64, desc bool) []bucket {
		out := make([]bucket, 0, len(m))
		for i, c := range m {
			out = append(out, bucket{i, c})
		}
		sort.Slice(out, func(a, b int) bool { return out[a].i < out[b].i != desc })
		return out
	}
	var seen int64
	// Negatives first, the largest magnitude (the smallest value) first.
	for _, b := range sorted(s.Neg, true) {
		if seen += b.c; seen > rank {
			return -sketchValue(b.i)
		}
	}
	if seen += s.Zero; seen > rank {
		return 0
	}
	pos := sorted(s.Pos, false)
	for _, b := range pos {
		if seen += b.c; seen > rank {
			return sketchValue(b.i)
		}
	}
	return sketchValue(pos[len(pos)-1].i)
}
