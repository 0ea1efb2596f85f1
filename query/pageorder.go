package query

// The order of a search's page: its hits, mostly runs already in order,
// merged rather than sorted.

import "slices"

// hitKey is a hit's place in the page (its position, with every field
// inverted for a page newest first, so that the page's order is always
// ascending) and its index in the hits.
type hitKey struct {
	t    int64
	s    uint64
	d, l uint32
	i    int
}

func (a *hitKey) before(b *hitKey) bool {
	switch {
	case a.t != b.t:
		return a.t < b.t
	case a.s != b.s:
		return a.s < b.s
	case a.d != b.d:
		return a.d < b.d
	}
	return a.l < b.l
}

// maxMergeRuns is the most runs of hits already in order that pageOrder
// merges; more are sorted.
const maxMergeRuns = 256

// pageOrder returns the hits' keys in the page's order. Until the page
// fills, the hits are each chunk's matches in the chunk's order, mostly
// already in time order: such runs are merged, not sorted (a build's few
// thousand lines from a handful of streams took half a millisecond to
// sort). The keys, not the hits, are moved: they hold no pointers, so
// moving them needs no write barrier while the collector runs.
func pageOrder(hits []hit, asc bool) []hitKey {
	n := len(hits)
	keys := make([]hitKey, n)
	for i := range hits {
		p := &hits[i].pos
		keys[i] = hitKey{t: p.t, s: p.id.Stream, d: p.id.Day, l: p.id.Line, i: i}
		if !asc {
			k := &keys[i]
			k.t, k.s, k.d, k.l = ^k.t, ^k.s, ^k.d, ^k.l
		}
	}
	ends := make([]int, 0, 16) // of the runs
	for i := 1; i < n && len(ends) <= maxMergeRuns; i++ {
		if keys[i].before(&keys[i-1]) {
			ends = append(ends, i)
		}
	}
	if len(ends) > maxMergeRuns {
		slices.SortFunc(keys, func(a, b hitKey) int {
			if a.before(&b) {
				return -1
			}
			return 1 // keys are distinct (ids are)
		})
		return keys
	}
	ends = append(ends, n)
	tmp := make([]hitKey, n)
	for len(ends) > 1 {
		// Merge runs pairwise, from keys into tmp.
		merged := ends[:0]
		lo := 0
		for r := 0; r < len(ends); r += 2 {
			if r+1 == len(ends) {
				copy(tmp[lo:], keys[lo:ends[r]])
				merged = append(merged, ends[r])
				break
			}
			mergeKeys(tmp[lo:ends[r+1]], keys[lo:ends[r]], keys[ends[r]:ends[r+1]])
			lo = ends[r+1]
			merged = append(merged, lo)
		}
		ends = merged
		keys, tmp = tmp, keys
	}
	return keys
}

// mergeKeys merges the ordered runs a and b into dst (len(a)+len(b)).
func mergeKeys(dst, a, b []hitKey) {
	i, j, k := 0, 0, 0
	for i < len(a) && j < len(b) {
		if b[j].before(&a[i]) {
			dst[k] = b[j]
			j++
		} else {
			dst[k] = a[i]
			i++
		}
		k++
	}
	k += copy(dst[k:], a[i:])
	copy(dst[k:], b[j:])
}
