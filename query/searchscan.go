package query

import (
	"container/heap"
	"context"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// searchScan is one Search's scan: the query, the range and cursor it runs
// over, and the best hits so far in a heap holding at most limit.
type searchScan struct {
	q     *Query
	tr    model.TimeRange
	cur   *position // the page starts after it (nil: at the start)
	asc   bool
	limit int
	h     *hitHeap
	done  <-chan struct{}
	// launched counts the lines of the chunks loaded with their text by
	// eager.
	launched int
}

func (s *searchScan) full() bool { return s.h.Len() >= s.limit }

// room is the hits to make room for, from the first day's candidates: the
// lines of those whose every line matches, up to the limit (a build's
// thousands of lines were appended through a dozen copies).
func (s *searchScan) room(refs []store.ChunkRef) int {
	n := 0
	for _, r := range refs {
		if r.All {
			n += int(r.Meta.Count)
		}
	}
	return min(n, s.limit)
}

// eager reports whether r's text is best loaded with its times (a sealed
// chunk whose every line matches, loaded while the lines of the chunks
// loaded before it and its own fit in the page): every line of it in the
// range comes into the page, whose text would be loaded after the scan
// otherwise (loadHitText), in a second read of the chunk.
func (s *searchScan) eager(r store.ChunkRef) bool {
	if s.q.text || !r.All || r.InMemory() || s.launched+int(r.Meta.Count) > s.limit {
		return false
	}
	s.launched += int(r.Meta.Count)
	return true
}

// add keeps x among the best hits: appended until the heap holds limit (made
// a heap then), else in place of the worst.
func (s *searchScan) add(x hit) {
	if s.full() {
		s.h.h[0] = x
		heap.Fix(s.h, 0)
		return
	}
	if s.h.h = append(s.h.h, x); s.full() {
		heap.Init(s.h)
	}
}

// beyond reports whether lines between minT and maxT all come after the
// full heap's worst hit in the query's order (so none can enter the page).
func (s *searchScan) beyond(minT, maxT int64) bool {
	worst := s.h.h[0].pos
	return s.asc && minT > worst.t || !s.asc && maxT < worst.t
}

// scan adds the lines of one loaded chunk that match and beat the heap's
// worst hit; marks (when not nil) are candidateLines' prefilter. With keep,
// the hits hold on to l, text and all; else the records of a sealed chunk
// loaded with its text are copied out of it (then released).
func (s *searchScan) scan(ctx context.Context, ref store.ChunkRef, l *store.Lines, marks []bool, keep bool) error {
	all := ref.All
	for j := 0; j < l.Len(); j++ {
		if marks != nil && !marks[j] {
			continue
		}
		t := l.Times[j]
		if !s.tr.Contains(t) {
			continue
		}
		pos := position{t: t, id: l.ID(j)}
		if s.cur != nil && !better(*s.cur, pos, s.asc) {
			continue
		}
		if s.full() && !better(pos, s.h.h[0].pos, s.asc) {
			continue
		}
		if !all {
			// A pattern can cost milliseconds a line: look at the
			// context before each line matched.
			if err := stopped(ctx, s.done); err != nil {
				return err
			}
			if !s.q.root.match(l, j) {
				continue
			}
		}
		x := hit{pos: pos, lines: l, i: j}
		if l.Msgs != nil && !ref.InMemory() && !keep {
			x.rec, x.lines = ownedRecord(l, j), nil
		}
		s.add(x)
	}
	return nil
}
