package store

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

func FuzzDecodeSeriesLabels(f *testing.F) {
	f.Add(encodeSeriesLabels(metricLabels("http_requests_total", "code", "200", "service", "api")))
	f.Add(encodeSeriesLabels(nil))
	f.Add([]byte{200, 1, 2})
	f.Fuzz(func(t *testing.T, v []byte) {
		ls, err := decodeSeriesLabels(v)
		if err != nil {
			return
		}
		again, err := decodeSeriesLabels(encodeSeriesLabels(ls))
		if err != nil || !sameLabels(ls, again) {
			t.Fatalf("round trip: %v -> %v (%v)", ls, again, err)
		}
	})
}

func FuzzDecodeChunkValue(f *testing.F) {
	xor := encodeXOR([]model.Sample{{T: 1000, V: 1}, {T: 2000, V: math.NaN()}, {T: 3500, V: math.Inf(-1)}})
	f.Add(int64(1000), encodeChunkValue(chunkenc.EncXOR, 1000, 3500, xor))
	hs := encodeHistograms([]model.HistogramSample{{T: 1000, H: &histogram.Histogram{Count: 3, Sum: 2, Schema: 0, ZeroCount: 1, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0}}}})
	f.Add(int64(1000), encodeChunkValue(hs[0].Enc, 1000, 1000, hs[0].Data))
	f.Add(int64(0), []byte{1, 0})
	f.Add(int64(5), []byte{2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, mint int64, v []byte) {
		enc, maxt, b, err := decodeChunkValue(mint, v)
		if err != nil {
			return
		}
		if maxt < mint {
			// Only a huge uvarint can wrap; the reader then skips the chunk.
			return
		}
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("reading a decoded chunk panicked: %v\n%s", r, debug.Stack())
			}
		}()
		c, err := chunkenc.FromData(enc, b)
		if err != nil {
			t.Fatal(err)
		}
		it := c.Iterator(nil)
		for i := 0; i < 1<<16 && it.Next() != chunkenc.ValNone; i++ {
		}
	})
}

// FuzzAppendSegments: a value of encoding 4 (segments) from Badger never
// makes the reader panic, and what it returns is readable.
func FuzzAppendSegments(f *testing.F) {
	seg := func(t0 int64, n int) MetricChunk {
		var ss []model.Sample
		for i := 0; i < n; i++ {
			ss = append(ss, model.Sample{T: t0 + int64(i)*1000, V: float64(i)})
		}
		return MetricChunk{MinT: t0, MaxT: ss[n-1].T, Enc: chunkenc.EncXOR, Data: encodeXOR(ss)}
	}
	f.Add(int64(1000), encodeSegmentsValue(1000, 250_000, []MetricChunk{seg(1000, 120), seg(121_000, 130)}), int64(0), int64(300_000))
	f.Add(int64(0), []byte{4, 0, 1, 0, 0, 2, 0, 0}, int64(0), int64(0))
	f.Add(int64(5), []byte{4, 255, 255, 255, 255, 1}, int64(-1), int64(1))
	f.Fuzz(func(t *testing.T, mint int64, v []byte, lo, hi int64) {
		if len(v) == 0 || v[0] != chunkEncXORSegments {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("reading segments panicked: %v\n%s", r, debug.Stack())
			}
		}()
		chunks, err := appendSegments(nil, mint, v, lo, hi)
		if err != nil {
			return
		}
		for _, c := range chunks {
			ch, err := chunkenc.FromData(c.Enc, c.Data)
			if err != nil {
				t.Fatal(err)
			}
			it := ch.Iterator(nil)
			for i := 0; i < 1<<16 && it.Next() != chunkenc.ValNone; i++ {
			}
		}
	})
}

// bareMetricStore is a metric store without Badger, for replaying a WAL.
func bareMetricStore(t testing.TB, dir string) *metricStore {
	t.Helper()
	o := DefaultMetricsOptions()
	o.fill()
	ms := &metricStore{opts: o, log: slog.New(slog.DiscardHandler), series: map[uint64]*mseries{}, byHash: map[uint64]*mseries{},
		postings: map[string]map[string][]uint64{}, days: map[uint32]struct{}{}, lines: newLineCounter(), kick: make(chan struct{}, 1)}
	ms.m = newMetricMetrics(nil, ms)
	for id := uint64(1); id <= 3; id++ {
		ls := metricLabels("x", "i", fmt.Sprint(id))
		ms.addSeries(id, hashLabels(ls), ls)
	}
	var err error
	if ms.wal, err = openWAL(dir, 1<<20, false, false); err != nil {
		t.Fatal(err)
	}
	return ms
}

func metricsWALPayload(id uint64, samples ...model.Sample) []byte {
	p := []byte{1}
	p = binary.AppendUvarint(p, id)
	p = binary.BigEndian.AppendUint32(p, uint32(len(samples)))
	for _, s := range samples {
		p = binary.AppendVarint(p, s.T)
		p = binary.BigEndian.AppendUint64(p, math.Float64bits(s.V))
	}
	return p
}

// metricsWALPayload2 is a version 2 payload: one float, then histograms.
func metricsWALPayload2(id uint64, hs ...model.HistogramSample) []byte {
	p := metricsWALPayload(id, model.Sample{T: 1, V: 1})
	p[0] = 2
	p = binary.BigEndian.AppendUint32(p, uint32(len(hs)))
	for _, h := range hs {
		c := newHistChunk(nil, h)
		p = binary.AppendVarint(p, h.T)
		p = append(p, byte(c.enc))
		p = binary.AppendUvarint(p, uint64(len(c.chunk.Bytes())))
		p = append(p, c.chunk.Bytes()...)
	}
	return p
}

func FuzzMetricsWALReplay(f *testing.F) {
	hist := &histogram.Histogram{Count: 3, ZeroCount: 1, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0}}
	f.Add(metricsWALPayload2(1, model.HistogramSample{T: 1000, H: hist}, model.HistogramSample{T: 500, FH: hist.ToFloat(nil)},
		model.HistogramSample{T: 2000, H: hist}), []byte{})
	f.Add(metricsWALPayload(1, model.Sample{T: 1000, V: 1}, model.Sample{T: 500, V: 2}, model.Sample{T: 1000, V: 3}), []byte{})
	f.Add(metricsWALPayload(2, model.Sample{T: msPerDay - 1, V: 1}, model.Sample{T: msPerDay, V: 2}), []byte{1, 2, 3})
	f.Add(metricsWALPayload(9, model.Sample{T: -5, V: 1}), []byte{})
	f.Add([]byte{1, 1, 0, 0, 0, 9}, []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, payload, tail []byte) {
		old, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		seg := append(walFrame(payload), tail...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.wal", 1)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		ms := bareMetricStore(t, dir)
		defer ms.wal.close()
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("replay panicked: %v\n%s", r, debug.Stack())
			}
		}()
		if err := ms.replay(); err != nil {
			return
		}
		// Every chunk, open or queued, is in time order within its bounds.
		var chunks []MetricChunk
		for _, sr := range ms.series {
			if h := sr.head; h != nil {
				chunks = append(chunks, h.metricChunk())
			}
			if o := sr.ooo; o != nil {
				for i := 1; i < len(o.s); i++ {
					if o.s[i].T <= o.s[i-1].T {
						t.Fatalf("out-of-order buffer not sorted: %v", o.s)
					}
				}
			}
		}
		for _, j := range ms.sealQ {
			chunks = append(chunks, j.c)
		}
		mergeChunks(t, chunks, math.MinInt64, math.MaxInt64)
	})
}
