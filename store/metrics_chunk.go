package store

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

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

// chunkEncXOR marks a chunk value holding Prometheus' XOR float encoding.
const chunkEncXOR = 1

// encodeChunkValue is the value of a samples key:
//
//	encoding byte (1: XOR), maxt - mint uvarint, the XOR chunk bytes
//	(chunkenc.XORChunk: sample count uint16 BE, then the bit stream)
func encodeChunkValue(mint, maxt int64, xor []byte) []byte {
	v := make([]byte, 0, 1+binary.MaxVarintLen64+len(xor))
	v = append(v, chunkEncXOR)
	v = binary.AppendUvarint(v, uint64(maxt-mint))
	return append(v, xor...)
}

// decodeChunkValue returns the chunk's maxt and XOR bytes (aliasing v).
func decodeChunkValue(mint int64, v []byte) (maxt int64, xor []byte, err error) {
	if len(v) < 1 || v[0] != chunkEncXOR {
		return 0, nil, fmt.Errorf("%w: metric chunk encoding", errCorrupt)
	}
	d, n := binary.Uvarint(v[1:])
	if n <= 0 || len(v) < 1+n+2 {
		return 0, nil, fmt.Errorf("%w: metric chunk header", errCorrupt)
	}
	return mint + int64(d), v[1+n:], nil
}

// encodeSeriesLabels is the value of a series key: uvarint count, then
// name and value of each label (uvarint length + bytes each), sorted by name.
func encodeSeriesLabels(ls []model.Label) []byte {
	n := 1
	for _, l := range ls {
		n += 4 + len(l.Name) + len(l.Value)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for _, l := range ls {
		b = appendString(b, l.Name)
		b = appendString(b, l.Value)
	}
	return b
}

func decodeSeriesLabels(v []byte) ([]model.Label, error) {
	r := &walReader{b: v}
	n := r.uvarint()
	if n > uint64(len(v)) {
		return nil, fmt.Errorf("%w: series labels", errCorrupt)
	}
	ls := make([]model.Label, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		ls = append(ls, model.Label{Name: r.str(), Value: r.str()})
	}
	return ls, r.err
}

// MetricChunk is one chunk of a series' samples in Prometheus' XOR encoding
// (chunkenc.EncXOR): sealed in Badger, on its way there, or a copy of what is
// still open in memory. Chunks of one series may overlap in time (out-of-order
// samples, a replayed WAL); readers merge them, and of samples with equal
// times keep one.
type MetricChunk struct {
	MinT, MaxT int64
	XOR        []byte
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
