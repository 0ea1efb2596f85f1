package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

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

	mu       sync.RWMutex // guards everything below and the mutable fields of mseries
	closed   bool
	wal      *wal
	series   map[uint64]*mseries
	byHash   map[uint64][]*mseries
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
		byHash:    map[uint64][]*mseries{},
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
				if t, n := binary.Varint(v); n > 0 {
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
	for _, sr := range ms.byHash[h] {
		if sameLabels(sr.lset, ls) {
			return sr
		}
	}
	return nil
}

// addSeries puts a series in the index. Caller holds mu (or owns ms).
func (ms *metricStore) addSeries(id, h uint64, ls []model.Label) *mseries {
	sr := &mseries{id: id, hash: h, lset: ls, maxT: math.MinInt64, sealedMaxT: math.MinInt64}
	ms.series[id] = sr
	ms.byHash[h] = append(ms.byHash[h], sr)
	for _, l := range ls {
		vals := ms.postings[l.Name]
		if vals == nil {
			vals = map[string][]uint64{}
			ms.postings[l.Name] = vals
		}
		vals[l.Value] = insertID(vals[l.Value], id)
	}
	ms.allIDs = insertID(ms.allIDs, id)
	return sr
}

// removeSeries takes a series out of the index. Caller holds mu.
func (ms *metricStore) removeSeries(sr *mseries) {
	delete(ms.series, sr.id)
	hs := ms.byHash[sr.hash]
	for i, o := range hs {
		if o == sr {
			hs = append(hs[:i:i], hs[i+1:]...)
			break
		}
	}
	if len(hs) == 0 {
		delete(ms.byHash, sr.hash)
	} else {
		ms.byHash[sr.hash] = hs
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

// AppendSamples stores samples of metric series. When it returns without
// error every accepted sample is in the metrics WAL (one write(2)) and visible
// to queries. Labels must be sorted by name with unique names (ingest
// validates them); times are Unix milliseconds >= 0.
func (s *Store) AppendSamples(ctx context.Context, series []model.Series) (model.MetricsResult, error) {
	if err := ctx.Err(); err != nil {
		return model.MetricsResult{}, err
	}
	return s.ms.append(series)
}

// errMetricsClosed is ErrClosed for the metric store.
var errMetricsClosed = fmt.Errorf("metric store: %w", ErrClosed)

func (ms *metricStore) append(series []model.Series) (model.MetricsResult, error) {
	var res model.MetricsResult
	if ms.readOnly {
		return res, ms.s.errReadOnly()
	}
	refs, err := ms.resolve(series, &res)
	if err != nil {
		return res, err
	}

	now := ms.opts.Now()
	ms.mu.Lock()
	if ms.closed {
		ms.mu.Unlock()
		return res, errMetricsClosed
	}
	seg := ms.wal.seg
	if ms.wal.f == nil {
		seg++ // the first append starts a new segment
	}
	version := walPayloadVersion(series)
	frame := make([]byte, walFrameHeader, walFrameHeader+16+len(series)*24)
	frame = append(frame, version)
	minDay := ms.minDay.Load()
	var n int
	for i := range series {
		sr := refs[i]
		if sr == nil {
			continue
		}
		start := len(frame)
		frame = binary.AppendUvarint(frame, sr.id)
		countAt := len(frame)
		frame = append(frame, 0, 0, 0, 0) // sample count, set below
		// Floats and histograms go in in time order together, so that
		// neither looks out of order to the other; the record holds the
		// floats, then the histograms.
		var k, hk uint32
		var hrec []byte
		smps, hs := series[i].Samples, series[i].Histograms
		for len(smps) > 0 || len(hs) > 0 {
			if len(hs) > 0 && (len(smps) == 0 || hs[0].T < smps[0].T) {
				if ms.appendHistogram(&hrec, sr, hs[0], minDay, seg, now, &res) {
					hk++
				}
				hs = hs[1:]
				continue
			}
			smp := smps[0]
			smps = smps[1:]
			if msDay(smp.T) < minDay {
				res.OutOfWindow++
				continue
			}
			switch ms.add(sr, smp.T, smp.V, seg, now, false) {
			case addOK:
				frame = binary.AppendVarint(frame, smp.T)
				frame = binary.BigEndian.AppendUint64(frame, math.Float64bits(smp.V))
				k++
				res.Accepted++
			case addDuplicate:
				res.Duplicates++
			case addTooOld:
				res.OutOfWindow++
			}
		}
		binary.BigEndian.PutUint32(frame[countAt:], k)
		if version == 2 {
			frame = binary.BigEndian.AppendUint32(frame, hk)
			frame = append(frame, hrec...)
		}
		if k == 0 && hk == 0 {
			frame = frame[:start]
			continue
		}
		n++
	}
	if res.Accepted > 0 {
		_, err = ms.wal.append(frame)
	}
	kick := len(ms.sealQ) > 0
	ms.mu.Unlock()
	if kick {
		ms.kickSealer()
	}
	if err != nil {
		// The samples are in memory and will reach Badger, but were not acked.
		return model.MetricsResult{}, fmt.Errorf("append samples: %w", err)
	}
	ms.m.samples.Add(float64(res.Accepted))
	ms.m.duplicates.Add(float64(res.Duplicates))
	ms.m.outOfWindow.Add(float64(res.OutOfWindow))
	return res, nil
}

// resolve finds the series of a request, creating the missing ones that have
// samples as far as MaxSeries allows. A refused series' ref stays nil and its
// samples are counted in res.
func (ms *metricStore) resolve(series []model.Series, res *model.MetricsResult) ([]*mseries, error) {
	refs := make([]*mseries, len(series))
	hashes := make([]uint64, len(series))
	var missing []int
	ms.mu.RLock()
	if ms.closed {
		ms.mu.RUnlock()
		return nil, errMetricsClosed
	}
	for i := range series {
		hashes[i] = hashLabels(series[i].Labels)
		if refs[i] = ms.lookup(hashes[i], series[i].Labels); refs[i] == nil && len(series[i].Samples)+len(series[i].Histograms) > 0 {
			missing = append(missing, i)
		}
	}
	ms.mu.RUnlock()
	if len(missing) > 0 {
		refused, err := ms.create(series, hashes, refs, missing)
		if err != nil {
			return nil, err
		}
		if refused > 0 {
			res.NewSeriesRefused, res.MaxSeries = refused, ms.opts.MaxSeries
			for _, i := range missing {
				if refs[i] == nil {
					res.OverSeriesLimit += len(series[i].Samples) + len(series[i].Histograms)
				}
			}
			ms.m.seriesRefused.Add(float64(refused))
			ms.logSeriesLimit(refused)
		}
	}
	return refs, nil
}

// walPayloadVersion is the version of a metrics WAL payload for series:
// 1: floats only; 2: floats, then histograms, of each series.
func walPayloadVersion(series []model.Series) byte {
	for i := range series {
		if len(series[i].Histograms) > 0 {
			return 2
		}
	}
	return 1
}

// appendHistogram adds h to sr and, when it is accepted, its WAL record to
// rec: its time (varint), encoding byte and a one-sample chunk of that
// encoding (uvarint length + bytes). A series' histogram records follow its
// floats in the frame, after their count (uint32 big-endian). Caller holds mu.
func (ms *metricStore) appendHistogram(rec *[]byte, sr *mseries, h model.HistogramSample, minDay uint32, seg uint64, now time.Time, res *model.MetricsResult) bool {
	if h.H == nil && h.FH == nil {
		return false
	}
	if msDay(h.T) < minDay {
		res.OutOfWindow++
		return false
	}
	// The chunk encoder may rewrite a histogram's buckets: keep the caller's.
	if h.H != nil {
		h.H, h.FH = h.H.Copy(), nil
	} else {
		h.FH = h.FH.Copy()
	}
	switch ms.addHist(sr, h, seg, now, false) {
	case addOK:
		c := newHistChunk(nil, h)
		c.chunk.Compact()
		b := binary.AppendVarint(*rec, h.T)
		b = append(b, byte(c.enc))
		b = binary.AppendUvarint(b, uint64(len(c.chunk.Bytes())))
		*rec = append(b, c.chunk.Bytes()...)
		res.Accepted++
		return true
	case addDuplicate:
		res.Duplicates++
	case addTooOld:
		res.OutOfWindow++
	}
	return false
}

// create adds the missing series, writing their labels to Badger first, as
// many as MaxSeries leaves room for, in the request's order; it returns how
// many it refused (their refs stay nil).
func (ms *metricStore) create(series []model.Series, hashes []uint64, refs []*mseries, missing []int) (refused int, err error) {
	ms.createMu.Lock()
	defer ms.createMu.Unlock()
	type pending struct {
		i  int
		id uint64
	}
	var todo []pending
	ms.mu.RLock()
	// createMu serialises creation and only retention removes series, so
	// the room cannot shrink before the series below are added.
	room := ms.opts.MaxSeries - len(ms.series)
	seen := make(map[uint64][]int, len(missing)) // new series of this request, by hash
	for _, i := range missing {
		if refs[i] = ms.lookup(hashes[i], series[i].Labels); refs[i] != nil {
			continue
		}
		// The same series twice in one request.
		dup := false
		for _, j := range seen[hashes[i]] {
			if sameLabels(series[j].Labels, series[i].Labels) {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		seen[hashes[i]] = append(seen[hashes[i]], i)
		if len(todo) >= room {
			refused++
			continue
		}
		todo = append(todo, pending{i, ms.nextID})
		ms.nextID++
	}
	ms.mu.RUnlock()
	if len(todo) > 0 {
		wb := ms.db.NewWriteBatch()
		for _, p := range todo {
			if err := wb.Set(seriesKey(p.id), encodeSeriesLabels(series[p.i].Labels)); err != nil {
				wb.Cancel()
				return 0, fmt.Errorf("create series: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return 0, fmt.Errorf("create series: %w", err)
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, p := range todo {
		ls := append([]model.Label(nil), series[p.i].Labels...)
		ms.addSeries(p.id, hashes[p.i], ls)
	}
	for _, i := range missing {
		if refs[i] == nil {
			refs[i] = ms.lookup(hashes[i], series[i].Labels)
		}
	}
	return refused, nil
}

// logSeriesLimit warns that new series were refused, at most once a minute.
func (ms *metricStore) logSeriesLimit(refused int) {
	now := time.Now().UnixNano()
	last := ms.limitLogged.Load()
	if now-last < int64(time.Minute) || !ms.limitLogged.CompareAndSwap(last, now) {
		return
	}
	ms.log.Warn("metric series limit reached: new series are refused, existing ones keep taking samples; raise --max-series or find the metric with too many series: topk(10, count by (__name__) ({__name__=~\".+\"}))",
		"max_series", ms.opts.MaxSeries, "refused_in_write", refused)
}

type addResult int

const (
	addOK addResult = iota
	addDuplicate
	addTooOld
)

// add appends one sample to its series. Caller holds mu.
func (ms *metricStore) add(sr *mseries, t int64, v float64, seg uint64, now time.Time, replay bool) addResult {
	day := msDay(t)
	if h := sr.head; h != nil && t > h.maxt {
		if day == h.day && h.enc == chunkenc.EncXOR {
			if h.n >= ms.opts.ChunkSegmentSamples {
				h.cutSegment(t)
			}
			h.app.Append(0, t, v)
			h.maxt = t
			h.n++
			sr.maxT = max(sr.maxT, t)
			if h.segN+h.n >= ms.opts.ChunkMaxSamples {
				ms.sealHead(sr)
			}
			return addOK
		}
		ms.sealHead(sr)
	}
	if sr.head == nil && t > sr.maxT {
		c := chunkenc.NewXORChunk()
		app, _ := c.Appender() // an empty chunk's appender cannot fail
		app.Append(0, t, v)
		sr.head = &mhead{openChunk: openChunk{enc: chunkenc.EncXOR, chunk: c, app: app, mint: t, maxt: t, n: 1}, day: day, minSeg: seg, opened: now, seq: ms.chunkSeq.Add(1)}
		sr.maxT = t
		ms.addDay(sr, day)
		return addOK
	}
	if t == sr.maxT {
		return addDuplicate
	}
	if !replay && t < sr.maxT-ms.opts.OutOfOrderWindow.Milliseconds() {
		return addTooOld
	}
	o := sr.oooBuf(seg, now)
	var ok bool
	if o.s, ok = insertByTime(o.s, model.Sample{T: t, V: v}, func(s model.Sample) int64 { return s.T }); !ok {
		return addDuplicate
	}
	return ms.addedOOO(sr, day)
}

// addHist appends one histogram to its series, as add does a float: a head
// of another encoding is sealed first. Caller holds mu.
func (ms *metricStore) addHist(sr *mseries, hs model.HistogramSample, seg uint64, now time.Time, replay bool) addResult {
	t := hs.T
	day := msDay(t)
	if h := sr.head; h != nil && t > h.maxt {
		if day == h.day && h.enc == histEnc(hs) {
			next := h.append(nil, hs)
			sr.maxT = max(sr.maxT, t)
			if next == nil {
				if h.n >= ms.opts.ChunkMaxSamples {
					ms.sealHead(sr)
				}
				return addOK
			}
			// The encoding started a new chunk (a counter reset, a new
			// bucket layout): seal the old one, keep the new one open.
			ms.sealHead(sr)
			sr.head = &mhead{openChunk: *next, day: day, minSeg: seg, opened: now, seq: ms.chunkSeq.Add(1)}
			return addOK
		}
		ms.sealHead(sr)
	}
	if sr.head == nil && t > sr.maxT {
		var prev chunkenc.Appender
		if l := sr.lastHist; (l.H != nil || l.FH != nil) && histEnc(l) == histEnc(hs) && l.T < t {
			// An appender holding only the last histogram compares as
			// the sealed chunk's would.
			prev = newHistChunk(nil, l).app
		}
		sr.head = &mhead{openChunk: *newHistChunk(prev, hs), day: day, minSeg: seg, opened: now, seq: ms.chunkSeq.Add(1)}
		sr.lastHist = model.HistogramSample{}
		sr.maxT = t
		ms.addDay(sr, day)
		return addOK
	}
	if t == sr.maxT {
		return addDuplicate
	}
	if !replay && t < sr.maxT-ms.opts.OutOfOrderWindow.Milliseconds() {
		return addTooOld
	}
	o := sr.oooBuf(seg, now)
	var ok bool
	if o.h, ok = insertByTime(o.h, hs, func(h model.HistogramSample) int64 { return h.T }); !ok {
		return addDuplicate
	}
	return ms.addedOOO(sr, day)
}

// oooBuf is the series' out-of-order buffer, made when missing.
func (sr *mseries) oooBuf(seg uint64, now time.Time) *oooBuf {
	if sr.ooo == nil {
		sr.ooo = &oooBuf{minSeg: seg, opened: now}
	}
	return sr.ooo
}

// addedOOO notes a sample put in sr's out-of-order buffer on day, and seals
// the buffer when it is full. Caller holds mu.
func (ms *metricStore) addedOOO(sr *mseries, day uint32) addResult {
	ms.addDay(sr, day)
	if len(sr.ooo.s)+len(sr.ooo.h) >= ms.opts.OutOfOrderMax {
		ms.sealOOO(sr)
	}
	return addOK
}

// insertByTime inserts v into s, sorted by time, unless s holds that time
// already (then false).
func insertByTime[T any](s []T, v T, at func(T) int64) ([]T, bool) {
	t := at(v)
	i := sort.Search(len(s), func(i int) bool { return at(s[i]) >= t })
	if i < len(s) && at(s[i]) == t {
		return s, false
	}
	s = append(s, v)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s, true
}

// cutSegment closes the open segment of a float head and opens another,
// whose first sample will be at t. Caller holds mu.
func (h *mhead) cutSegment(t int64) {
	h.chunk.Compact()
	h.segs = append(h.segs, h.metricChunk())
	h.segN += h.n
	c := chunkenc.NewXORChunk()
	h.chunk, h.mint, h.n = c, t, 0
	h.app, _ = c.Appender() // an empty chunk's appender cannot fail
}

// minT is the time of the head's first sample.
func (h *mhead) minT() int64 {
	if len(h.segs) > 0 {
		return h.segs[0].MinT
	}
	return h.mint
}

// job is the head as a chunk to write: with segments, their list (the open
// one's bytes shared: copy them unless the head is done).
func (h *mhead) job(sr *mseries) *sealJob {
	j := &sealJob{sr: sr, day: h.day, c: h.metricChunk(), minSeg: h.minSeg, seq: h.seq}
	if len(h.segs) > 0 {
		j.segs = append(h.segs[:len(h.segs):len(h.segs)], j.c)
		j.c = MetricChunk{MinT: h.minT(), MaxT: h.maxt, Enc: chunkenc.EncXOR}
	}
	return j
}

// sealHead queues sr's head for Badger. Caller holds mu.
func (ms *metricStore) sealHead(sr *mseries) {
	h := sr.head
	if h == nil {
		return
	}
	sr.head = nil
	sr.lastHist = h.last
	h.chunk.Compact()
	ms.queue(h.job(sr))
}

// checkpointHead queues a copy of sr's open chunk under the key its final
// version will overwrite, so that the WAL segments holding its samples can go
// while the chunk stays open and grows (a busy server would otherwise cut
// every chunk short to keep its WAL small). Caller holds mu.
func (ms *metricStore) checkpointHead(sr *mseries) {
	h := sr.head
	if h == nil {
		return
	}
	j := h.job(sr)
	if j.segs != nil {
		last := &j.segs[len(j.segs)-1]
		last.Data = append([]byte(nil), last.Data...)
	} else {
		j.c.Data = append([]byte(nil), j.c.Data...)
	}
	ms.queue(j)
	h.minSeg = ms.wal.seg
}

// sealOOO queues sr's out-of-order samples, one chunk per day. Caller holds mu.
func (ms *metricStore) sealOOO(sr *mseries) {
	o := sr.ooo
	if o == nil {
		return
	}
	sr.ooo = nil
	for i := 0; i < len(o.s); {
		day := msDay(o.s[i].T)
		j := i + 1
		for j < len(o.s) && msDay(o.s[j].T) == day {
			j++
		}
		part := o.s[i:j]
		ms.queue(&sealJob{sr: sr, day: day, c: MetricChunk{MinT: part[0].T, MaxT: part[len(part)-1].T, Enc: chunkenc.EncXOR, Data: encodeXOR(part)}, minSeg: o.minSeg, seq: ms.chunkSeq.Add(1)})
		i = j
	}
	for i := 0; i < len(o.h); {
		day := msDay(o.h[i].T)
		j := i + 1
		for j < len(o.h) && msDay(o.h[j].T) == day {
			j++
		}
		for _, c := range encodeHistograms(o.h[i:j]) {
			ms.queue(&sealJob{sr: sr, day: day, c: c, minSeg: o.minSeg, seq: ms.chunkSeq.Add(1)})
		}
		i = j
	}
}

func (ms *metricStore) queue(j *sealJob) {
	j.maxT = max(j.sr.maxT, j.c.MaxT)
	j.sr.sealedMaxT = max(j.sr.sealedMaxT, j.c.MaxT)
	j.sr.sealing = append(j.sr.sealing, j)
	ms.sealQ = append(ms.sealQ, j)
}

func (ms *metricStore) kickSealer() {
	select {
	case ms.kick <- struct{}{}:
	default:
	}
}

func (ms *metricStore) sealLoop() {
	defer ms.wg.Done()
	for {
		select {
		case <-ms.stop:
			return
		case <-ms.kick:
			ms.writeSealed()
		}
	}
}

// writeSealed writes every queued chunk to Badger, with the day marks of
// their series, in one write batch.
func (ms *metricStore) writeSealed() {
	// One writer at a time, in queue order: a checkpoint and the final
	// version of a chunk share a key, and the later must win.
	ms.writeMu.Lock()
	defer ms.writeMu.Unlock()
	ms.mu.Lock()
	jobs := ms.sealQ
	ms.sealQ = nil
	ms.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	wb := ms.db.NewWriteBatch()
	var bytes int
	err := func() error {
		for _, j := range jobs {
			k := samplesKey(j.day, j.sr.id, j.c.MinT, j.seq)
			v := encodeChunkValue(j.c.Enc, j.c.MinT, j.c.MaxT, j.c.Data)
			if j.segs != nil {
				v = encodeSegmentsValue(j.c.MinT, j.c.MaxT, j.segs)
			}
			if err := wb.Set(k, v); err != nil {
				return err
			}
			if err := wb.Set(seriesDayKey(j.day, j.sr.id), binary.AppendVarint(nil, j.maxT)); err != nil {
				return err
			}
			bytes += len(k) + len(v)
		}
		return wb.Flush()
	}()
	if err != nil {
		wb.Cancel()
		ms.log.Error("store: write metric chunks", "chunks", len(jobs), "err", err)
		ms.m.errors.Inc()
		// Keep them queued (still readable from memory); retry on the next kick.
		ms.mu.Lock()
		ms.sealQ = append(jobs, ms.sealQ...)
		ms.mu.Unlock()
		return
	}
	ms.mu.Lock()
	for _, j := range jobs {
		sr := j.sr
		for i, o := range sr.sealing {
			if o == j {
				sr.sealing = append(sr.sealing[:i:i], sr.sealing[i+1:]...)
				break
			}
		}
		ms.days[j.day] = struct{}{}
	}
	ms.sealGen++
	ms.mu.Unlock()
	ms.m.chunks.Add(float64(len(jobs)))
	ms.m.chunkBytes.Add(float64(bytes))
}

func (ms *metricStore) maintLoop() {
	defer ms.wg.Done()
	t := time.NewTicker(ms.opts.Maintenance)
	defer t.Stop()
	lt := time.NewTicker(ms.opts.LogLinesInterval)
	defer lt.Stop()
	var lastRetention time.Time
	for {
		select {
		case <-ms.stop:
			return
		case <-lt.C:
			ms.flushLineCounts(false)
		case <-t.C:
			now := ms.opts.Now()
			ms.maintain(now, false)
			if ms.retention > 0 && now.Sub(lastRetention) >= time.Minute {
				lastRetention = now
				if err := ms.applyRetention(now); err != nil {
					ms.log.Error("store: metrics retention", "err", err)
					ms.m.errors.Inc()
				}
			}
		}
	}
}

// maintain seals chunks that are old or pin too much WAL (all of them when
// all is set), writes them, and trims the WAL.
func (ms *metricStore) maintain(now time.Time, all bool) {
	ms.mu.Lock()
	oldestAllowed := uint64(0)
	if ms.wal.seg >= uint64(ms.opts.WALMaxSegments) {
		oldestAllowed = ms.wal.seg - uint64(ms.opts.WALMaxSegments) + 1
	}
	for _, sr := range ms.series {
		if h := sr.head; h != nil {
			switch {
			case all || now.Sub(h.opened) >= ms.opts.ChunkMaxAge:
				ms.sealHead(sr)
			case h.minSeg < oldestAllowed:
				ms.checkpointHead(sr)
			}
		}
		if o := sr.ooo; o != nil && (all || now.Sub(o.opened) >= ms.opts.ChunkMaxAge || o.minSeg < oldestAllowed) {
			ms.sealOOO(sr)
		}
	}
	ms.mu.Unlock()
	ms.writeSealed()
	ms.truncateWAL(all)
}

// sealAll writes every open chunk to Badger (for a backup). The WAL is left
// alone: trimming it is the maintenance loop's work.
func (ms *metricStore) sealAll() error {
	ms.mu.Lock()
	for _, sr := range ms.series {
		ms.sealHead(sr)
		ms.sealOOO(sr)
	}
	ms.mu.Unlock()
	ms.writeSealed()
	ms.mu.RLock()
	left := len(ms.sealQ)
	ms.mu.RUnlock()
	if left > 0 {
		return fmt.Errorf("metric store: %d chunks could not be written", left)
	}
	return nil
}

// truncateWAL deletes WAL segments all of whose samples are in Badger. With
// all (only at close, after the last append) the current segment goes too.
func (ms *metricStore) truncateWAL(all bool) {
	ms.mu.Lock()
	floor := ms.wal.seg
	if all {
		floor++
	}
	for _, sr := range ms.series {
		if sr.head != nil {
			floor = min(floor, sr.head.minSeg)
		}
		if sr.ooo != nil {
			floor = min(floor, sr.ooo.minSeg)
		}
	}
	for _, j := range ms.sealQ {
		floor = min(floor, j.minSeg)
	}
	for _, sr := range ms.series {
		for _, j := range sr.sealing {
			floor = min(floor, j.minSeg)
		}
	}
	if floor <= ms.walFloor {
		ms.mu.Unlock()
		return
	}
	ms.mu.Unlock()
	err := ms.db.Sync()
	if err == nil {
		err = ms.wal.removeBefore(floor)
	}
	if err != nil {
		ms.log.Error("store: truncate metrics wal", "err", err)
		ms.m.errors.Inc()
		return
	}
	ms.mu.Lock()
	ms.walFloor = floor
	ms.mu.Unlock()
}

// applyRetention drops every day wholly older than the retention. The
// Store's retention drops the days it knows through dropDay; this covers days
// with metrics and no logs.
func (ms *metricStore) applyRetention(now time.Time) error {
	cutoff := msDay(now.Add(-ms.retention).UnixMilli())
	ms.mu.RLock()
	var drop []uint32
	for d := range ms.days {
		if d < cutoff {
			drop = append(drop, d)
		}
	}
	ms.mu.RUnlock()
	sort.Slice(drop, func(i, j int) bool { return drop[i] < drop[j] })
	for _, d := range drop {
		if err := ms.dropDay(d); err != nil {
			return err
		}
	}
	ms.raiseMinDay(cutoff)
	return nil
}

func (ms *metricStore) raiseMinDay(day uint32) {
	for {
		cur := ms.minDay.Load()
		if day <= cur || ms.minDay.CompareAndSwap(cur, day) {
			return
		}
	}
}

// dropDay deletes the samples of one day and the series left without any.
// Every earlier day is taken as dropped too: samples before it are refused.
func (ms *metricStore) dropDay(day uint32) error {
	ms.raiseMinDay(day + 1)
	var prefixes [][]byte
	for _, p := range []byte{pfxSamples, pfxSeriesDay} {
		k := make([]byte, 5)
		k[0] = p
		binary.BigEndian.PutUint32(k[1:], day)
		prefixes = append(prefixes, k)
	}
	if err := ms.db.DropPrefix(prefixes...); err != nil {
		return fmt.Errorf("drop metrics of day %d: %w", day, err)
	}
	var gone []uint64
	ms.mu.Lock()
	delete(ms.days, day)
	for _, sr := range ms.series {
		i := sort.Search(len(sr.days), func(i int) bool { return sr.days[i] >= day })
		if i < len(sr.days) && sr.days[i] == day {
			sr.days = append(sr.days[:i:i], sr.days[i+1:]...)
		}
		if sr.head != nil && sr.head.day <= day {
			sr.head = nil
		}
		if o := sr.ooo; o != nil {
			keep := o.s[:0]
			for _, smp := range o.s {
				if msDay(smp.T) > day {
					keep = append(keep, smp)
				}
			}
			o.s = keep
			keepH := o.h[:0]
			for _, smp := range o.h {
				if msDay(smp.T) > day {
					keepH = append(keepH, smp)
				}
			}
			o.h = keepH
			if len(keep) == 0 && len(keepH) == 0 {
				sr.ooo = nil
			}
		}
		if len(sr.days) == 0 && sr.head == nil && sr.ooo == nil && len(sr.sealing) == 0 {
			ms.removeSeries(sr)
			gone = append(gone, sr.id)
		}
	}
	ms.mu.Unlock()
	if len(gone) > 0 {
		wb := ms.db.NewWriteBatch()
		defer wb.Cancel()
		for _, id := range gone {
			if err := wb.Delete(seriesKey(id)); err != nil {
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("delete series: %w", err)
		}
	}
	ms.log.Info("store: metrics of a day dropped", "day", dayName(day), "series_dropped", len(gone))
	return nil
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
		r := &walReader{b: p}
		version := r.byte1()
		if version != 1 && version != 2 {
			return fmt.Errorf("%w: metrics wal payload version %d", errCorrupt, version)
		}
		for len(r.b) > 0 && r.err == nil {
			id := r.uvarint()
			n := readU32(r)
			sr := ms.series[id]
			for i := uint32(0); i < n && r.err == nil; i++ {
				t := r.varint()
				v := math.Float64frombits(r.u64())
				if r.err != nil || sr == nil {
					continue
				}
				ms.add(sr, t, v, seg, now, true)
				samples++
			}
			if version == 2 {
				n := readU32(r)
				for i := uint32(0); i < n && r.err == nil; i++ {
					h, err := readHistogram(r)
					if err != nil || sr == nil {
						continue
					}
					ms.addHist(sr, h, seg, now, true)
					samples++
				}
			}
		}
		return r.err
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
func readHistogram(r *walReader) (model.HistogramSample, error) {
	h := model.HistogramSample{T: r.varint()}
	enc := chunkenc.Encoding(r.byte1())
	b := []byte(r.str())
	if r.err != nil {
		return h, r.err
	}
	if (enc != chunkenc.EncHistogram && enc != chunkenc.EncFloatHistogram) || len(b) < chunkHeaderLen(enc) {
		return h, fmt.Errorf("%w: metrics wal histogram encoding %d", errCorrupt, enc)
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

// readU32 reads a big-endian uint32 (a metrics WAL sample count).
func readU32(r *walReader) uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.err = fmt.Errorf("%w: metrics wal payload", errCorrupt)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}
