package store

import (
	"sync"
	"sync/atomic"

	"github.com/shiplog/shiplog/model"
)

// A head's trace, span and attribute columns are sparse: nil while every
// line so far has none (many streams never send any), made at the first
// line that has one. They were 56 of a line's 89 bytes of columns, grown by
// doubling and copied at each step like the others. A snapshot of a head
// whose column is nil reads a shared array of empty values instead
// (zeroCol), which nothing writes: Lines are read-only to their readers, and
// Release is only for sealed chunks' loads.

// appendSparse appends v to col, a sparse column of n values so far (nil:
// all zero); zero tells whether v is. A column made here has room for c.
func appendSparse[T any](col []T, v T, zero bool, n, c int) []T {
	if col == nil {
		if zero {
			return nil
		}
		col = make([]T, n, max(c, n+1))
	}
	return append(col, v)
}

// sparseView is col[:n:n], or n empty values when col is nil.
func sparseView[T any](col []T, n int, zeros *zeroCol[T]) []T {
	if col == nil {
		return zeros.get(n)
	}
	return col[:n:n]
}

// zeroCol is a shared, never written array of zero values, grown on demand.
type zeroCol[T any] struct {
	mu  sync.Mutex
	arr atomic.Pointer[[]T]
}

var (
	zeroStrings zeroCol[string]
	zeroAttrs   zeroCol[[]model.Attr]
)

// get returns n zero values (capacity n: an append copies).
func (z *zeroCol[T]) get(n int) []T {
	if p := z.arr.Load(); p != nil && len(*p) >= n {
		return (*p)[:n:n]
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if p := z.arr.Load(); p != nil && len(*p) >= n {
		return (*p)[:n:n]
	}
	a := make([]T, max(n, 1024))
	z.arr.Store(&a)
	return a[:n:n]
}
