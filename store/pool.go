package store

import (
	"sync"

	"github.com/shiplog/shiplog/model"
)

// Pools of the per-line columns of loaded chunks, filled by Lines.Release: a
// search over days of chunks decodes millions of lines, whose columns would
// otherwise all be new garbage for the collector to trace and sweep.
var (
	stringCols slicePool[string]
	attrCols   slicePool[[]model.Attr]
	attrArrays slicePool[model.Attr]
	int32Cols  slicePool[int32]
	int64Cols  slicePool[int64]
	uint64Cols slicePool[uint64]
)

// slicePool keeps slices of T for reuse.
type slicePool[T any] struct{ p sync.Pool }

// get returns a slice of n zero values, reused when one big enough is kept.
func (sp *slicePool[T]) get(n int) []T {
	if v, ok := sp.p.Get().(*[]T); ok && cap(*v) >= n {
		s := (*v)[:n]
		clear(s)
		return s
	}
	return make([]T, n)
}

// put keeps s for a later get (nil is ignored).
func (sp *slicePool[T]) put(s []T) {
	if cap(s) > 0 {
		sp.p.Put(&s)
	}
}
