package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

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
		frame = wire.AppendUvarint(frame, sr.id)
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
				frame = wire.AppendVarint(frame, smp.T)
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
		b := wire.AppendVarint(*rec, h.T)
		b = append(b, byte(c.enc))
		b = wire.AppendUvarint(b, uint64(len(c.chunk.Bytes())))
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
