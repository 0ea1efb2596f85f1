package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// MetricsOptions tune the metric store. The zero value of a field means its default.
type MetricsOptions struct {
	ChunkMaxSamples int // seal a series' open chunk at this many samples
	// ChunkSegmentSamples cuts a float chunk in segments of this many
	// samples, read apart: a short window decodes one segment.
	ChunkSegmentSamples int
	ChunkMaxAge         time.Duration // ... or when it has been open this long
	OutOfOrderMax       int           // seal a series' out-of-order buffer at this many samples
	OutOfOrderWindow    time.Duration // accept samples up to this far behind a series' newest
	WALSegmentBytes     int64         // size of one metrics WAL segment
	WALMaxSegments      int           // chunks pinning older segments are sealed early
	Maintenance         time.Duration // period of sealing old chunks and trimming the WAL
	LogLinesInterval    time.Duration // period of writing shiplog_log_lines_total
	LogLinesIdle        time.Duration // a log-lines series unchanged this long is no longer written
	// MaxSeries bounds the series in the index (every series with samples
	// on a day the store keeps; retention frees them). A write bringing
	// new series beyond it has those series' samples refused
	// (MetricsResult.OverSeriesLimit); existing series keep taking samples.
	MaxSeries int
	Now       func() time.Time
}

// DefaultMetricsOptions returns the options shiplog runs with.
func DefaultMetricsOptions() MetricsOptions {
	return MetricsOptions{
		ChunkMaxSamples:     480,
		ChunkSegmentSamples: 120,
		ChunkMaxAge:         2 * time.Hour,
		OutOfOrderMax:       120,
		OutOfOrderWindow:    time.Hour,
		WALSegmentBytes:     32 << 20,
		WALMaxSegments:      8,
		Maintenance:         5 * time.Second,
		LogLinesInterval:    10 * time.Second,
		LogLinesIdle:        time.Hour,
		MaxSeries:           1_000_000,
		Now:                 time.Now,
	}
}

func (o *MetricsOptions) fill() {
	d := DefaultMetricsOptions()
	if o.ChunkMaxSamples <= 0 || o.ChunkMaxSamples > math.MaxUint16 {
		o.ChunkMaxSamples = d.ChunkMaxSamples
	}
	if o.ChunkSegmentSamples <= 0 {
		o.ChunkSegmentSamples = d.ChunkSegmentSamples
	}
	if o.ChunkMaxAge <= 0 {
		o.ChunkMaxAge = d.ChunkMaxAge
	}
	if o.OutOfOrderMax <= 0 {
		o.OutOfOrderMax = d.OutOfOrderMax
	}
	if o.OutOfOrderWindow <= 0 {
		o.OutOfOrderWindow = d.OutOfOrderWindow
	}
	if o.WALSegmentBytes <= 0 {
		o.WALSegmentBytes = d.WALSegmentBytes
	}
	if o.WALMaxSegments <= 0 {
		o.WALMaxSegments = d.WALMaxSegments
	}
	if o.Maintenance <= 0 {
		o.Maintenance = d.Maintenance
	}
	if o.LogLinesInterval <= 0 {
		o.LogLinesInterval = d.LogLinesInterval
	}
	if o.LogLinesIdle <= 0 {
		o.LogLinesIdle = d.LogLinesIdle
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = d.MaxSeries
	}
	if o.Now == nil {
		o.Now = d.Now
	}
}

// mseries is one metric series in memory. lset, id and hash never change;
// everything else is guarded by metricStore.mu.
type mseries struct {
	id   uint64
	hash uint64
	lset []model.Label

	days    []uint32   // days with samples (sealed or not), ascending
	maxT    int64      // newest sample; math.MinInt64 when unknown (after a restart)
	head    *mhead     // open in-order chunk, or nil
	ooo     *oooBuf    // samples older than maxT, or nil
	sealing []*sealJob // chunks queued for Badger
	// sealedMaxT bounds the newest sample of any chunk queued for or
	// written to Badger (from the day marks after a restart): a read of
	// later times needs nothing from Badger. math.MinInt64: none.
	sealedMaxT int64
	// lastHist is the last histogram of the last histogram head sealed
	// (none if a float head came after it): the next histogram head takes
	// its counter reset header from it. Only it is kept, not the chunk.
	lastHist model.HistogramSample
}

// mhead is a series' open chunk: XOR (floats) or a histogram encoding; its
// samples are in time order and on one day. A float chunk is cut in
// segments: the closed ones in segs, the open one in openChunk.
type mhead struct {
	openChunk               // the (open segment of the) chunk, its encoding, appender, bounds and count
	segs      []MetricChunk // closed XOR segments, oldest first; immutable once here
	segN      int           // samples in segs
	day       uint32
	minSeg    uint64 // oldest WAL segment with a sample not yet in Badger
	opened    time.Time
	seq       uint64 // of its key: checkpoints and the final chunk share it
}

// oooBuf holds a series' out-of-order samples, floats and histograms apart,
// each sorted by time, times unique.
type oooBuf struct {
	s      []model.Sample
	h      []model.HistogramSample
	minSeg uint64
	opened time.Time
}

// sealJob is one chunk on its way to Badger. Immutable once queued.
type sealJob struct {
	sr     *mseries
	day    uint32
	c      MetricChunk   // with segs: only its bounds and encoding
	segs   []MetricChunk // a float chunk's segments, or nil
	minSeg uint64
	maxT   int64  // the series' newest sample when queued (the day key's value)
	seq    uint64 // of its key
}

// metricStore keeps metric series in the Store's Badger DB; see doc.go.
type metricStore struct {
	db   *badger.DB
	dir  string
	opts MetricsOptions
	log  *slog.Logger
	m    *metricMetrics
	// retention: days wholly older than this are dropped (0: kept). The
	// Store's retention also drops the days it drops (dropDay).
	retention time.Duration
	// readOnly: the Store was opened read-only (s says why); nothing is written.
	readOnly bool
	s        *Store

	createMu sync.Mutex // serialises creating series (ids and S keys)
	nextID   uint64     // guarded by createMu
	writeMu  sync.Mutex // serialises writing queued chunks

	mu     sync.RWMutex // guards everything below and the mutable fields of mseries
	closed bool
	wal    *wal
	series map[uint64]*mseries
	// byHash finds a series by its labels' hash; the rare others of the
	// same hash are in collide (a slice a series cost ~40 bytes each more).
	byHash   map[uint64]*mseries
	collide  map[uint64][]*mseries
	postings map[string]map[string][]uint64 // label name -> value -> ascending series ids
	allIDs   []uint64                       // ascending
	days     map[uint32]struct{}            // days with data
	sealQ    []*sealJob
	walFloor uint64
	// sealGen counts the times written chunks left the seal queues: a
	// reader's Badger view older than that may miss them (MetricReader).
	sealGen uint64

	chunkSeq    atomic.Uint64
	minDay      atomic.Uint32 // retention: samples on earlier days are refused
	limitLogged atomic.Int64  // Unix ns of the last series-limit warning

	lines *lineCounter

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

type metricMetrics struct {
	samples, duplicates, outOfWindow, chunks, chunkBytes, errors, seriesRefused prometheus.Counter
	series                                                                      prometheus.GaugeFunc
	seriesLimit                                                                 prometheus.Gauge
}

func newMetricMetrics(reg prometheus.Registerer, ms *metricStore) *metricMetrics {
	m := &metricMetrics{
		samples:     prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_samples_total", Help: "Metric samples stored."}),
		duplicates:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_duplicate_samples_total", Help: "Metric samples dropped: their series already had a sample at that time."}),
		outOfWindow: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_out_of_window_samples_total", Help: "Metric samples refused: older than the out-of-order window or the retention."}),
		chunks:      prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_chunks_sealed_total", Help: "Metric chunks written to Badger."}),
		chunkBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_chunk_bytes_total", Help: "Bytes of metric chunks written to Badger (keys and values)."}),
		errors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_errors_total", Help: "Background metric store errors (chunk writes, WAL truncation, retention)."}),
		series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_metrics_series", Help: "Metric series in the index."}, func() float64 {
			ms.mu.RLock()
			defer ms.mu.RUnlock()
			return float64(len(ms.series))
		}),
		seriesLimit:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_metrics_series_limit", Help: "The most metric series the index may hold (--max-series)."}),
		seriesRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_metrics_series_refused_total", Help: "New metric series refused, with their samples, because the index held --max-series series (counted once per write)."}),
	}
	m.seriesLimit.Set(float64(ms.opts.MaxSeries))
	if reg != nil {
		reg.MustRegister(m.samples, m.duplicates, m.outOfWindow, m.chunks, m.chunkBytes, m.errors, m.series, m.seriesLimit, m.seriesRefused)
	}
	return m
}

// openMetricStore loads the series index, replays the metrics WAL and starts
// the background work.
// It shares s's Badger DB, retention and floor (days below it were dropped:
// samples on them are refused), and registers the store's collector of
// sizes and agent accounting (collector.go) with reg.
func openMetricStore(s *Store, opts MetricsOptions, reg prometheus.Registerer) (*metricStore, error) {
	opts.fill()
	ms := &metricStore{
		db:        s.db,
		dir:       s.dir,
		opts:      opts,
		log:       s.log,
		retention: s.opts.Retention,
		series:    map[uint64]*mseries{},
		byHash:    map[uint64]*mseries{},
		collide:   map[uint64][]*mseries{},
		postings:  map[string]map[string][]uint64{},
		days:      map[uint32]struct{}{},
		lines:     newLineCounter(),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		nextID:    1,
	}
	ms.m = newMetricMetrics(reg, ms)
	ms.chunkSeq.Store(uint64(time.Now().UnixNano()))
	ms.minDay.Store(s.floor)
	if err := ms.load(); err != nil {
		return nil, fmt.Errorf("open metric store: %w", err)
	}
	var err error
	ms.readOnly, ms.s = s.readOnly, s
	if ms.wal, err = openWAL(filepath.Join(s.dir, "mwal"), opts.WALSegmentBytes, s.opts.Fsync, s.readOnly); err != nil {
		return nil, fmt.Errorf("open metric store: %w", err)
	}
	if err := ms.replay(); err != nil {
		_ = ms.wal.close()
		return nil, fmt.Errorf("open metric store: %w", err)
	}
	if err := ms.loadLineCounts(); err != nil {
		_ = ms.wal.close()
		return nil, fmt.Errorf("open metric store: %w", err)
	}
	if reg != nil {
		reg.MustRegister(&collector{s: s})
	}
	if ms.readOnly {
		return ms, nil // replayed samples stay in memory; nothing is sealed
	}
	ms.wg.Add(2)
	go ms.sealLoop()
	go ms.maintLoop()
	return ms, nil
}

// load reads the series and their days from Badger.
func (ms *metricStore) load() error {
	return ms.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxSeries}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				continue
			}
			id := binary.BigEndian.Uint64(k[1:])
			var ls []model.Label
			if err := it.Item().Value(func(v []byte) (err error) {
				ls, err = decodeSeriesLabels(v)
				return err
			}); err != nil {
				return fmt.Errorf("series %d: %w", id, err)
			}
			ms.addSeries(id, hashLabels(ls), ls)
			ms.nextID = max(ms.nextID, id+1)
		}
		it2 := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxSeriesDay}})
		defer it2.Close()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			k := it2.Item().Key()
			if len(k) != 13 {
				continue
			}
			day, id := binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint64(k[5:])
			sr := ms.series[id]
			if sr == nil {
				continue
			}
			ms.addDay(sr, day)
			_ = it2.Item().Value(func(v []byte) error {
				r := wire.NewReader(v, nil)
				if t := r.Varint(); r.Err() == nil {
					sr.maxT = max(sr.maxT, t)
					sr.sealedMaxT = max(sr.sealedMaxT, t)
				} else {
					sr.sealedMaxT = math.MaxInt64 // unknown: every read looks in Badger
				}
				return nil
			})
		}
		return nil
	})
}

// hashLabels hashes sorted labels.
func hashLabels(ls []model.Label) uint64 {
	var d xxhash.Digest
	d.Reset()
	for _, l := range ls {
		_, _ = d.WriteString(l.Name)
		_, _ = d.Write([]byte{0xff})
		_, _ = d.WriteString(l.Value)
		_, _ = d.Write([]byte{0xff})
	}
	return d.Sum64()
}

func sameLabels(a, b []model.Label) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// lookup finds a series by labels. Caller holds mu.
func (ms *metricStore) lookup(h uint64, ls []model.Label) *mseries {
	if sr := ms.byHash[h]; sr == nil || sameLabels(sr.lset, ls) {
		return sr
	}
	for _, sr := range ms.collide[h] {
		if sameLabels(sr.lset, ls) {
			return sr
		}
	}
	return nil
}

// addSeries puts a series in the index. Caller holds mu (or owns ms).
// The series takes over ls: a label another series has already is made to
// share that series' strings (a series of 18k, the log-line counters of
// five days, holds one copy of each name and of each repeated value, not
// one a series).
func (ms *metricStore) addSeries(id, h uint64, ls []model.Label) *mseries {
	sr := &mseries{id: id, hash: h, lset: ls, maxT: math.MinInt64, sealedMaxT: math.MinInt64}
	ms.series[id] = sr
	if ms.byHash[h] == nil {
		ms.byHash[h] = sr
	} else {
		if ms.collide == nil {
			ms.collide = map[uint64][]*mseries{}
		}
		ms.collide[h] = append(ms.collide[h], sr)
	}
	for i, l := range ls {
		vals := ms.postings[l.Name]
		if vals == nil {
			vals = map[string][]uint64{}
			ms.postings[l.Name] = vals
		}
		ids := vals[l.Value]
		if c, ok := ms.sharedLabel(ids, vals, l.Name); ok {
			ls[i].Name = c.Name
			if len(ids) > 0 {
				ls[i].Value = c.Value
			}
		}
		vals[l.Value] = insertID(ids, id)
	}
	ms.allIDs = insertID(ms.allIDs, id)
	return sr
}

// sharedLabel returns the label called name of a series already indexed:
// one of ids (those with the value too) or, when there are none, of any
// value of the name (its Name only is then the same). Caller holds mu.
func (ms *metricStore) sharedLabel(ids []uint64, vals map[string][]uint64, name string) (model.Label, bool) {
	if len(ids) == 0 {
		for _, other := range vals {
			ids = other
			break
		}
	}
	if len(ids) == 0 {
		return model.Label{}, false
	}
	o := ms.series[ids[0]]
	if o == nil {
		return model.Label{}, false
	}
	for _, l := range o.lset {
		if l.Name == name {
			return l, true
		}
	}
	return model.Label{}, false
}

// removeSeries takes a series out of the index. Caller holds mu.
func (ms *metricStore) removeSeries(sr *mseries) {
	delete(ms.series, sr.id)
	hs := ms.collide[sr.hash]
	if ms.byHash[sr.hash] == sr {
		// One of the same hash, if any, takes its place.
		if len(hs) == 0 {
			delete(ms.byHash, sr.hash)
		} else {
			ms.byHash[sr.hash], hs = hs[0], hs[1:]
		}
	} else if i := slices.Index(hs, sr); i >= 0 {
		hs = slices.Delete(slices.Clone(hs), i, i+1)
	}
	if len(hs) == 0 {
		delete(ms.collide, sr.hash)
	} else {
		ms.collide[sr.hash] = hs
	}
	for _, l := range sr.lset {
		vals := ms.postings[l.Name]
		ids := removeID(vals[l.Value], sr.id)
		if len(ids) == 0 {
			delete(vals, l.Value)
			if len(vals) == 0 {
				delete(ms.postings, l.Name)
			}
		} else {
			vals[l.Value] = ids
		}
	}
	ms.allIDs = removeID(ms.allIDs, sr.id)
}

// insertID adds id to an ascending list; ids usually come in ascending order.
func insertID(ids []uint64, id uint64) []uint64 {
	n := len(ids)
	if n == 0 || ids[n-1] < id {
		return append(ids, id)
	}
	i := sort.Search(n, func(i int) bool { return ids[i] >= id })
	if i < n && ids[i] == id {
		return ids
	}
	ids = append(ids, 0)
	copy(ids[i+1:], ids[i:])
	ids[i] = id
	return ids
}

func removeID(ids []uint64, id uint64) []uint64 {
	i := sort.Search(len(ids), func(i int) bool { return ids[i] >= id })
	if i < len(ids) && ids[i] == id {
		return append(ids[:i], ids[i+1:]...)
	}
	return ids
}

// addDay records that sr has samples on day. Caller holds mu.
func (ms *metricStore) addDay(sr *mseries, day uint32) {
	ms.days[day] = struct{}{}
	n := len(sr.days)
	if n > 0 && sr.days[n-1] == day {
		return
	}
	if n == 0 || sr.days[n-1] < day {
		sr.days = append(sr.days, day)
		return
	}
	i := sort.Search(n, func(i int) bool { return sr.days[i] >= day })
	if sr.days[i] == day {
		return
	}
	sr.days = append(sr.days, 0)
	copy(sr.days[i+1:], sr.days[i:])
	sr.days[i] = day
}

// hasDayIn reports whether sr has samples on a day in [d0, d1]. Caller holds mu.
func (sr *mseries) hasDayIn(d0, d1 uint32) bool {
	i := sort.Search(len(sr.days), func(i int) bool { return sr.days[i] >= d0 })
	return i < len(sr.days) && sr.days[i] <= d1
}

// close writes the last log-line counts, seals and writes every chunk and
// removes the WAL. Appends after close fail with ErrClosed.
func (ms *metricStore) close() error {
	if ms.readOnly {
		ms.mu.Lock()
		ms.closed = true
		ms.mu.Unlock()
		close(ms.stop)
		return ms.wal.close()
	}
	ms.flushLineCounts(true)
	ms.mu.Lock()
	if ms.closed {
		ms.mu.Unlock()
		return ErrClosed
	}
	ms.closed = true
	ms.mu.Unlock()
	close(ms.stop)
	ms.wg.Wait()
	ms.maintain(ms.opts.Now(), true)
	ms.mu.Lock()
	left := len(ms.sealQ)
	ms.mu.Unlock()
	var errs []error
	if left > 0 {
		errs = append(errs, fmt.Errorf("close metric store: %d chunks not written (kept in the WAL)", left))
	}
	errs = append(errs, ms.wal.close())
	return errors.Join(errs...)
}

// abandon stops the background work and closes the WAL without sealing or
// writing anything, as a crash would (for tests of recovery).
func (ms *metricStore) abandon() {
	ms.mu.Lock()
	ms.closed = true
	ms.mu.Unlock()
	close(ms.stop)
	ms.wg.Wait()
	_ = ms.wal.close()
}

// replay reads the metrics WAL back into open chunks. Samples that were
// sealed already come back as chunks overlapping sealed ones; readers merge
// them, so nothing is doubled in query answers.
func (ms *metricStore) replay() error {
	now := ms.opts.Now()
	var samples int
	bad, err := ms.wal.replay(func(seg uint64, p []byte) error {
		rd := wire.NewReader(p, errMetricsWALPayload)
		r := &rd
		version := r.Byte()
		if version != 1 && version != 2 {
			return fmt.Errorf("%w: metrics wal payload version %d", errCorrupt, version)
		}
		for r.Len() > 0 && r.Err() == nil {
			id := r.Uvarint()
			n := r.Uint32BE()
			sr := ms.series[id]
			for i := uint32(0); i < n && r.Err() == nil; i++ {
				t := r.Varint()
				v := math.Float64frombits(r.Uint64BE())
				if r.Err() != nil || sr == nil {
					continue
				}
				ms.add(sr, t, v, seg, now, true)
				samples++
			}
			if version == 2 {
				n := r.Uint32BE()
				for i := uint32(0); i < n && r.Err() == nil; i++ {
					h, err := readHistogram(r)
					if err != nil || sr == nil {
						continue
					}
					ms.addHist(sr, h, seg, now, true)
					samples++
				}
			}
		}
		return r.Err()
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		ms.log.Warn("store: metrics wal: torn or corrupt frames skipped", "frames", bad)
	}
	if samples > 0 {
		ms.log.Info("store: metrics wal replayed", "samples", samples)
	}
	return nil
}

// readHistogram reads one histogram of a metrics WAL record (appendHistograms).
func readHistogram(r *wire.Reader) (model.HistogramSample, error) {
	h := model.HistogramSample{T: r.Varint()}
	enc := chunkenc.Encoding(r.Byte())
	b := []byte(r.Str())
	if r.Err() != nil {
		return h, r.Err()
	}
	if (enc != chunkenc.EncHistogram && enc != chunkenc.EncFloatHistogram) || len(b) < chunkHeaderLen(enc) {
		return h, fmt.Errorf("%w: metrics wal histogram encoding %d", errCorrupt, enc)
	}
	// A corrupt record could claim billions of buckets (as a chunk could).
	if err := checkHistogramLayout(b); err != nil {
		return h, err
	}
	c, err := chunkenc.FromData(enc, b)
	if err != nil {
		return h, err
	}
	it := c.Iterator(nil)
	switch it.Next() {
	case chunkenc.ValHistogram:
		_, h.H = it.AtHistogram(nil)
	case chunkenc.ValFloatHistogram:
		_, h.FH = it.AtFloatHistogram(nil)
	default:
		if err := it.Err(); err != nil {
			return h, err
		}
		return h, fmt.Errorf("%w: metrics wal histogram", errCorrupt)
	}
	return h, nil
}

// errMetricsWALPayload is the error of a metrics WAL payload that does not
// decode.
var errMetricsWALPayload = fmt.Errorf("%w: metrics wal payload", errCorrupt)
