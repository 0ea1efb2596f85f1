package store

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

func metricLabels(name string, kv ...string) []model.Label {
	ls := []model.Label{{Name: model.MetricNameLabel, Value: name}}
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, model.Label{Name: kv[i], Value: kv[i+1]})
	}
	model.SortLabels(ls)
	return ls
}

// readAll returns every sample of the series matching name in [mint, maxt],
// merged as a querier would.
func readAll(t testing.TB, s *Store, mint, maxt int64, ms ...MetricMatcher) map[string][]model.Sample {
	t.Helper()
	r := s.MetricReader(mint, maxt)
	defer r.Close()
	out := map[string][]model.Sample{}
	for _, sr := range r.Select(ms, 0) {
		chunks, err := r.Chunks(sr.ID)
		if err != nil {
			t.Fatal(err)
		}
		out[model.LabelsString(sr.Labels)] = mergeChunks(t, chunks, mint, maxt)
	}
	return out
}

// mergeChunks decodes chunks, sorts by time and keeps the first of equal times.
func mergeChunks(t testing.TB, chunks []MetricChunk, mint, maxt int64) []model.Sample {
	t.Helper()
	byT := map[int64]float64{}
	var ts []int64
	for _, c := range chunks {
		if c.Enc != chunkenc.EncXOR {
			continue
		}
		ch, err := chunkenc.FromData(chunkenc.EncXOR, c.Data)
		if err != nil {
			t.Fatal(err)
		}
		it := ch.Iterator(nil)
		prev := int64(math.MinInt64)
		for it.Next() == chunkenc.ValFloat {
			tt, v := it.At()
			if tt <= prev {
				t.Fatalf("chunk not in time order: %d after %d", tt, prev)
			}
			prev = tt
			if tt < c.MinT || tt > c.MaxT {
				t.Fatalf("sample %d outside chunk bounds [%d, %d]", tt, c.MinT, c.MaxT)
			}
			if _, ok := byT[tt]; !ok && tt >= mint && tt <= maxt {
				byT[tt] = v
				ts = append(ts, tt)
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]model.Sample, 0, len(ts))
	for _, tt := range ts {
		out = append(out, model.Sample{T: tt, V: byT[tt]})
	}
	sortSamples(out)
	return out
}

func sortSamples(s []model.Sample) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].T < s[j-1].T; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func eq(name, v string) MetricMatcher { return MetricMatcher{Name: name, Equal: true, Value: v} }

func TestMetricsAppendReadRestart(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 50
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	var want []model.Sample
	for b := 0; b < 10; b++ {
		var batch []model.Series
		for i := 0; i < 3; i++ {
			sr := model.Series{Labels: metricLabels("req_total", "svc", fmt.Sprintf("s%d", i))}
			for j := 0; j < 20; j++ {
				k := b*20 + j
				sr.Samples = append(sr.Samples, model.Sample{T: t0 + int64(k)*15000, V: float64(k * (i + 1))})
				if i == 1 {
					want = append(want, sr.Samples[len(sr.Samples)-1])
				}
			}
			batch = append(batch, sr)
		}
		res, err := s.AppendSamples(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != 60 {
			t.Fatalf("accepted %d, want 60", res.Accepted)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		got := readAll(t, s, 0, math.MaxInt64, eq(model.MetricNameLabel, "req_total"), eq("svc", "s1"))
		if len(got) != 1 {
			t.Fatalf("%s: %d series, want 1: %v", when, len(got), got)
		}
		g := got[`req_total{svc="s1"}`]
		if len(g) != len(want) {
			t.Fatalf("%s: %d samples, want %d", when, len(g), len(want))
		}
		for i := range want {
			if g[i] != want[i] {
				t.Fatalf("%s: sample %d = %v, want %v", when, i, g[i], want[i])
			}
		}
	}
	check(s, "before restart")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	check(s, "after restart")
	// Resending is harmless: every sample is a duplicate.
	res, err := s.AppendSamples(ctx, []model.Series{{Labels: metricLabels("req_total", "svc", "s1"), Samples: want[len(want)-5:]}})
	if err != nil {
		t.Fatal(err)
	}
	// The newest is known as a duplicate; older ones cannot be told from
	// out-of-order samples without reading chunks, and are merged on read.
	if res.Accepted+res.Duplicates != 5 || res.Duplicates < 1 {
		t.Fatalf("resend: %+v, want 5 accepted or duplicates, the newest a duplicate", res)
	}
	check(s, "after resend")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsOutOfOrderAndSpecialValues(t *testing.T) {
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UnixMilli()
	ls := metricLabels("temp", "room", "a")
	stale := math.Float64frombits(0x7ff0000000000002)
	in := []model.Sample{
		{T: now, V: 1},
		{T: now - 60_000, V: math.NaN()},            // out of order, within the window
		{T: now - 30_000, V: math.Inf(1)},           // out of order
		{T: now + 1000, V: math.Inf(-1)},            // in order
		{T: now + 2000, V: stale},                   // Prometheus' stale marker
		{T: now - 3*time.Hour.Milliseconds(), V: 7}, // older than the window
		{T: now - 30_000, V: 9},                     // duplicate time
	}
	res, err := s.AppendSamples(ctx, []model.Series{{Labels: ls, Samples: in}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 5 || res.OutOfWindow != 1 || res.Duplicates != 1 {
		t.Fatalf("result %+v, want 5 accepted, 1 out of window, 1 duplicate", res)
	}
	got := readAll(t, s, 0, math.MaxInt64, eq("room", "a"))[`temp{room="a"}`]
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	wantT := []int64{now - 60_000, now - 30_000, now, now + 1000, now + 2000}
	for i, g := range got {
		if g.T != wantT[i] {
			t.Fatalf("sample %d at %d, want %d", i, g.T, wantT[i])
		}
	}
	if !math.IsNaN(got[0].V) || !math.IsInf(got[1].V, 1) || !math.IsInf(got[3].V, -1) || math.Float64bits(got[4].V) != 0x7ff0000000000002 {
		t.Fatalf("special values not kept bit for bit: %v", got)
	}
}

func TestMetricsMatchersAndLabels(t *testing.T) {
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	now := time.Now().UnixMilli()
	var batch []model.Series
	for _, svc := range []string{"api", "web", "db"} {
		for _, code := range []string{"200", "500"} {
			batch = append(batch, model.Series{Labels: metricLabels("http_requests_total", "service", svc, "code", code), Samples: []model.Sample{{T: now, V: 1}}})
		}
	}
	batch = append(batch, model.Series{Labels: metricLabels("up", "service", "api"), Samples: []model.Sample{{T: now, V: 1}}})
	if _, err := s.AppendSamples(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	r := s.MetricReader(now-1000, now+1000)
	defer r.Close()
	re := func(name string, fn func(string) bool) MetricMatcher { return MetricMatcher{Name: name, Matches: fn} }
	cases := []struct {
		name string
		ms   []MetricMatcher
		want int
	}{
		{"name", []MetricMatcher{eq(model.MetricNameLabel, "http_requests_total")}, 6},
		{"and", []MetricMatcher{eq(model.MetricNameLabel, "http_requests_total"), eq("code", "500")}, 3},
		{"not equal matches missing label", []MetricMatcher{re("code", func(v string) bool { return v != "200" })}, 4},
		{"regexp", []MetricMatcher{re("service", func(v string) bool { return v == "api" || v == "web" })}, 5},
		{"empty value selects series without the label", []MetricMatcher{eq("code", "")}, 1},
		{"unknown value", []MetricMatcher{eq("service", "nope")}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.Select(c.ms, 0); len(got) != c.want {
				t.Fatalf("%d series, want %d: %v", len(got), c.want, got)
			}
		})
	}
	if got := r.Select(nil, 2); len(got) != 3 {
		t.Fatalf("limit 2 returned %d series, want 3 (limit+1)", len(got))
	}
	if got := fmt.Sprint(r.LabelNames(nil)); got != "[__name__ code service]" {
		t.Fatalf("label names %s", got)
	}
	if got := fmt.Sprint(r.LabelValues("service", []MetricMatcher{eq("code", "500")})); got != "[api db web]" {
		t.Fatalf("label values %s", got)
	}
	// Outside the time range nothing is there.
	r2 := s.MetricReader(now-10*24*time.Hour.Milliseconds(), now-9*24*time.Hour.Milliseconds())
	defer r2.Close()
	if got := r2.Select(nil, 0); len(got) != 0 {
		t.Fatalf("%d series 9 days back", len(got))
	}
}

func TestLogLinesCounted(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	s := testOpen(t, dir, o)
	ctx := context.Background()
	b := testBatch("", 100, 0, time.Now()) // every 10th line is an error
	if _, err := s.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	s.ms.flushLineCounts(false)
	value := func(s *Store, level string) float64 {
		t.Helper()
		got := readAll(t, s, 0, math.MaxInt64, eq(model.MetricNameLabel, LogLinesMetric), eq("level", level), eq("service", "api"))
		if len(got) != 1 {
			t.Fatalf("%d series for level %s: %v", len(got), level, got)
		}
		for _, ss := range got {
			return ss[len(ss)-1].V
		}
		return 0
	}
	if e, i := value(s, "error"), value(s, "info"); e != 10 || i != 90 {
		t.Fatalf("error %v info %v, want 10 and 90", e, i)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The counter goes on from its stored value after a restart. The
	// restarted store's clock is a second on, so its sample comes after the
	// stored one without the test waiting for the clock to tick.
	o.Metrics.Now = func() time.Time { return time.Now().Add(time.Second) }
	s = testOpen(t, dir, o)
	defer s.Close()
	if _, err := s.Append(ctx, testBatch("", 100, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	s.ms.flushLineCounts(false)
	if e := value(s, "error"); e != 20 {
		t.Fatalf("error lines after restart %v, want 20", e)
	}
}

func TestMetricsDropDay(t *testing.T) {
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	now := time.Now().UnixMilli()
	old := now - 3*msPerDay
	ls := metricLabels("x")
	ls2 := metricLabels("y")
	if _, err := s.AppendSamples(context.Background(), []model.Series{
		{Labels: ls, Samples: []model.Sample{{T: old, V: 1}, {T: now, V: 2}}},
		{Labels: ls2, Samples: []model.Sample{{T: old, V: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.ms.sealAll(); err != nil {
		t.Fatal(err)
	}
	if err := s.ms.dropDay(msDay(old)); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, 0, math.MaxInt64)
	if len(got) != 1 || len(got["x{}"]) != 1 || got["x{}"][0].V != 2 {
		t.Fatalf("after drop: %v", got)
	}
	res, err := s.AppendSamples(context.Background(), []model.Series{{Labels: ls, Samples: []model.Sample{{T: old + 1, V: 3}}}})
	if err != nil || res.OutOfWindow != 1 {
		t.Fatalf("sample on a dropped day: %+v %v", res, err)
	}
}

// A busy WAL is trimmed by checkpointing open chunks, not by cutting them
// short; after a crash the checkpoints and the WAL give every sample back.
func TestMetricsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.WALSegmentBytes = 4 << 10
	o.Metrics.WALMaxSegments = 2
	o.Metrics.Maintenance = time.Hour // maintain by hand
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Now().Add(-2 * time.Hour).UnixMilli()
	const series, steps = 5, 400
	for k := 0; k < steps; k++ {
		var batch []model.Series
		for i := 0; i < series; i++ {
			batch = append(batch, model.Series{Labels: metricLabels("c", "i", fmt.Sprint(i)), Samples: []model.Sample{{T: t0 + int64(k)*1000, V: float64(k * i)}}})
		}
		if _, err := s.AppendSamples(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if k%50 == 49 {
			s.ms.maintain(time.Now(), false)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "mwal", "*.wal"))
	if len(segs) > 4 {
		t.Fatalf("%d WAL segments left, want the WAL trimmed", len(segs))
	}
	s.ms.mu.RLock()
	for _, sr := range s.ms.series {
		if sr.head == nil || sr.head.segN+sr.head.n != steps {
			t.Fatalf("series %d: open chunk %v, want one chunk of all %d samples", sr.id, sr.head, steps)
		}
	}
	s.ms.mu.RUnlock()
	check := func(s *Store, when string) {
		t.Helper()
		got := readAll(t, s, 0, math.MaxInt64)
		if len(got) != series {
			t.Fatalf("%s: %d series", when, len(got))
		}
		for k, ss := range got {
			if len(ss) != steps {
				t.Fatalf("%s: %s has %d samples, want %d", when, k, len(ss), steps)
			}
		}
	}
	check(s, "open")
	crash(s)
	s = testOpen(t, dir, o)
	check(s, "after a crash")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	check(s, "after a clean stop")
}

// A chunk written to Badger after a reader was made, and so no longer queued
// in memory when the reader reads it, must still be read: found by
// Prometheus' PromQL tests over scrambled loads (metrics/promqltest_test.go).
func TestMetricsReaderSeesChunkSealedAfterItsStart(t *testing.T) {
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 4
	s := testOpen(t, t.TempDir(), o)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	sr := model.Series{Labels: metricLabels("up")}
	for i := range 10 {
		sr.Samples = append(sr.Samples, model.Sample{T: t0 + int64(i)*1000, V: float64(i)})
	}
	// Hold the writer so that the sealed chunks stay queued.
	s.ms.writeMu.Lock()
	if _, err := s.AppendSamples(context.Background(), []model.Series{sr}); err != nil {
		s.ms.writeMu.Unlock()
		t.Fatal(err)
	}
	r := s.MetricReader(0, math.MaxInt64)
	defer r.Close()
	s.ms.writeMu.Unlock()
	s.ms.writeSealed()
	s.ms.mu.RLock()
	queued := len(s.ms.sealQ)
	s.ms.mu.RUnlock()
	if queued != 0 {
		t.Fatalf("%d chunks still queued", queued)
	}
	found := r.Select([]MetricMatcher{eq(model.MetricNameLabel, "up")}, 0)
	if len(found) != 1 {
		t.Fatalf("%d series, want 1", len(found))
	}
	chunks, err := r.Chunks(found[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := mergeChunks(t, chunks, 0, math.MaxInt64); len(got) != len(sr.Samples) {
		t.Fatalf("read %d samples, want %d: %v", len(got), len(sr.Samples), got)
	}
}

// TestMetricSegments: a float chunk is kept and written in segments of
// ChunkSegmentSamples; a read of a short window gets only the segments it
// overlaps, from memory and from Badger (encoding 4), and every read gets
// exactly the samples in its range.
func TestMetricSegments(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.Maintenance = time.Hour // seal by hand
	s := testOpen(t, dir, o)
	ls := metricLabels("seg")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	if msDay(t0) != msDay(t0+299_000) {
		t0 -= 300_000 // one day for all 300 samples
	}
	var samples []model.Sample
	for i := 0; i < 300; i++ {
		samples = append(samples, model.Sample{T: t0 + int64(i)*1000, V: float64(i * i)})
	}
	if _, err := s.AppendSamples(context.Background(), []model.Series{{Labels: ls, Samples: samples}}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, lo, hi, wantChunks int) {
		t.Helper()
		mint, maxt := samples[lo].T, samples[hi].T
		r := s.MetricReader(mint, maxt)
		defer r.Close()
		found := r.Select(nil, 0)
		if len(found) != 1 {
			t.Fatalf("%s: %d series", when, len(found))
		}
		chunks, err := r.Chunks(found[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) != wantChunks {
			t.Fatalf("%s: samples %d..%d read from %d chunks, want %d", when, lo, hi, len(chunks), wantChunks)
		}
		got := mergeChunks(t, chunks, mint, maxt)
		if fmt.Sprint(got) != fmt.Sprint(samples[lo:hi+1]) {
			t.Fatalf("%s: samples %d..%d:\n%v\nwant\n%v", when, lo, hi, got, samples[lo:hi+1])
		}
	}
	for _, when := range []string{"open", "sealed", "reopened"} {
		check(when, 290, 299, 1) // the last segment (240..299)
		check(when, 10, 20, 1)   // the first (0..119)
		check(when, 100, 130, 2) // across two
		check(when, 0, 299, 3)
		switch when {
		case "open":
			s.ms.maintain(time.Now(), true)
		case "sealed":
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = testOpen(t, dir, o)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricReaderAnyOrder: one reader reading series from Badger in any
// order (ascending, as Select returns them, then back and again) gets each
// series' chunks every time.
func TestMetricReaderAnyOrder(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, DefaultOptions())
	t0 := time.Now().Add(-time.Hour).Truncate(time.Hour).UnixMilli()
	var batch []model.Series
	for i := 0; i < 4; i++ {
		batch = append(batch, model.Series{Labels: metricLabels("o", "i", fmt.Sprint(i)), Samples: []model.Sample{{T: t0, V: float64(i)}, {T: t0 + 1000, V: float64(i)}}})
	}
	if _, err := s.AppendSamples(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, DefaultOptions())
	defer s.Close()
	r := s.MetricReader(t0, t0+1000)
	defer r.Close()
	found := r.Select(nil, 0)
	if len(found) != 4 {
		t.Fatalf("%d series", len(found))
	}
	for _, k := range []int{0, 1, 3, 2, 0, 3, 3, 1, 2} {
		chunks, err := r.Chunks(found[k].ID)
		if err != nil {
			t.Fatal(err)
		}
		got := mergeChunks(t, chunks, t0, t0+1000)
		if len(got) != 2 || got[0].V != got[1].V || model.LabelsString(found[k].Labels) != model.LabelsString(metricLabels("o", "i", fmt.Sprint(got[0].V))) {
			t.Fatalf("series %v: %v", found[k].Labels, got)
		}
	}
}

// TestMetricsQueuedChunkReadOnce reads a series at the moment a queued chunk
// is in Badger and still in its series' seal queue (between the writer's
// flush and its bookkeeping): each sample comes back once, from one chunk.
// Before, the chunk was read from both places, and the overlap made the
// PromQL suite's scrambled mode lose histogram counter reset hints now and
// then.
func TestMetricsQueuedChunkReadOnce(t *testing.T) {
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 10
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	ms := s.ms
	ms.writeMu.Lock() // the writer waits: sealed chunks stay queued
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	sr := model.Series{Labels: metricLabels("up", "job", "a")}
	for i := 0; i < 25; i++ {
		sr.Samples = append(sr.Samples, model.Sample{T: t0 + int64(i)*15000, V: float64(i)})
	}
	if _, err := s.AppendSamples(context.Background(), []model.Series{sr}); err != nil {
		t.Fatal(err)
	}
	ms.mu.Lock()
	jobs := ms.sealQ
	ms.sealQ = nil
	ms.mu.Unlock()
	if len(jobs) != 2 {
		t.Fatalf("%d chunks queued, want 2", len(jobs))
	}
	if _, err := ms.writeJobs(jobs); err != nil {
		t.Fatal(err)
	}
	r := s.MetricReader(0, math.MaxInt64)
	found := r.Select([]MetricMatcher{eq(model.MetricNameLabel, "up")}, 0)
	if len(found) != 1 {
		t.Fatalf("%d series", len(found))
	}
	chunks, err := r.Chunks(found[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range chunks {
		ch, err := chunkenc.FromData(c.Enc, c.Data)
		if err != nil {
			t.Fatal(err)
		}
		n += ch.NumSamples()
	}
	r.Close()
	ms.jobsWritten(jobs)
	ms.writeMu.Unlock()
	if n != 25 {
		t.Fatalf("%d samples in %d chunks, want 25 (each chunk once)", n, len(chunks))
	}
}

// The log-line counters restart from each series' newest stored sample,
// series whose last samples are on different days and spread over several
// chunks included.
func TestLogLinesCountsRestored(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.Metrics.ChunkMaxSamples = 50
	s := testOpen(t, dir, o)
	now := time.Now().Truncate(time.Minute)
	type want struct {
		k  lineKey
		lv model.Level
		v  float64
	}
	var wants []want
	add := func(service, deploy string, lv model.Level, from time.Time, n int) {
		t.Helper()
		sr := model.Series{Labels: lineSeries(lineKey{service, deploy}, lv)}
		for i := range n {
			sr.Samples = append(sr.Samples, model.Sample{T: from.Add(time.Duration(i) * time.Minute).UnixMilli(), V: float64(10 * (i + 1))})
		}
		if _, err := s.AppendSamples(context.Background(), []model.Series{sr}); err != nil {
			t.Fatal(err)
		}
		wants = append(wants, want{lineKey{service, deploy}, lv, float64(10 * n)})
	}
	add("api", "d1", model.LevelError, now.Add(-50*time.Hour), 170)
	add("api", "d1", model.LevelInfo, now.Add(-3*time.Hour), 120)
	add("web", "", model.LevelWarn, now.Add(-26*time.Hour), 7)
	add("db", "d2", model.LevelInfo, now.Add(-30*time.Minute), 1)
	if err := s.ms.sealAll(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	for _, w := range wants {
		c := s.ms.lines.counts[w.k]
		if c == nil || c.n[w.lv] != uint64(w.v) || !c.written[w.lv] {
			t.Errorf("%+v %v after restart: %+v, want %v", w.k, w.lv, c, w.v)
		}
	}
}
