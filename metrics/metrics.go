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
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	MaxSeries      int           // series one selector may select
	MaxSamplesRead int           // stored samples one selector may read
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
		MaxSeries:      50_000,
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
	if o.MaxSeries <= 0 {
		o.MaxSeries = d.MaxSeries
	}
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
	r    *store.MetricReader
	opts Options
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
func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	found := q.r.Select(toMatchers(ms), q.opts.MaxSeries)
	if len(found) > q.opts.MaxSeries {
		return storage.ErrSeriesSet(fmt.Errorf("%w: %s selects more than %d series; narrow it down with more labels",
			ErrLimit, selectorString(ms), q.opts.MaxSeries))
	}
	set := &seriesSet{series: make([]*series, 0, len(found)), i: -1}
	withSamples := hints == nil || hints.Func != "series"
	var read int
	for i, f := range found {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return storage.ErrSeriesSet(err)
			}
		}
		s := &series{lset: toLabels(f.Labels)}
		if withSamples {
			chunks, err := q.r.Chunks(f.ID)
			if err != nil {
				return storage.ErrSeriesSet(fmt.Errorf("read series %s: %w", s.lset, err))
			}
			for _, c := range chunks {
				read += c.Samples()
			}
			if read > q.opts.MaxSamplesRead {
				return storage.ErrSeriesSet(fmt.Errorf("%w: %s would read more than %d stored samples; narrow the time range or the labels",
					ErrLimit, selectorString(ms), q.opts.MaxSamplesRead))
			}
			s.chunks = chunks
		}
		set.series = append(set.series, s)
	}
	if sortSeries {
		slices.SortFunc(set.series, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })
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
	series []*series
	i      int
}

func (s *seriesSet) Next() bool {
	s.i++
	return s.i < len(s.series)
}
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series is one series with its chunks read.
type series struct {
	lset   labels.Labels
	chunks []store.MetricChunk
}

func (s *series) Labels() labels.Labels { return s.lset }

// Iterator merges the series' chunks in time order; the chunks of one
// series rarely overlap, and of samples with equal times one is kept. A
// chunk holds floats or native histograms (ValHistogram, ValFloatHistogram).
func (s *series) Iterator(reuse chunkenc.Iterator) chunkenc.Iterator {
	switch len(s.chunks) {
	case 0:
		return chunkenc.NewNopIterator()
	case 1:
		return chunkIterator(s.chunks[0], reuse)
	}
	its := make([]chunkenc.Iterator, len(s.chunks))
	for i, c := range s.chunks {
		its[i] = chunkIterator(c, nil)
	}
	return storage.ChainSampleIteratorFromIterators(reuse, its)
}

func chunkIterator(mc store.MetricChunk, reuse chunkenc.Iterator) chunkenc.Iterator {
	c, err := chunkenc.FromData(mc.Enc, mc.Data)
	if err != nil {
		// FromData only fails for an unknown encoding.
		return chunkenc.NewNopIterator()
	}
	return c.Iterator(reuse)
}
