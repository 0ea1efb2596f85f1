package metrics

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Storage is a storage.Storage over the metric store: appends go through
// store.Store.AppendSamples (the path every push and remote write takes),
// reads through Queryable (the server's read path). It lets Prometheus' own
// tests (promqltest) run over shiplog's storage. Floats and native
// histograms are stored; start timestamps, exemplars and metadata are
// dropped. Close closes the store.
type Storage struct {
	st *store.Store
	*Queryable
}

// NewStorage returns a Storage over st with opts' read limits.
func NewStorage(st *store.Store, opts Options) *Storage {
	return &Storage{st: st, Queryable: NewQueryable(st, opts)}
}

var _ storage.Storage = (*Storage)(nil)

// ChunkQuerier implements storage.ChunkQueryable, re-encoding what Querier
// reads.
func (s *Storage) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := s.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return chunkQuerier{q}, nil
}

type chunkQuerier struct{ storage.Querier }

func (q chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(q.Querier.Select(ctx, sortSeries, hints, ms...))
}

// StartTime implements storage.Storage. The store does not track its oldest
// sample; times start at the Unix epoch.
func (s *Storage) StartTime() (int64, error) { return 0, nil }

// Close closes the store.
func (s *Storage) Close() error { return s.st.Close() }

// AppenderV2 implements storage.AppendableV2.
func (s *Storage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &appenderV2{batch{ctx: ctx, st: s.st}}
}

// Appender implements storage.Appendable.
func (s *Storage) Appender(ctx context.Context) storage.Appender {
	return &appender{batch{ctx: ctx, st: s.st}}
}

// batch collects samples until Commit writes them with one AppendSamples.
type batch struct {
	ctx    context.Context
	st     *store.Store
	series []model.Series
	index  map[string]int // the labels (labels.Labels.Bytes) -> index into series
}

// add adds one sample of series l, a float or (h or fh set) a native
// histogram, and returns its reference (the hash of its labels).
func (b *batch) add(l labels.Labels, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if t < 0 {
		return 0, fmt.Errorf("%s: time %d: %w", l, t, storage.ErrOutOfBounds)
	}
	ls := toModelLabels(l)
	lset := toLabels(ls)
	if b.index == nil {
		b.index = map[string]int{}
	}
	key := string(lset.Bytes(nil))
	i, ok := b.index[key]
	if !ok {
		i = len(b.series)
		b.series = append(b.series, model.Series{Labels: ls})
		b.index[key] = i
	}
	switch {
	case h != nil:
		b.series[i].Histograms = append(b.series[i].Histograms, model.HistogramSample{T: t, H: h.Copy()})
	case fh != nil:
		b.series[i].Histograms = append(b.series[i].Histograms, model.HistogramSample{T: t, FH: fh.Copy()})
	default:
		b.series[i].Samples = append(b.series[i].Samples, model.Sample{T: t, V: v})
	}
	return storage.SeriesRef(max(lset.Hash(), 1)), nil
}

// toModelLabels converts l (sorted by name) to the store's labels, leaving
// out empty values as ingest does.
func toModelLabels(l labels.Labels) []model.Label {
	out := make([]model.Label, 0, l.Len())
	l.Range(func(lb labels.Label) {
		if lb.Value != "" {
			out = append(out, model.Label{Name: lb.Name, Value: lb.Value})
		}
	})
	return out
}

// Commit writes the batch. Samples the store drops (duplicates, out of the
// out-of-order window, over the series limit) make it fail, as they would
// make Prometheus' TSDB fail the append.
func (b *batch) Commit() error {
	series := b.series
	b.series, b.index = nil, nil
	if len(series) == 0 {
		return nil
	}
	res, err := b.st.AppendSamples(b.ctx, series)
	if err != nil {
		return err
	}
	if res.Duplicates > 0 || res.OutOfWindow > 0 || res.OverSeriesLimit > 0 {
		return fmt.Errorf("append samples: %d duplicates, %d out of the out-of-order window, %d over the series limit were not stored",
			res.Duplicates, res.OutOfWindow, res.OverSeriesLimit)
	}
	return nil
}

// Rollback drops the batch.
func (b *batch) Rollback() error {
	b.series, b.index = nil, nil
	return nil
}

type appenderV2 struct{ batch }

// Append implements storage.AppenderV2. st, exemplars and metadata are dropped.
func (a *appenderV2) Append(_ storage.SeriesRef, l labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	return a.add(l, t, v, h, fh)
}

type appender struct{ batch }

// Append implements storage.Appender.
func (a *appender) Append(_ storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.add(l, t, v, nil, nil)
}

func (a *appender) SetOptions(*storage.AppendOptions) {}

func (a *appender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

// AppendHistogram implements storage.Appender.
func (a *appender) AppendHistogram(_ storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.add(l, t, 0, h, fh)
}

// AppendHistogramSTZeroSample implements storage.Appender: the store keeps no
// start times.
func (a *appender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *appender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}

// AppendSTZeroSample implements storage.StartTimestampAppender: the store
// keeps no start times.
func (a *appender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}
