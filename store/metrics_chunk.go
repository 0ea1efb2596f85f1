package store

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// Key prefixes of the metric store in Badger (see doc.go, "Metrics").
const (
	pfxSeries    = 'S' // S<id>              series labels
	pfxSeriesDay = 'D' // D<day><id>         the series has samples on day; value: its newest time
	pfxSamples   = 'X' // X<day><id><mint><seq> one XOR chunk of the series on day
)

// msPerDay is the length of a day partition in Unix milliseconds.
const msPerDay = 24 * 60 * 60 * 1000

// msDay returns the day partition of a time in Unix milliseconds (t >= 0).
func msDay(t int64) uint32 {
	if t < 0 {
		return 0
	}
	return uint32(min(t/msPerDay, math.MaxUint32))
}

func seriesKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = pfxSeries
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func seriesDayKey(day uint32, id uint64) []byte {
	k := make([]byte, 13)
	k[0] = pfxSeriesDay
	binary.BigEndian.PutUint32(k[1:], day)
	binary.BigEndian.PutUint64(k[5:], id)
	return k
}

// samplesPrefix is the key prefix of every chunk of series id on day.
func samplesPrefix(day uint32, id uint64) []byte {
	k := make([]byte, 13, 29)
	k[0] = pfxSamples
	binary.BigEndian.PutUint32(k[1:], day)
	binary.BigEndian.PutUint64(k[5:], id)
	return k
}

// samplesKey names one chunk. mint orders a series' chunks of a day by time;
// seq keeps two chunks with the same mint (an out-of-order chunk, a chunk
// written again after a crash) apart.
func samplesKey(day uint32, id uint64, mint int64, seq uint64) []byte {
	k := samplesPrefix(day, id)
	k = binary.BigEndian.AppendUint64(k, uint64(mint))
	return binary.BigEndian.AppendUint64(k, seq)
}

// The encoding byte of a chunk value: Prometheus' chunk encodings, with
// chunkenc's numbers (chunkenc.EncXOR, EncHistogram, EncFloatHistogram).
const (
	chunkEncXOR            = 1 // float samples
	chunkEncHistogram      = 2 // native histograms, integer counts
	chunkEncFloatHistogram = 3 // native histograms, float counts
	// chunkEncXORSegments: float samples as XOR chunks of at most
	// MetricsOptions.ChunkSegmentSamples each (encodeSegmentsValue), so
	// that a read of a short window decodes one segment, not the chunk.
	chunkEncXORSegments = 4
)

// encodeChunkValue is the value of a samples key:
//
//	encoding byte (1: XOR, 2: histogram, 3: float histogram),
//	maxt - mint uvarint, the chunk bytes (chunkenc.XORChunk,
//	HistogramChunk or FloatHistogramChunk: sample count uint16 BE, ...)
func encodeChunkValue(enc chunkenc.Encoding, mint, maxt int64, data []byte) []byte {
	v := make([]byte, 0, 1+binary.MaxVarintLen64+len(data))
	v = append(v, byte(enc))
	v = wire.AppendUvarint(v, uint64(maxt-mint))
	return append(v, data...)
}

// decodeChunkValue returns the chunk's encoding, maxt and bytes (aliasing v).
func decodeChunkValue(mint int64, v []byte) (enc chunkenc.Encoding, maxt int64, data []byte, err error) {
	if len(v) < 1 || v[0] < chunkEncXOR || v[0] > chunkEncFloatHistogram {
		return 0, 0, nil, fmt.Errorf("%w: metric chunk encoding", errCorrupt)
	}
	r := wire.NewReader(v[1:], nil)
	d := r.Uvarint()
	if r.Err() != nil || r.Len() < chunkHeaderLen(chunkenc.Encoding(v[0])) {
		return 0, 0, nil, fmt.Errorf("%w: metric chunk header", errCorrupt)
	}
	if v[0] != chunkEncXOR {
		if err := checkHistogramLayout(r.Rest()); err != nil {
			return 0, 0, nil, err
		}
	}
	return chunkenc.Encoding(v[0]), mint + int64(d), r.Rest(), nil
}

// encodeSegmentsValue is the value of a samples key holding a float chunk in
// segments (segs, sorted by time, each an XOR chunk):
//
//	4, maxt - mint uvarint, the segment count uvarint, then per segment its
//	MinT - mint, MaxT - MinT and byte length (uvarints) and its XOR chunk
func encodeSegmentsValue(mint, maxt int64, segs []MetricChunk) []byte {
	n := 1 + 2*binary.MaxVarintLen64
	for _, sg := range segs {
		n += 3*binary.MaxVarintLen64 + len(sg.Data)
	}
	v := make([]byte, 0, n)
	v = append(v, chunkEncXORSegments)
	v = wire.AppendUvarint(v, uint64(maxt-mint))
	v = wire.AppendUvarint(v, uint64(len(segs)))
	for _, sg := range segs {
		v = wire.AppendUvarint(v, uint64(sg.MinT-mint))
		v = wire.AppendUvarint(v, uint64(sg.MaxT-sg.MinT))
		v = wire.AppendUvarint(v, uint64(len(sg.Data)))
		v = append(v, sg.Data...)
	}
	return v
}

// appendSegments appends to dst the segments of a chunkEncXORSegments value
// (of a key with mint) that overlap [lo, hi], their bytes aliasing v,
// skipping the others undecoded.
func appendSegments(dst []MetricChunk, mint int64, v []byte, lo, hi int64) ([]MetricChunk, error) {
	r := wire.NewReader(v[1:], nil)
	span, n := r.Uvarint(), r.Uvarint()
	if r.Err() != nil || n > uint64(len(v)) {
		return dst, fmt.Errorf("%w: metric chunk segments header", errCorrupt)
	}
	if mint+int64(span) < lo {
		return dst, nil
	}
	for i := uint64(0); i < n; i++ {
		off, d, l := r.Uvarint(), r.Uvarint(), r.Uvarint()
		if r.Err() != nil || l < uint64(chunkHeaderLen(chunkenc.EncXOR)) || l > uint64(r.Len()) {
			return dst, fmt.Errorf("%w: metric chunk segment %d", errCorrupt, i)
		}
		data := r.Next(int(l))
		smin := mint + int64(off)
		smax := smin + int64(d)
		if smax < lo || smin > hi {
			continue
		}
		dst = append(dst, MetricChunk{MinT: smin, MaxT: smax, Enc: chunkenc.EncXOR, Data: data})
	}
	return dst, nil
}

// chunkHeaderLen is the least length of a chunk of the encoding: the sample
// count (uint16), and for histograms the header byte (counter reset).
func chunkHeaderLen(enc chunkenc.Encoding) int {
	if enc == chunkenc.EncXOR {
		return 2
	}
	return 3
}

// encodeSeriesLabels is the value of a series key: uvarint count, then
// name and value of each label (uvarint length + bytes each), sorted by name.
func encodeSeriesLabels(ls []model.Label) []byte {
	n := 1
	for _, l := range ls {
		n += 4 + len(l.Name) + len(l.Value)
	}
	b := make([]byte, 0, n)
	b = wire.AppendUvarint(b, uint64(len(ls)))
	for _, l := range ls {
		b = wire.AppendString(b, l.Name)
		b = wire.AppendString(b, l.Value)
	}
	return b
}

// errSeriesLabels is the error of a series value that does not decode.
var errSeriesLabels = fmt.Errorf("%w: series labels", errCorrupt)

func decodeSeriesLabels(v []byte) ([]model.Label, error) {
	r := wire.NewReader(v, errSeriesLabels)
	n := r.Uvarint()
	if n > uint64(len(v)) {
		return nil, errSeriesLabels
	}
	ls := make([]model.Label, 0, n)
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		ls = append(ls, model.Label{Name: r.Str(), Value: r.Str()})
	}
	return ls, r.Err()
}

// MetricChunk is one chunk of a series' samples in one of Prometheus' chunk
// encodings (chunkenc.EncXOR for floats, EncHistogram or EncFloatHistogram for
// native histograms): sealed in Badger, on its way there, or a copy of what
// is still open in memory. Chunks of one series may overlap in time
// (out-of-order samples, a replayed WAL); readers merge them, and of samples
// with equal times keep one.
type MetricChunk struct {
	MinT, MaxT int64
	Enc        chunkenc.Encoding
	Data       []byte
}

// Samples returns the number of samples in the chunk (every encoding starts
// with it, uint16 big-endian).
func (c MetricChunk) Samples() int {
	if len(c.Data) < 2 {
		return 0
	}
	return int(c.Data[0])<<8 | int(c.Data[1])
}

// encodeXOR encodes samples sorted by time, with distinct times, as one XOR chunk.
func encodeXOR(samples []model.Sample) []byte {
	c := chunkenc.NewXORChunk()
	app, _ := c.Appender() // an empty chunk's appender cannot fail
	for _, s := range samples {
		app.Append(0, s.T, s.V)
	}
	c.Compact()
	return c.Bytes()
}

// histEnc is the chunk encoding of a histogram sample.
func histEnc(h model.HistogramSample) chunkenc.Encoding {
	if h.H != nil {
		return chunkenc.EncHistogram
	}
	return chunkenc.EncFloatHistogram
}

// openChunk is a chunk being written and its appender: a series' head (of
// any encoding), or histograms being encoded (newHistChunk, append).
type openChunk struct {
	enc        chunkenc.Encoding
	chunk      chunkenc.Chunk
	app        chunkenc.Appender
	mint, maxt int64
	n          int
	last       model.HistogramSample // the newest histogram (none in an XOR chunk)
}

// newHistChunk starts a chunk with one histogram. prev (nil: none) is the
// appender of the series' chunk before, if it has h's encoding: the new
// chunk's counter reset header is then set from it, as Prometheus' head does.
func newHistChunk(prev chunkenc.Appender, h model.HistogramSample) *openChunk {
	var c chunkenc.Chunk
	enc := histEnc(h)
	if enc == chunkenc.EncHistogram {
		c = chunkenc.NewHistogramChunk()
	} else {
		c = chunkenc.NewFloatHistogramChunk()
	}
	app, _ := c.Appender() // an empty chunk's appender cannot fail
	hc := &openChunk{enc: enc, chunk: c, app: app, mint: h.T, maxt: h.T}
	_ = hc.append(prev, h)
	return hc
}

// append adds h (later than maxt, of the chunk's encoding) to the chunk. When
// the encoding needs a new chunk for it (a counter reset, a schema or bucket
// layout change the chunk cannot take, a full chunk), the chunk is left as it
// is and the new one, holding only h, is returned; prev is the appender of
// the chunk before (nil: none), for the counter reset header.
func (hc *openChunk) append(prev chunkenc.Appender, h model.HistogramSample) *openChunk {
	var (
		nc      chunkenc.Chunk
		recoded bool
		app     chunkenc.Appender
		err     error
	)
	if hc.n >= math.MaxUint16-1 {
		return newHistChunk(nil, h)
	}
	if h.H != nil {
		nc, recoded, app, err = hc.app.AppendHistogram(prev, 0, h.T, h.H, false)
	} else {
		nc, recoded, app, err = hc.app.AppendFloatHistogram(prev, 0, h.T, h.FH, false)
	}
	switch {
	case err != nil:
		// Only with appendOnly; start afresh all the same.
		return newHistChunk(nil, h)
	case nc == nil:
		hc.n++
		hc.maxt, hc.last = h.T, h
		return nil
	case recoded:
		hc.chunk, hc.app = nc, app
		hc.n++
		hc.maxt, hc.last = h.T, h
		return nil
	}
	return &openChunk{enc: hc.enc, chunk: nc, app: app, mint: h.T, maxt: h.T, n: 1, last: h}
}

func (hc *openChunk) metricChunk() MetricChunk {
	return MetricChunk{MinT: hc.mint, MaxT: hc.maxt, Enc: hc.enc, Data: hc.chunk.Bytes()}
}

// encodeHistograms encodes histograms sorted by time, with distinct times,
// as chunks: a new one where the encoding changes (integer or float counts)
// or needs one.
func encodeHistograms(hs []model.HistogramSample) []MetricChunk {
	var out []MetricChunk
	var cur *openChunk
	for _, h := range hs {
		if cur == nil {
			cur = newHistChunk(nil, h)
			continue
		}
		if histEnc(h) != cur.enc {
			cur.chunk.Compact()
			out = append(out, cur.metricChunk())
			cur = newHistChunk(nil, h)
			continue
		}
		if next := cur.append(nil, h); next != nil {
			cur.chunk.Compact()
			out = append(out, cur.metricChunk())
			cur = next
		}
	}
	if cur != nil {
		cur.chunk.Compact()
		out = append(out, cur.metricChunk())
	}
	return out
}
