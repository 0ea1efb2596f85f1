package store

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

// LogLinesMetric counts stored log lines by service, level and deploy_id
// (docs/metrics.md). It is written into the metric store every
// MetricsOptions.LogLinesInterval, so PromQL can take its rate.
const LogLinesMetric = "shiplog_log_lines_total"

type lineKey struct {
	service, deploy string
}

type lineCount struct {
	n       [model.NumLevels]uint64
	written [model.NumLevels]bool // a sample of this level exists in the metric store
	changed time.Time             // last time a line was counted
}

// lineCounter sums up accepted log lines per (service, deploy_id, level).
// Append adds to it once per group of a batch, under its own mutex.
type lineCounter struct {
	mu     sync.Mutex
	counts map[lineKey]*lineCount
	last   time.Time // time of the last flush
}

func newLineCounter() *lineCounter {
	return &lineCounter{counts: map[lineKey]*lineCount{}}
}

// countLines adds the accepted records of a batch: one pass over each group's
// levels without locks, then one short lock for the whole batch.
func (s *Store) countLines(b *model.Batch, groups []*group) {
	if s.ms == nil || len(groups) == 0 {
		return
	}
	per := make([][model.NumLevels]uint64, len(groups))
	for gi, g := range groups {
		for _, ri := range g.recs {
			lv := b.Records[ri].Level
			if lv == model.LevelUnset || lv >= model.NumLevels {
				lv = model.LevelInfo
			}
			per[gi][lv]++
		}
	}
	now := time.Now()
	lc := s.ms.lines
	lc.mu.Lock()
	for gi, g := range groups {
		k := lineKey{g.labels.Service, g.labels.DeployID}
		c := lc.counts[k]
		if c == nil {
			c = &lineCount{}
			lc.counts[k] = c
		}
		for lv, n := range per[gi] {
			c.n[lv] += n
		}
		c.changed = now
	}
	lc.mu.Unlock()
}

// lineSeries returns the labels of the log-lines series of one key and level.
func lineSeries(k lineKey, lv model.Level) []model.Label {
	ls := make([]model.Label, 0, 4)
	ls = append(ls, model.Label{Name: model.MetricNameLabel, Value: LogLinesMetric})
	if k.deploy != "" {
		ls = append(ls, model.Label{Name: "deploy_id", Value: k.deploy})
	}
	ls = append(ls, model.Label{Name: "level", Value: lv.String()})
	if k.service != "" {
		ls = append(ls, model.Label{Name: "service", Value: k.service})
	}
	return ls
}

// flushLineCounts writes one sample per (service, deploy_id, level) that saw a
// line within LogLinesIdle. A level written for the first time also gets a 0
// at the previous flush, so that rate() and increase() count its first lines.
func (ms *metricStore) flushLineCounts(final bool) {
	now := ms.opts.Now()
	t := now.UnixMilli()
	lc := ms.lines
	lc.mu.Lock()
	prev := lc.last
	if prev.IsZero() || now.Sub(prev) > 2*ms.opts.LogLinesInterval {
		prev = now.Add(-ms.opts.LogLinesInterval)
	}
	lc.last = now
	var series []model.Series
	for k, c := range lc.counts {
		if now.Sub(c.changed) > ms.opts.LogLinesIdle && !final {
			continue
		}
		for lv := model.LevelTrace; lv < model.NumLevels; lv++ {
			if c.n[lv] == 0 {
				continue
			}
			sr := model.Series{Labels: lineSeries(k, lv)}
			if !c.written[lv] {
				sr.Samples = append(sr.Samples, model.Sample{T: min(prev.UnixMilli(), t-1), V: 0})
				c.written[lv] = true
			}
			sr.Samples = append(sr.Samples, model.Sample{T: t, V: float64(c.n[lv])})
			series = append(series, sr)
		}
	}
	lc.mu.Unlock()
	if len(series) == 0 {
		return
	}
	if _, err := ms.append(series); err != nil && !final {
		ms.log.Warn("store: write log line counts", "err", err)
	}
}

// loadLineCounts continues the counters from their last stored samples, so
// shiplog_log_lines_total keeps counting across restarts. Series are read
// grouped by their last day, in id order, through one reader a day whose
// copies are reused from series to series: only the newest sample of each
// is needed (one reader and its copies per series cost 1.3 GB of
// allocations at start-up over 10M lines of five days).
func (ms *metricStore) loadLineCounts() error {
	type last struct {
		day uint32
		id  uint64
	}
	ms.mu.RLock()
	var todo []last
	for _, id := range ms.postings[model.MetricNameLabel][LogLinesMetric] {
		if sr := ms.series[id]; sr != nil && len(sr.days) > 0 {
			todo = append(todo, last{sr.days[len(sr.days)-1], id})
		}
	}
	ms.mu.RUnlock()
	slices.SortFunc(todo, func(a, b last) int {
		return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.id, b.id))
	})
	var r *MetricReader
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	var chunks []MetricChunk
	for i, t := range todo {
		if i == 0 || t.day != todo[i-1].day {
			if r != nil {
				r.Close()
			}
			r = ms.reader(int64(t.day)*msPerDay, math.MaxInt64)
		}
		var err error
		r.slab = r.slab[:0] // the previous series' copies are done with
		if chunks, err = r.AppendChunks(chunks[:0], t.id); err != nil {
			return err
		}
		v, found, err := lastSample(chunks)
		if err != nil {
			return err
		}
		if !found || math.IsNaN(v) || v < 0 {
			continue
		}
		ms.mu.RLock()
		ls := ms.series[t.id].lset
		ms.mu.RUnlock()
		k, lv := lineKeyOf(ls)
		if lv == model.LevelUnset {
			continue
		}
		c := ms.lines.counts[k]
		if c == nil {
			c = &lineCount{}
			ms.lines.counts[k] = c
		}
		c.n[lv] = max(c.n[lv], uint64(v))
		c.written[lv] = true
	}
	return nil
}

// lineKeyOf is the counter key and level of a log-lines series' labels
// (LevelUnset when it has no level).
func lineKeyOf(ls []model.Label) (lineKey, model.Level) {
	var k lineKey
	lv := model.LevelUnset
	for _, l := range ls {
		switch l.Name {
		case "service":
			k.service = l.Value
		case "deploy_id":
			k.deploy = l.Value
		case "level":
			lv, _ = model.ParseLevel(l.Value)
		}
	}
	return k, lv
}

// lastSample returns the value of the newest sample in chunks.
func lastSample(chunks []MetricChunk) (float64, bool, error) {
	var best MetricChunk
	found := false
	for _, c := range chunks {
		if !found || c.MaxT > best.MaxT {
			best, found = c, true
		}
	}
	if !found {
		return 0, false, nil
	}
	if best.Enc != chunkenc.EncXOR {
		return 0, false, nil
	}
	c, err := chunkenc.FromData(chunkenc.EncXOR, best.Data)
	if err != nil {
		return 0, false, err
	}
	it := c.Iterator(nil)
	var v float64
	found = false
	for it.Next() == chunkenc.ValFloat {
		var t int64
		if t, v = it.At(); t == best.MaxT {
			found = true
		}
	}
	return v, found, it.Err()
}
