package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

// readMixed returns the samples of the one series matching ms, floats and
// histograms merged by time as a querier would (of equal times the first
// chunk's sample is kept), each histogram as a float histogram.
func readMixed(t testing.TB, s *Store, ms ...MetricMatcher) (floats []model.Sample, hists []model.HistogramSample) {
	t.Helper()
	r := s.MetricReader(0, math.MaxInt64)
	defer r.Close()
	found := r.Select(ms, 0)
	if len(found) != 1 {
		t.Fatalf("%d series, want 1", len(found))
	}
	chunks, err := r.Chunks(found[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, c := range chunks {
		ch, err := chunkenc.FromData(c.Enc, c.Data)
		if err != nil {
			t.Fatal(err)
		}
		it := ch.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			tt := it.AtT()
			if tt < c.MinT || tt > c.MaxT {
				t.Fatalf("sample %d outside chunk bounds [%d, %d]", tt, c.MinT, c.MaxT)
			}
			if seen[tt] {
				continue
			}
			seen[tt] = true
			switch vt {
			case chunkenc.ValFloat:
				_, v := it.At()
				floats = append(floats, model.Sample{T: tt, V: v})
			case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
				if (vt == chunkenc.ValHistogram) != (c.Enc == chunkenc.EncHistogram) {
					t.Fatalf("%v sample in a %v chunk", vt, c.Enc)
				}
				_, fh := it.AtFloatHistogram(nil)
				hists = append(hists, model.HistogramSample{T: tt, FH: fh})
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	sortSamples(floats)
	sort.Slice(hists, func(i, j int) bool { return hists[i].T < hists[j].T })
	return floats, hists
}

// testHistogram is an integer histogram whose counts grow with i; with
// wide, it has a third bucket (a new layout).
func testHistogram(i int, wide bool) *histogram.Histogram {
	h := &histogram.Histogram{
		Schema:          1,
		ZeroThreshold:   0.001,
		ZeroCount:       uint64(i),
		Count:           uint64(3*i + 1),
		Sum:             float64(i) * 1.5,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{int64(i), int64(i)}, // deltas: i, 2i
		NegativeSpans:   []histogram.Span{{Offset: 1, Length: 1}},
		NegativeBuckets: []int64{1},
	}
	h.Count = h.ZeroCount + uint64(i) + uint64(2*i) + 1
	if wide {
		h.PositiveSpans[0].Length = 3
		h.PositiveBuckets = append(h.PositiveBuckets, -int64(2*i))
	}
	return h
}

// TestMetricsHistograms writes floats, integer and float histograms to one
// series, in order and out of order, with a counter reset and a new bucket
// layout, and reads them back from open chunks, after a reopen (sealed
// chunks) and after a crash (WAL replay).
func TestMetricsHistograms(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 7
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	ls := metricLabels("rpc_seconds", "job", "api")
	at := func(i int) int64 { return t0 + int64(i)*15_000 }

	var want []model.HistogramSample
	var wantF []model.Sample
	sr := model.Series{Labels: ls}
	for i := 0; i < 30; i++ {
		switch {
		case i%10 == 9: // a float now and then: a chunk of its own
			sr.Samples = append(sr.Samples, model.Sample{T: at(i), V: float64(i)})
			wantF = append(wantF, sr.Samples[len(sr.Samples)-1])
			continue
		case i%2 == 1 && i < 20: // every other one comes later, out of order
			continue
		}
		h := model.HistogramSample{T: at(i), H: testHistogram(i%13, i > 15)} // i%13: a counter reset
		if i >= 24 {
			h = model.HistogramSample{T: at(i), FH: testHistogram(i, true).ToFloat(nil)}
		}
		sr.Histograms = append(sr.Histograms, h)
	}
	res, err := s.AppendSamples(ctx, []model.Series{sr})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != len(sr.Samples)+len(sr.Histograms) {
		t.Fatalf("result %+v, want %d accepted", res, len(sr.Samples)+len(sr.Histograms))
	}
	// The skipped ones, out of order, and one duplicate.
	late := model.Series{Labels: ls}
	for i := 1; i < 20; i += 2 {
		if i%10 != 9 {
			late.Histograms = append(late.Histograms, model.HistogramSample{T: at(i), H: testHistogram(i%13, i > 15)})
		}
	}
	late.Histograms = append(late.Histograms, model.HistogramSample{T: at(29), H: testHistogram(1, false)})
	sort.Slice(late.Histograms, func(i, j int) bool { return late.Histograms[i].T < late.Histograms[j].T })
	res, err = s.AppendSamples(ctx, []model.Series{late})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != len(late.Histograms)-1 || res.Duplicates != 1 {
		t.Fatalf("late: %+v, want %d accepted, 1 duplicate", res, len(late.Histograms)-1)
	}
	want = append(append(want, sr.Histograms...), late.Histograms[:len(late.Histograms)-1]...)
	sort.Slice(want, func(i, j int) bool { return want[i].T < want[j].T })

	check := func(s *Store, when string) {
		t.Helper()
		floats, hists := readMixed(t, s, eq("job", "api"))
		if fmt.Sprint(floats) != fmt.Sprint(wantF) {
			t.Fatalf("%s: floats %v, want %v", when, floats, wantF)
		}
		if len(hists) != len(want) {
			t.Fatalf("%s: %d histograms, want %d", when, len(hists), len(want))
		}
		for i, w := range want {
			wf := w.FH
			if w.H != nil {
				wf = w.H.ToFloat(nil)
			}
			g := hists[i].FH
			if hists[i].T != w.T || g.Count != wf.Count || g.Sum != wf.Sum || g.ZeroCount != wf.ZeroCount ||
				fmt.Sprint(g.Compact(0).PositiveBuckets) != fmt.Sprint(wf.Copy().Compact(0).PositiveBuckets) {
				t.Fatalf("%s: histogram %d = %d %v, want %d %v", when, i, hists[i].T, g, w.T, wf)
			}
		}
	}
	check(s, "open")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	check(s, "after reopen")

	// More, then a crash: the WAL brings them back.
	more := model.Series{Labels: ls}
	for i := 30; i < 40; i++ {
		more.Histograms = append(more.Histograms, model.HistogramSample{T: at(i), FH: testHistogram(i, true).ToFloat(nil)})
	}
	if _, err := s.AppendSamples(ctx, []model.Series{more}); err != nil {
		t.Fatal(err)
	}
	want = append(want, more.Histograms...)
	crash(s)
	s = testOpen(t, dir, o)
	check(s, "after crash")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsHistogramCounterReset: a counter reset cuts the chunk, and the
// new chunk's header says so.
func TestMetricsHistogramCounterReset(t *testing.T) {
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	sr := model.Series{Labels: metricLabels("h")}
	for i, n := range []int{5, 6, 7, 1, 2} {
		sr.Histograms = append(sr.Histograms, model.HistogramSample{T: t0 + int64(i)*1000, H: testHistogram(n, false)})
	}
	if _, err := s.AppendSamples(context.Background(), []model.Series{sr}); err != nil {
		t.Fatal(err)
	}
	r := s.MetricReader(0, math.MaxInt64)
	defer r.Close()
	chunks, err := r.Chunks(r.Select(nil, 0)[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || chunks[0].Samples() != 3 || chunks[1].Samples() != 2 {
		t.Fatalf("chunks %+v, want 3 and 2 samples", chunks)
	}
	c, err := chunkenc.FromData(chunks[1].Enc, chunks[1].Data)
	if err != nil {
		t.Fatal(err)
	}
	if h := c.(*chunkenc.HistogramChunk).GetCounterResetHeader(); h != chunkenc.CounterReset {
		t.Fatalf("second chunk's header %v, want CounterReset", h)
	}
}

// A chunk value as written before native histograms were stored (encoding
// byte 1, maxt-mint, XOR bytes) reads as before; a histogram chunk's value
// keeps its encoding; a histogram chunk too short for its header is corrupt.
func TestMetricChunkValueEncodings(t *testing.T) {
	xor := encodeXOR([]model.Sample{{T: 1000, V: 1}, {T: 2000, V: 2}})
	old := append(binary.AppendUvarint([]byte{1}, 1000), xor...)
	enc, maxt, data, err := decodeChunkValue(1000, old)
	if err != nil || enc != chunkenc.EncXOR || maxt != 2000 || string(data) != string(xor) {
		t.Fatalf("old XOR value: %v %d %x %v", enc, maxt, data, err)
	}
	hs := encodeHistograms([]model.HistogramSample{{T: 5, H: testHistogram(1, false)}, {T: 9, FH: testHistogram(2, true).ToFloat(nil)}})
	if len(hs) != 2 || hs[0].Enc != chunkenc.EncHistogram || hs[1].Enc != chunkenc.EncFloatHistogram {
		t.Fatalf("histogram chunks %+v", hs)
	}
	for _, c := range hs {
		v := encodeChunkValue(c.Enc, c.MinT, c.MaxT, c.Data)
		if v[0] != byte(c.Enc) {
			t.Fatalf("encoding byte %d, want %d", v[0], c.Enc)
		}
		enc, maxt, data, err := decodeChunkValue(c.MinT, v)
		if err != nil || enc != c.Enc || maxt != c.MaxT || string(data) != string(c.Data) {
			t.Fatalf("round trip of %v: %v %d %v", c.Enc, enc, maxt, err)
		}
	}
	for _, bad := range [][]byte{{2, 0, 0, 1}, {4, 0, 0, 0, 0}, {0, 0, 0}} {
		if _, _, _, err := decodeChunkValue(0, bad); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
}

// A histogram chunk cut for its size takes its counter reset header from
// the chunk before (NotCounterReset here), as Prometheus' head does; one
// after a float chunk does not know.
func TestMetricsHistogramHeaderAfterCut(t *testing.T) {
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 3
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	sr := model.Series{Labels: metricLabels("h")}
	for i := 0; i < 6; i++ {
		sr.Histograms = append(sr.Histograms, model.HistogramSample{T: t0 + int64(i)*1000, H: testHistogram(i+1, false)})
	}
	sr.Samples = []model.Sample{{T: t0 + 6000, V: 1}}
	sr.Histograms = append(sr.Histograms, model.HistogramSample{T: t0 + 7000, H: testHistogram(8, false)})
	if _, err := s.AppendSamples(context.Background(), []model.Series{sr}); err != nil {
		t.Fatal(err)
	}
	r := s.MetricReader(0, math.MaxInt64)
	defer r.Close()
	chunks, err := r.Chunks(r.Select(nil, 0)[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var headers []chunkenc.CounterResetHeader
	for _, c := range chunks {
		if c.Enc != chunkenc.EncHistogram {
			continue
		}
		hc, err := chunkenc.FromData(c.Enc, c.Data)
		if err != nil {
			t.Fatal(err)
		}
		headers = append(headers, hc.(*chunkenc.HistogramChunk).GetCounterResetHeader())
	}
	want := []chunkenc.CounterResetHeader{chunkenc.UnknownCounterReset, chunkenc.NotCounterReset, chunkenc.UnknownCounterReset}
	if fmt.Sprint(headers) != fmt.Sprint(want) {
		t.Fatalf("headers %v, want %v", headers, want)
	}
}
