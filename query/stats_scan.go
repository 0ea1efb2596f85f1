package query

import (
	"context"
	"errors"
	"iter"
	"sync"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// scanStats runs a plan over the store: chunks the metadata answers are
// counted here, the others are read by Workers goroutines, each into its own
// accumulator, merged at the end.
func (e *Engine) scanStats(ctx context.Context, pl *statsPlan) (*statsAcc, error) {
	refs := eachRef(e.st.Candidates(ctx, pl.tr, pl.q.cond, true))
	acc := newStatsAcc(pl)
	accs := make([]*statsAcc, e.opts.Workers)
	for w := range accs {
		accs[w] = newStatsAcc(pl)
	}
	err := e.fanOut(ctx, refs,
		func(r store.ChunkRef) (bool, error) {
			b, ok := pl.metaBucket(r.Meta)
			if !ok {
				return false, nil
			}
			return true, acc.addMeta(pl.q, r.Meta, b)
		},
		func(ctx context.Context, w int, r store.ChunkRef) error { return e.statsChunk(ctx, pl, r, accs[w]) })
	if err != nil {
		return nil, err
	}
	for _, a := range accs {
		if err := acc.merge(a); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

// fanOut offers each chunk to meta first (on this goroutine: it answers the
// chunks their metadata settles, reporting whether it did) and hands the
// others to Workers goroutines running chunk (w: the worker's index, for an
// accumulator of its own). The first error stops the rest and is the one
// answered, not the cancellation the other workers then saw.
func (e *Engine) fanOut(ctx context.Context, refs iter.Seq2[store.ChunkRef, error], meta func(store.ChunkRef) (bool, error),
	chunk func(ctx context.Context, w int, r store.ChunkRef) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, e.opts.Workers)
	work := make(chan store.ChunkRef)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				if errs[w] != nil {
					continue
				}
				if errs[w] = chunk(ctx, w, r); errs[w] != nil {
					cancel()
				}
			}
		}()
	}
	var metaErr error
	var seqErr error // the candidates' (a cancellation the workers caused comes after their error)
	for r, err := range refs {
		if err != nil {
			seqErr = err
			break
		}
		done, err := meta(r)
		if err != nil {
			metaErr = err
			break
		}
		if done {
			continue
		}
		select {
		case work <- r:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if metaErr != nil {
		return metaErr
	}
	if err := workerErr(errs); err != nil {
		return err
	}
	if seqErr != nil {
		return seqErr
	}
	return ctx.Err()
}

// metaBucket reports whether a chunk's metadata answers it whole: the query
// and grouping allow it, the chunk lies inside the range, and with a step
// inside one bucket (its index; -1 without step).
func (pl *statsPlan) metaBucket(m *store.ChunkMeta) (int64, bool) {
	if !pl.metaOnly || !pl.q.countable || m.MinT < pl.tr.Start || m.MaxT >= pl.tr.End {
		return 0, false
	}
	if pl.nb == 0 {
		return -1, true
	}
	b := (m.MinT - pl.first) / pl.step
	if b != (m.MaxT-pl.first)/pl.step || b < 0 || b >= int64(pl.nb) {
		return 0, false
	}
	return b, true
}

// metaKey builds the key of a chunk's group (level lv when grouping by level).
func (a *statsAcc) metaKey(m *store.ChunkMeta, lv model.Level) {
	a.key = a.key[:0]
	for _, f := range a.pl.by {
		if f.level {
			a.key = appendKey(a.key, lv.String())
		} else {
			a.key = appendKey(a.key, labelValue(m, f.label))
		}
	}
}

// addMeta counts a whole chunk from its metadata (a countable query, the
// chunk's labels already checked by the store).
func (a *statsAcc) addMeta(q *Query, m *store.ChunkMeta, bucket int64) error {
	byLevel := false
	for _, f := range a.pl.by {
		byLevel = byLevel || f.level
	}
	if !byLevel {
		a.metaKey(m, model.LevelUnset)
		return a.addCount(int64(q.metaCount(m)), bucket)
	}
	for lv := model.LevelUnset + 1; lv < model.NumLevels; lv++ {
		if q.countLevel != model.LevelUnset && lv != q.countLevel {
			continue
		}
		a.metaKey(m, lv)
		if err := a.addCount(int64(m.Levels[lv]), bucket); err != nil {
			return err
		}
	}
	return nil
}

// statsChunk adds a chunk's matching lines, reading what the plan needs.
func (e *Engine) statsChunk(ctx context.Context, pl *statsPlan, r store.ChunkRef, acc *statsAcc) error {
	q, tr := pl.q, pl.tr
	if pl.metaOnly && q.countable && !r.InMemory() {
		// Warnings and errors are listed, with their times, in the metadata.
		var err error
		step := pl.step
		if pl.nb <= 0 {
			step = 0 // one bucket: -1
		}
		if r.Meta.NotableIn(q.countLevel, tr, pl.first, step, func(b int64) {
			if err == nil {
				acc.metaKey(r.Meta, q.countLevel)
				err = acc.addCount(1, b)
			}
		}) {
			return err
		}
	}
	l, err := e.loadFor(ctx, r, q, pl.attrs)
	if err != nil {
		return err
	}
	var marks []bool
	if !r.All && q.text {
		marks = candidateLines(l, q.need)
	}
	// Grouped by labels and level only: a chunk has at most one group a
	// level, looked up once.
	var byLevel *[model.NumLevels]*groupState
	if !pl.byAttr {
		byLevel = new([model.NumLevels]*groupState)
	}
	done := ctx.Done()
	for j := 0; j < l.Len(); j++ {
		if marks != nil && !marks[j] {
			continue
		}
		t := l.Times[j]
		if !tr.Contains(t) {
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
		if byLevel == nil {
			if err := acc.addLine(l, j, t); err != nil {
				return err
			}
			continue
		}
		lv := levelOf(l.Levels[j])
		g := byLevel[lv]
		if g == nil {
			acc.metaKey(l.Meta, lv)
			if g, err = acc.group(); err != nil {
				return err
			}
			byLevel[lv] = g
		}
		if err := acc.addTo(g, l, j, t); err != nil {
			return err
		}
	}
	return nil
}

// AttrLoader is what a store offers to read a chunk's times, levels and
// attributes only (not its messages): aggregations over attributes use it
// when the query itself needs no text.
type AttrLoader interface {
	LoadAttrs(ctx context.Context, r store.ChunkRef) (*store.Lines, error)
}

// loadFor loads what a scan needs of a chunk: the text columns for the
// query (of the messages, the blocks that may hold its required word:
// loadMatching), else the attributes for the fields, else times and levels.
func (e *Engine) loadFor(ctx context.Context, r store.ChunkRef, q *Query, attrs bool) (*store.Lines, error) {
	if q.text {
		return e.loadMatching(ctx, r, q)
	}
	if attrs && !r.InMemory() {
		if al, ok := e.st.(AttrLoader); ok {
			return al.LoadAttrs(ctx, r)
		}
	}
	return e.st.Load(ctx, r, attrs)
}

// workerErr is the error that stopped the workers: the one that cancelled
// the others, not the cancellation they then saw.
func workerErr(errs []error) error {
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}
