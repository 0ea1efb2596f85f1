package store

import (
	"cmp"
	"context"
	"iter"
	"math"
	"slices"
	"sort"

	"github.com/shiplog/shiplog/model"
)

// Candidates yields the chunks that may hold lines matching c within tr, a
// day at a time in the query's order: oldest day first when asc, else
// newest first, each day's chunks sorted as SortRefs sorts them (by MinT
// when asc, else by MaxT descending); days without a candidate are left
// out. A day's index is searched and its bloom filters read only when the
// caller asks for that day, so a newest-first page that the last day fills
// reads nothing of the days before. A chunk holds lines of one stream on one
// day (times before 1970 are on day 0), so the order holds across days:
// every chunk of a later day comes after every chunk of an earlier one.
//
// The days are those holding lines when the iteration starts; a day's open
// chunks are its lines at the moment that day is reached. An error ends the
// sequence.
func (s *Store) Candidates(ctx context.Context, tr model.TimeRange, c *Cond, asc bool) iter.Seq2[[]ChunkRef, error] {
	if c == nil {
		c = All()
	}
	return func(yield func([]ChunkRef, error) bool) {
		days, err := s.candidateDays(tr)
		if err != nil {
			yield(nil, err)
			return
		}
		if !asc {
			slices.Reverse(days)
		}
		for _, d := range days {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			refs, err := s.dayRefs(ctx, d, tr, c)
			if err != nil {
				yield(nil, err)
				return
			}
			if len(refs) == 0 {
				continue
			}
			SortRefs(refs, asc)
			if !yield(refs, nil) {
				return
			}
		}
	}
}

// SortRefs sorts chunk refs in a query's order, as Candidates yields them:
// by MinT when asc, else by MaxT descending (ties by chunk id).
func SortRefs(refs []ChunkRef, asc bool) {
	slices.SortFunc(refs, func(a, b ChunkRef) int { return CompareRefs(a, b, asc) })
}

// CompareRefs orders two chunk refs as Candidates yields them.
func CompareRefs(a, b ChunkRef, asc bool) int {
	var r int
	if asc {
		r = cmp.Compare(a.Meta.MinT, b.Meta.MinT)
	} else {
		r = cmp.Compare(b.Meta.MaxT, a.Meta.MaxT)
	}
	if r == 0 {
		r = cmp.Compare(a.Meta.ID, b.Meta.ID)
	}
	return r
}

// candidateDays returns the days (ascending) that hold sealed or open chunks
// and meet tr.
func (s *Store) candidateDays(tr model.TimeRange) ([]uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var days []uint32
	for d := range s.days {
		lo := model.DayStart(d)
		if d == 0 {
			lo = math.MinInt64 // day 0 also holds the times before 1970
		}
		if tr.Overlaps(lo, model.DayStart(d+1)-1) {
			days = append(days, d)
		}
	}
	for _, h := range s.heads {
		days = append(days, h.meta.Day)
	}
	for _, h := range s.sealing {
		days = append(days, h.meta.Day)
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	return compactDays(days), nil
}

// dayRefs returns the candidates of one day, in no particular order: its open
// chunks judged by their metadata, its sealed ones narrowed by their
// streams' labels (labelChunks) or else by the day's index, then judged by
// their metadata and bloom filters.
func (s *Store) dayRefs(ctx context.Context, day uint32, tr model.TimeRange, c *Cond) ([]ChunkRef, error) {
	s.daysRead.Add(1)
	var out []ChunkRef
	var unindexed []*ChunkMeta
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	chunks := s.days[day]
	for _, m := range s.unindexed {
		if m.Day == day {
			unindexed = append(unindexed, m)
		}
	}
	addMem := func(h *head) {
		if h.meta.Day != day || h.meta.Count == 0 || !tr.Overlaps(h.meta.MinT, h.meta.MaxT) {
			return
		}
		if r := c.eval(&h.meta, nil); r != triNo {
			l := h.snapshot()
			out = append(out, ChunkRef{Meta: l.Meta, mem: l, All: r == triYes})
		}
	}
	for _, h := range s.heads {
		addMem(h)
	}
	for _, h := range s.sealing {
		addMem(h)
	}
	labelled, byLabel := s.labelChunks(day, c)
	s.mu.RUnlock()
	if len(chunks) == 0 && len(unindexed) == 0 {
		return out, nil
	}

	seen := make(map[uint64]bool, len(out))
	for _, r := range out {
		seen[r.Meta.ID] = true
	}
	metas := labelled
	if !byLabel {
		var err error
		if metas, err = s.dayCandidates(ctx, day, c, chunks, unindexed); err != nil {
			return nil, err
		}
	}
	var keep []*ChunkMeta
	for _, m := range metas {
		if seen[m.ID] || !tr.Overlaps(m.MinT, m.MaxT) {
			continue
		}
		seen[m.ID] = true
		keep = append(keep, m)
	}
	var blooms map[uint64]*bloom
	if c.usesBloom() && len(keep) > 0 {
		var err error
		if blooms, err = s.loadBlooms(ctx, keep); err != nil {
			return nil, err
		}
	}
	for _, m := range keep {
		if r := c.eval(m, blooms[m.ID]); r != triNo {
			out = append(out, ChunkRef{Meta: m, All: r == triYes})
		}
	}
	return out, nil
}

// CollectCandidates returns every candidate of a sequence (for callers that
// need them all at once, and tests).
func CollectCandidates(seq iter.Seq2[[]ChunkRef, error]) ([]ChunkRef, error) {
	var out []ChunkRef
	for refs, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, refs...)
	}
	return out, nil
}

// MergeCandidates merges sequences that each yield a day at a time in the
// query's order (asc, as Candidates does) into one: the chunks of one day
// from every sequence are yielded together, sorted.
func MergeCandidates(asc bool, seqs ...iter.Seq2[[]ChunkRef, error]) iter.Seq2[[]ChunkRef, error] {
	if len(seqs) == 1 {
		return seqs[0]
	}
	return func(yield func([]ChunkRef, error) bool) {
		type src struct {
			next func() ([]ChunkRef, error, bool)
			cur  []ChunkRef
		}
		srcs := make([]*src, len(seqs))
		advance := func(x *src) error {
			refs, err, ok := x.next()
			if !ok || err != nil {
				refs = nil
			}
			x.cur = refs
			return err
		}
		for i, sq := range seqs {
			next, stop := iter.Pull2(sq)
			defer stop()
			srcs[i] = &src{next: next}
			if err := advance(srcs[i]); err != nil {
				yield(nil, err)
				return
			}
		}
		for {
			found, day := false, uint32(0)
			for _, x := range srcs {
				if len(x.cur) == 0 {
					continue
				}
				if d := x.cur[0].Meta.Day; !found || asc && d < day || !asc && d > day {
					found, day = true, d
				}
			}
			if !found {
				return
			}
			var refs []ChunkRef
			for _, x := range srcs {
				if len(x.cur) > 0 && x.cur[0].Meta.Day == day {
					refs = append(refs, x.cur...)
					if err := advance(x); err != nil {
						yield(nil, err)
						return
					}
				}
			}
			SortRefs(refs, asc)
			if !yield(refs, nil) {
				return
			}
		}
	}
}
