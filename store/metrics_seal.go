package store

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/shiplog/shiplog/internal/wire"
)

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
	bytes, err := ms.writeJobs(jobs)
	if err != nil {
		ms.log.Error("store: write metric chunks", "chunks", len(jobs), "err", err)
		ms.m.errors.Inc()
		// Keep them queued (still readable from memory); retry on the next kick.
		ms.mu.Lock()
		ms.sealQ = append(jobs, ms.sealQ...)
		ms.mu.Unlock()
		return
	}
	ms.jobsWritten(jobs)
	ms.m.chunks.Add(float64(len(jobs)))
	ms.m.chunkBytes.Add(float64(bytes))
}

// writeJobs writes queued chunks and their series' day marks to Badger in
// one write batch. Until jobsWritten, they are in both places.
func (ms *metricStore) writeJobs(jobs []*sealJob) (bytes int, err error) {
	wb := ms.db.NewWriteBatch()
	defer wb.Cancel()
	for _, j := range jobs {
		k := samplesKey(j.day, j.sr.id, j.c.MinT, j.seq)
		v := encodeChunkValue(j.c.Enc, j.c.MinT, j.c.MaxT, j.c.Data)
		if j.segs != nil {
			v = encodeSegmentsValue(j.c.MinT, j.c.MaxT, j.segs)
		}
		if err := wb.Set(k, v); err != nil {
			return 0, err
		}
		if err := wb.Set(seriesDayKey(j.day, j.sr.id), wire.AppendVarint(nil, j.maxT)); err != nil {
			return 0, err
		}
		bytes += len(k) + len(v)
	}
	return bytes, wb.Flush()
}

// jobsWritten takes written chunks out of their series' sealing lists.
func (ms *metricStore) jobsWritten(jobs []*sealJob) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
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
