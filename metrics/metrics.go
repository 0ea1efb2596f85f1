// Package metrics puts Prometheus' PromQL engine over shiplog's metric store:
// Queryable adapts store.MetricReader to storage.Queryable, and NewEngine
// builds the engine with shiplog's limits. The engine sees only the storage
// interfaces; the store sees neither.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// ErrLimit marks a query stopped by one of Options' limits.
var ErrLimit = errors.New("query over a limit")

// Options bound what one query may do.
type Options struct {
	MaxSamplesRead int           // stored samples (and series) one query may load, all its selectors together
	MaxSamples     int           // samples the engine may hold at once (promql.EngineOpts.MaxSamples), and the estimated points a query may evaluate (Engine)
	MaxPoints      int           // steps of a range query (start, end and step)
	Timeout        time.Duration // per query
	LookbackDelta  time.Duration // how far back an instant selector looks for a sample
	// DefaultStep is the step of a subquery written without one (x[1h:]):
	// Prometheus uses its global evaluation interval, 1m by default.
	DefaultStep time.Duration
}

// DefaultOptions returns the limits shiplog runs with.
func DefaultOptions() Options {
	return Options{
		MaxSamplesRead: 200_000_000,
		MaxSamples:     20_000_000,
		MaxPoints:      11_000,
		Timeout:        2 * time.Minute,
		LookbackDelta:  5 * time.Minute,
		DefaultStep:    time.Minute,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.MaxSamplesRead <= 0 {
		o.MaxSamplesRead = d.MaxSamplesRead
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = d.MaxSamples
	}
	if o.MaxPoints <= 0 {
		o.MaxPoints = d.MaxPoints
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.LookbackDelta <= 0 {
		o.LookbackDelta = d.LookbackDelta
	}
	if o.DefaultStep <= 0 {
		o.DefaultStep = d.DefaultStep
	}
}

// NewEngine returns a PromQL engine with opts' limits, behind the guard that
// refuses a query over them before evaluating it. reg (nil: none) gets the
// engine's prometheus_engine_* metrics.
func NewEngine(opts Options, log *slog.Logger, reg prometheus.Registerer) *Engine {
	opts.fill()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := parser.NewParser(parser.Options{})
	return &Engine{opts: opts, parser: p, Engine: promql.NewEngine(promql.EngineOpts{
		Parser:               p,
		Logger:               log,
		Reg:                  reg,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.Timeout,
		LookbackDelta:        opts.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		// A subquery without a step evaluates every DefaultStep, as
		// Prometheus does every evaluation interval.
		NoStepSubqueryIntervalFn: func(int64) int64 { return opts.DefaultStep.Milliseconds() },
	})}
}

// Source is what Queryable reads: the store.
type Source interface {
	MetricReader(mint, maxt int64) *store.MetricReader
}

// Queryable is a storage.Queryable over the metric store.
type Queryable struct {
	src  Source
	opts Options
}

// NewQueryable returns a Queryable over src with opts' limits.
func NewQueryable(src Source, opts Options) *Queryable {
	opts.fill()
	return &Queryable{src: src, opts: opts}
}

// Options returns the limits in force (defaults filled in).
func (q *Queryable) Options() Options { return q.opts }

// Querier implements storage.Queryable.
func (q *Queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{r: q.src.MetricReader(mint, maxt), opts: q.opts}, nil
}

type querier struct {
	r      *store.MetricReader
	opts   Options
	loaded atomic.Int64 // samples and series loaded by Select so far
}

func toMatchers(ms []*labels.Matcher) []store.MetricMatcher {
	out := make([]store.MetricMatcher, 0, len(ms))
	for _, m := range ms {
		if m == nil {
			continue
		}
		out = append(out, store.MetricMatcher{Name: m.Name, Equal: m.Type == labels.MatchEqual, Value: m.Value, Matches: m.Matches})
	}
	return out
}

func toLabels(ls []model.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

func selectorString(ms []*labels.Matcher) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		if m != nil {
			parts = append(parts, m.String())
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Select implements storage.Querier. Chunks are read here, so that a read
// error or a limit ends the query with an error instead of a short answer.
// What a query may select is bounded by what it loads: MaxSamplesRead
// counts every stored sample of its selectors' chunks and one for each
// series, so count(x) over many series answers while the memory a query
// takes stays bounded.
func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	found := q.r.Select(toMatchers(ms), 0)
	overLimit := func() storage.SeriesSet {
		return storage.ErrSeriesSet(fmt.Errorf("%w: the query would load more than %d stored samples (%s and the selectors before it); narrow the time range or the labels",
			ErrLimit, q.opts.MaxSamplesRead, selectorString(ms)))
	}
	if q.loaded.Add(int64(len(found))) > int64(q.opts.MaxSamplesRead) {
		return overLimit()
	}
	// One allocation for the series, one growing slice for their chunks.
	set := &seriesSet{series: make([]series, len(found)), i: -1}
	ends := make([]int, len(found))
	withSamples := hints == nil || hints.Func != "series"
	var chunks []store.MetricChunk
	for i, f := range found {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return storage.ErrSeriesSet(err)
			}
		}
		set.series[i].lset = toLabels(f.Labels)
		if withSamples {
			from := len(chunks)
			var err error
			if chunks, err = q.r.AppendChunks(chunks, f.ID); err != nil {
				return storage.ErrSeriesSet(fmt.Errorf("read series %s: %w", set.series[i].lset, err))
			}
			var read int
			for _, c := range chunks[from:] {
				read += c.Samples()
			}
			if q.loaded.Add(int64(read)) > int64(q.opts.MaxSamplesRead) {
				return overLimit()
			}
		}
		ends[i] = len(chunks)
	}
	from := 0
	for i, end := range ends {
		set.series[i].chunks = chunks[from:end:end]
		from = end
	}
	if sortSeries {
		slices.SortFunc(set.series, func(a, b series) int { return labels.Compare(a.lset, b.lset) })
	}
	return set
}

// LabelValues implements storage.LabelQuerier.
func (q *querier) LabelValues(_ context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	vals := q.r.LabelValues(name, toMatchers(ms))
	vals, _ = hints.ApplyLimit(vals)
	return vals, nil, nil
}

// LabelNames implements storage.LabelQuerier.
func (q *querier) LabelNames(_ context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	names := q.r.LabelNames(toMatchers(ms))
	names, _ = hints.ApplyLimit(names)
	return names, nil, nil
}

// Close implements storage.LabelQuerier.
func (q *querier) Close() error {
	q.r.Close()
	return nil
}

type seriesSet struct {
	series []series
	i      int
}

func (s *seriesSet) Next() bool {
	s.i++
	return s.i < len(s.series)
}
func (s *seriesSet) At() storage.Series                { return &s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series is one series with its chunks read.
type series struct {
	lset   labels.Labels
	chunks []store.MetricChunk
}

func (s *series) Labels() labels.Labels { return s.lset }

// Iterator reads the series' chunks in time order. Chunks that do not
// overlap (the usual case) are read one after the other, and Seek skips
// those that end before its time without decoding them; overlapping ones
// (out-of-order samples, a replayed WAL) are merged, and of samples with
// equal times one is kept. A chunk holds floats or native histograms
// (ValHistogram, ValFloatHistogram).
func (s *series) Iterator(reuse chunkenc.Iterator) chunkenc.Iterator {
	switch len(s.chunks) {
	case 0:
		return chunkenc.NewNopIterator()
	case 1:
		return chunkIterator(s.chunks[0], reuse)
	}
	if !overlapping(s.chunks) {
		it, ok := reuse.(*chunksIterator[int64])
		if !ok {
			it = &chunksIterator[int64]{}
		}
		it.reset(s.chunks)
		return it
	}
	its := make([]chunkenc.Iterator, len(s.chunks))
	for i, c := range s.chunks {
		its[i] = chunkIterator(c, nil)
	}
	return storage.ChainSampleIteratorFromIterators(reuse, its)
}

// overlapping reports whether chunks, sorted by MinT, overlap in time.
func overlapping(chunks []store.MetricChunk) bool {
	for i := 1; i < len(chunks); i++ {
		if chunks[i].MinT <= chunks[i-1].MaxT {
			return true
		}
	}
	return false
}

func chunkIterator(mc store.MetricChunk, reuse chunkenc.Iterator) chunkenc.Iterator {
	c, err := chunkenc.FromData(mc.Enc, mc.Data)
	if err != nil {
		// FromData only fails for an unknown encoding.
		return chunkenc.NewNopIterator()
	}
	return c.Iterator(reuse)
}

// chunksIterator reads chunks that do not overlap, sorted by time, one
// after the other, reusing one chunk iterator per encoding. It is generic
// in its time type only (always int64) because go vet's stdmethods check
// takes any Seek(int64) for a wrong io.Seeker; Prometheus' lint excludes
// the same check for its iterators.
type chunksIterator[T ~int64] struct {
	chunks []store.MetricChunk
	next   int                  // index of the chunk after cur's
	cur    chunkenc.Iterator    // of chunks[next-1]; nil before the first
	spare  [4]chunkenc.Iterator // by encoding, for reuse
	typ    chunkenc.ValueType   // at the current position
	err    error
}

func (it *chunksIterator[T]) reset(chunks []store.MetricChunk) {
	it.chunks, it.next, it.cur, it.typ, it.err = chunks, 0, nil, chunkenc.ValNone, nil
}

// open makes chunks[next] current.
func (it *chunksIterator[T]) open() {
	c := it.chunks[it.next]
	it.next++
	var reuse chunkenc.Iterator
	if int(c.Enc) < len(it.spare) {
		reuse = it.spare[c.Enc]
	}
	it.cur = chunkIterator(c, reuse)
	if int(c.Enc) < len(it.spare) {
		it.spare[c.Enc] = it.cur
	}
}

func (it *chunksIterator[T]) Next() chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	for {
		if it.cur != nil {
			if it.typ = it.cur.Next(); it.typ != chunkenc.ValNone {
				return it.typ
			}
			if it.err = it.cur.Err(); it.err != nil {
				return chunkenc.ValNone
			}
		}
		if it.next >= len(it.chunks) {
			it.cur = nil
			return chunkenc.ValNone
		}
		it.open()
	}
}

func (it *chunksIterator[T]) Seek(seekT T) chunkenc.ValueType {
	t := int64(seekT)
	if it.err != nil {
		return chunkenc.ValNone
	}
	if it.cur != nil && it.typ != chunkenc.ValNone && it.cur.AtT() >= t {
		return it.typ
	}
	if it.cur == nil || it.chunks[it.next-1].MaxT < t {
		// Skip, undecoded, the chunks that end before t.
		for it.next < len(it.chunks) && it.chunks[it.next].MaxT < t {
			it.next++
		}
		if it.next >= len(it.chunks) {
			it.cur, it.typ = nil, chunkenc.ValNone
			return chunkenc.ValNone
		}
		it.open()
	}
	if it.typ = it.cur.Seek(t); it.typ != chunkenc.ValNone {
		return it.typ
	}
	if it.err = it.cur.Err(); it.err != nil {
		return chunkenc.ValNone
	}
	return it.Next()
}

func (it *chunksIterator[T]) At() (int64, float64) { return it.cur.At() }
func (it *chunksIterator[T]) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return it.cur.AtHistogram(h)
}
func (it *chunksIterator[T]) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.cur.AtFloatHistogram(fh)
}
func (it *chunksIterator[T]) AtT() int64  { return it.cur.AtT() }
func (it *chunksIterator[T]) AtST() int64 { return it.cur.AtST() }
func (it *chunksIterator[T]) Err() error  { return it.err }
