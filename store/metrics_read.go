package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

// MetricMatcher selects series by the value of one label. A series without
// the label has the value "" for it, as in Prometheus: a matcher that
// matches "" also selects series that lack the label.
type MetricMatcher struct {
	Name    string
	Equal   bool   // the value must be exactly Value (the index answers it directly)
	Value   string // with Equal
	Matches func(value string) bool
}

func (m *MetricMatcher) matches(v string) bool {
	if m.Equal {
		return v == m.Value
	}
	return m.Matches(v)
}

// MetricSeries is a series as a reader returns it. Labels must not be modified.
type MetricSeries struct {
	ID     uint64
	Labels []model.Label
}

// MetricReader reads metric series in [mint, maxt] (Unix ms, inclusive) from
// what is in memory at each call and a view of Badger at least as new: a
// chunk leaves memory (sealing) only once written, so Chunks renews the view
// when chunks were written since it was taken, or it would see such a chunk
// in neither. It is not safe for concurrent use; Close releases it.
type MetricReader struct {
	ms         *metricStore
	txn        *badger.Txn
	gen        uint64              // ms.sealGen when txn was made
	iters      map[uint32]*dayIter // of txn, one a day (badgerChunks)
	slab       []byte              // copies of chunk bytes (keep)
	mint, maxt int64
	d0, d1     uint32
}

// MetricReader returns a reader of the metric series in [mint, maxt] (Unix ms).
func (s *Store) MetricReader(mint, maxt int64) *MetricReader { return s.ms.reader(mint, maxt) }

func (ms *metricStore) reader(mint, maxt int64) *MetricReader {
	mint = max(mint, 0)
	r := &MetricReader{ms: ms, mint: mint, maxt: maxt}
	ms.mu.RLock()
	r.txn, r.gen = ms.db.NewTransaction(false), ms.sealGen
	ms.mu.RUnlock()
	if maxt >= mint {
		r.d0, r.d1 = msDay(mint), msDay(maxt)
	}
	return r
}

// Close releases the reader.
func (r *MetricReader) Close() {
	r.closeIters()
	r.txn.Discard()
}

func (r *MetricReader) empty() bool { return r.maxt < r.mint }

// Select returns the series that match every matcher and have samples on a
// day in the reader's range, in id order. It stops after limit+1 series when
// limit > 0, so callers can tell that the limit was passed.
func (r *MetricReader) Select(matchers []MetricMatcher, limit int) []MetricSeries {
	if r.empty() {
		return nil
	}
	ms := r.ms
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	ids := ms.selectIDs(matchers)
	var out []MetricSeries
	for _, id := range ids {
		sr := ms.series[id]
		if sr == nil || !sr.hasDayIn(r.d0, r.d1) {
			continue
		}
		out = append(out, MetricSeries{ID: id, Labels: sr.lset})
		if limit > 0 && len(out) > limit {
			break
		}
	}
	return out
}

// selectIDs returns the ascending ids of series matching every matcher.
// Caller holds mu.
func (ms *metricStore) selectIDs(matchers []MetricMatcher) []uint64 {
	var sets [][]uint64
	var minus [][]uint64
	for i := range matchers {
		m := &matchers[i]
		vals := ms.postings[m.Name]
		switch {
		case m.Equal && m.Value != "":
			sets = append(sets, vals[m.Value])
		case m.matches(""):
			// Every series, less those whose value does not match.
			for v, ids := range vals {
				if !m.matches(v) {
					minus = append(minus, ids)
				}
			}
		default:
			var u [][]uint64
			for v, ids := range vals {
				if m.matches(v) {
					u = append(u, ids)
				}
			}
			sets = append(sets, unionIDs(u))
		}
	}
	var res []uint64
	if len(sets) == 0 {
		res = ms.allIDs
	} else {
		sort.Slice(sets, func(i, j int) bool { return len(sets[i]) < len(sets[j]) })
		res = sets[0]
		for _, s := range sets[1:] {
			res = intersectIDs(res, s)
		}
	}
	if len(minus) > 0 {
		res = subtractIDs(res, unionIDs(minus))
	}
	return res
}

func unionIDs(sets [][]uint64) []uint64 {
	switch len(sets) {
	case 0:
		return nil
	case 1:
		return sets[0]
	}
	var n int
	for _, s := range sets {
		n += len(s)
	}
	out := make([]uint64, 0, n)
	for _, s := range sets {
		out = append(out, s...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	k := 0
	for i, v := range out {
		if i == 0 || v != out[k-1] {
			out[k] = v
			k++
		}
	}
	return out[:k]
}

func intersectIDs(a, b []uint64) []uint64 {
	out := make([]uint64, 0, min(len(a), len(b)))
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func subtractIDs(a, b []uint64) []uint64 {
	out := make([]uint64, 0, len(a))
	j := 0
	for _, v := range a {
		for j < len(b) && b[j] < v {
			j++
		}
		if j < len(b) && b[j] == v {
			continue
		}
		out = append(out, v)
	}
	return out
}

// LabelNames returns the sorted label names of the series that match (all
// series with samples in range when there are no matchers).
func (r *MetricReader) LabelNames(matchers []MetricMatcher) []string {
	if r.empty() {
		return nil
	}
	ms := r.ms
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	var out []string
	if len(matchers) == 0 {
		for name, vals := range ms.postings {
			if r.anyInRange(vals) {
				out = append(out, name)
			}
		}
	} else {
		seen := map[string]struct{}{}
		for _, id := range ms.selectIDs(matchers) {
			sr := ms.series[id]
			if sr == nil || !sr.hasDayIn(r.d0, r.d1) {
				continue
			}
			for _, l := range sr.lset {
				if _, ok := seen[l.Name]; !ok {
					seen[l.Name] = struct{}{}
					out = append(out, l.Name)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// LabelValues returns the sorted values of label name among the series that
// match.
func (r *MetricReader) LabelValues(name string, matchers []MetricMatcher) []string {
	if r.empty() {
		return nil
	}
	ms := r.ms
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	var out []string
	if len(matchers) == 0 {
		for v, ids := range ms.postings[name] {
			if r.anyInRange(map[string][]uint64{v: ids}) {
				out = append(out, v)
			}
		}
	} else {
		seen := map[string]struct{}{}
		for _, id := range ms.selectIDs(matchers) {
			sr := ms.series[id]
			if sr == nil || !sr.hasDayIn(r.d0, r.d1) {
				continue
			}
			for _, l := range sr.lset {
				if l.Name != name {
					continue
				}
				if _, ok := seen[l.Value]; !ok {
					seen[l.Value] = struct{}{}
					out = append(out, l.Value)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// anyInRange reports whether any series in the postings has samples in range.
// Caller holds mu.
func (r *MetricReader) anyInRange(vals map[string][]uint64) bool {
	for _, ids := range vals {
		for _, id := range ids {
			if sr := r.ms.series[id]; sr != nil && sr.hasDayIn(r.d0, r.d1) {
				return true
			}
		}
	}
	return false
}

// Chunks returns the chunks of series id that overlap the reader's range,
// sorted by MinT. They may overlap each other (see MetricChunk).
func (r *MetricReader) Chunks(id uint64) ([]MetricChunk, error) { return r.AppendChunks(nil, id) }

// AppendChunks appends the chunks of Chunks(id) to dst. Reading series in
// ascending id order (as Select returns them) walks Badger once a day.
func (r *MetricReader) AppendChunks(dst []MetricChunk, id uint64) ([]MetricChunk, error) {
	if r.empty() {
		return dst, nil
	}
	ms := r.ms
	from := len(dst)
	chunks := dst
	ms.mu.RLock()
	sr := ms.series[id]
	if sr == nil {
		ms.mu.RUnlock()
		return dst, nil
	}
	// Badger holds nothing newer than sealedMaxT: a read of later times
	// (the last minutes, in the open chunk) does not look there.
	var days []uint32
	if sr.sealedMaxT >= r.mint {
		for _, d := range sr.days {
			if d >= r.d0 && d <= r.d1 {
				days = append(days, d)
			}
		}
	}
	// Checkpoints of the open chunk (same seq) hold a part of it: skip them.
	var headSeq uint64
	if h := sr.head; h != nil {
		headSeq = h.seq
		if h.maxt >= r.mint && h.minT() <= r.maxt {
			// Closed segments are immutable; only the open one is copied.
			chunks = r.overlapping(chunks, h.segs)
			if c := h.metricChunk(); h.n > 0 && c.MaxT >= r.mint && c.MinT <= r.maxt {
				c.Data = r.keep(c.Data)
				chunks = append(chunks, c)
			}
		}
	}
	// A queued chunk stays in sealing until it is in Badger: one read may
	// find it in both places. It is read from memory, never twice (a
	// duplicate would merge as overlapping chunks and lose the histogram
	// counter reset hints).
	skip := []uint64{headSeq}
	for _, j := range sr.sealing {
		skip = append(skip, j.seq)
		if j.seq != headSeq && j.c.MaxT >= r.mint && j.c.MinT <= r.maxt {
			if j.segs != nil {
				chunks = r.overlapping(chunks, j.segs)
			} else {
				chunks = append(chunks, j.c)
			}
		}
	}
	var ooo []model.Sample
	var oooH []model.HistogramSample
	if o := sr.ooo; o != nil {
		for _, s := range o.s {
			if s.T >= r.mint && s.T <= r.maxt {
				ooo = append(ooo, s)
			}
		}
		for _, h := range o.h {
			if h.T >= r.mint && h.T <= r.maxt {
				oooH = append(oooH, h)
			}
		}
	}
	if r.gen != ms.sealGen && len(days) > 0 {
		// Chunks copied above are in memory or in Badger as of now.
		r.renew(ms.sealGen)
	}
	ms.mu.RUnlock()
	if len(ooo) > 0 {
		chunks = append(chunks, MetricChunk{MinT: ooo[0].T, MaxT: ooo[len(ooo)-1].T, Enc: chunkenc.EncXOR, Data: encodeXOR(ooo)})
	}
	if len(oooH) > 0 {
		chunks = append(chunks, encodeHistograms(oooH)...)
	}
	for _, d := range days {
		var err error
		if chunks, err = r.badgerChunks(chunks, d, id, skip); err != nil {
			return dst, fmt.Errorf("series %d: %w", id, err)
		}
	}
	slices.SortFunc(chunks[from:], func(a, b MetricChunk) int { return cmp.Compare(a.MinT, b.MinT) })
	return chunks, nil
}

// keep copies b into the reader's slab: chunks read by one reader share a
// few large allocations instead of one each.
func (r *MetricReader) keep(b []byte) []byte {
	if cap(r.slab)-len(r.slab) < len(b) {
		r.slab = make([]byte, 0, max(64<<10, len(b)))
	}
	n := len(r.slab)
	r.slab = append(r.slab, b...)
	return r.slab[n:len(r.slab):len(r.slab)]
}

// overlapping appends the chunks of segs that overlap the reader's range.
func (r *MetricReader) overlapping(dst, segs []MetricChunk) []MetricChunk {
	for _, c := range segs {
		if c.MaxT >= r.mint && c.MinT <= r.maxt {
			dst = append(dst, c)
		}
	}
	return dst
}

// renew closes the reader's iterators and takes a new view of Badger.
// Caller holds ms.mu (read).
func (r *MetricReader) renew(gen uint64) {
	r.closeIters()
	r.txn.Discard()
	r.txn, r.gen = r.ms.db.NewTransaction(false), gen
}

func (r *MetricReader) closeIters() {
	for d, di := range r.iters {
		di.it.Close()
		delete(r.iters, d)
	}
}

// dayIter is a reader's iterator over the chunks of one day and the series
// it was last positioned for.
type dayIter struct {
	it     *badger.Iterator
	sought bool
	last   uint64 // id of the last series read
}

// badgerChunks appends the chunks of series id on day that overlap the
// reader's range, but those whose seq is in skip (the checkpoint of the open
// chunk, chunks read from the seal queue). One iterator a day serves every
// series the reader reads.
func (r *MetricReader) badgerChunks(chunks []MetricChunk, day uint32, id uint64, skip []uint64) ([]MetricChunk, error) {
	di := r.iters[day]
	if di == nil {
		if r.iters == nil {
			r.iters = map[uint32]*dayIter{}
		}
		di = &dayIter{it: r.txn.NewIterator(badger.IteratorOptions{Prefix: samplesPrefix(day, 0)[:5]})}
		r.iters[day] = di
	}
	it := di.it
	prefix := samplesPrefix(day, id)
	// Series read in ascending id order: every key before the iterator's
	// position was visited, so when it is at or past prefix (or at the end)
	// no Seek is needed.
	if !di.sought || id <= di.last || it.Valid() && bytes.Compare(it.Item().Key(), prefix) < 0 {
		it.Seek(prefix)
	}
	di.sought, di.last = true, id
	for ; it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) != 29 {
			continue
		}
		mint := int64(binary.BigEndian.Uint64(k[13:]))
		if mint > r.maxt {
			break
		}
		if seq := binary.BigEndian.Uint64(k[21:]); seq != 0 && slices.Contains(skip, seq) {
			continue
		}
		err := item.Value(func(v []byte) (err error) {
			if len(v) > 0 && v[0] == chunkEncXORSegments {
				n := len(chunks)
				chunks, err = appendSegments(chunks, mint, v, r.mint, r.maxt)
				for i := n; i < len(chunks); i++ {
					chunks[i].Data = r.keep(chunks[i].Data)
				}
				return err
			}
			enc, maxt, data, err := decodeChunkValue(mint, v)
			if err != nil || maxt < r.mint {
				return err
			}
			chunks = append(chunks, MetricChunk{MinT: mint, MaxT: maxt, Enc: enc, Data: r.keep(data)})
			return nil
		})
		if err != nil {
			return chunks, err
		}
	}
	return chunks, nil
}
