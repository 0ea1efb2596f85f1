package store

import (
	"bytes"
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/shiplog/shiplog/model"
)

// The chunks of one stream hold its labels once, sealed live or loaded at
// Open.
func TestChunkLabelsSharedPerStream(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 10
	s := testOpen(t, dir, o)
	// One chunk of each stream a batch: each batch's labels are strings of
	// their own.
	for i := range 3 {
		if _, err := s.Append(context.Background(), testBatch("", 30, 30*i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		s.mu.RLock()
		defer s.mu.RUnlock()
		if len(s.streams) != 3 {
			t.Fatalf("%s: %d streams, want 3", when, len(s.streams))
		}
		for id, cs := range s.streams {
			if len(cs) != 3 {
				t.Fatalf("%s: stream %x has %d chunks, want 3", when, id, len(cs))
			}
			first := cs[0].Labels
			if first.Service != "api" || first.BuildID != "b1" || len(first.Host) != len("web-0") {
				t.Fatalf("%s: labels %+v", when, first)
			}
			for _, m := range cs[1:] {
				if m.Labels != first {
					t.Fatalf("%s: chunk labels %+v, stream's %+v", when, m.Labels, first)
				}
				if unsafe.StringData(m.Labels.Host) != unsafe.StringData(first.Host) ||
					unsafe.StringData(m.Labels.Service) != unsafe.StringData(first.Service) {
					t.Fatalf("%s: chunk %d holds its own copy of the labels", when, m.ID)
				}
			}
		}
	}
	waitSealed(t, s)
	check(s, "live")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	check(s, "reopened")
}

// Counting notable lines from the compact in-memory form gives the counts
// of the lines themselves, or refuses (never a wrong count), and refuses
// nothing when the range, the buckets' origin and their width are whole
// milliseconds.
func TestNotableInCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const minute = int64(time.Minute)
	for round := range 200 {
		base := int64(1_770_000_000_000_000_000) + rng.Int64N(minute)
		if round%2 == 0 {
			base = -base // before 1970: floors, not truncations
		}
		// Lines over 10 minutes, or packed into 50 ms so that many share a
		// millisecond with a boundary.
		span := 10 * minute
		if round%3 == 0 {
			span = 50 * NotableUnit
		}
		m := &ChunkMeta{MinT: base, MaxT: base}
		l := &Lines{Meta: m}
		for range rng.IntN(300) {
			tt := base + rng.Int64N(span)
			if rng.IntN(4) == 0 {
				tt -= tt % NotableUnit
			}
			lv := model.Level(rng.IntN(int(model.NumLevels)))
			if rng.IntN(50) == 0 {
				lv = 9 // not a level: kept as it is
			}
			l.Times = append(l.Times, tt)
			l.Levels = append(l.Levels, lv)
			m.MaxT = max(m.MaxT, tt)
			if lv < model.NumLevels {
				m.Levels[lv]++
			}
		}
		m.Notable = buildNotable(l)
		compact := *m
		compact.Notable, compact.notableMS = compactNotable(m.Notable, m.MinT), true
		// What encodeMeta would write of it reads back the same.
		if again := compactNotable(expandNotable(compact.Notable, m.MinT), m.MinT); !bytes.Equal(again, compact.Notable) {
			t.Fatalf("compact notable lines change through the disk form: %x then %x", compact.Notable, again)
		}
		for range 20 {
			lv := model.Level(rng.IntN(3)) + NotableLevel
			if rng.IntN(10) == 0 {
				lv = 9
			}
			tr := model.TimeRange{Start: base + rng.Int64N(span/2), End: base + span/2 + rng.Int64N(span*6/10)}
			first, step := tr.Start, int64(0)
			if rng.IntN(3) > 0 {
				first, step = tr.Start-rng.Int64N(span/10), 1+rng.Int64N(span/5)
			}
			aligned := rng.IntN(2) == 0
			if aligned {
				ms := NotableUnit
				tr.Start, tr.End, first = floorDiv(tr.Start, ms)*ms, floorDiv(tr.End, ms)*ms, floorDiv(first, ms)*ms
				step = step / ms * ms
			}
			want := map[int64]int{}
			for i, tt := range l.Times {
				if l.Levels[i] == lv && tr.Contains(tt) {
					b := int64(-1)
					if step > 0 {
						b = (tt - first) / step
					}
					want[b]++
				}
			}
			for name, mm := range map[string]*ChunkMeta{"on disk": m, "in memory": &compact} {
				got := map[int64]int{}
				ok := mm.NotableIn(lv, tr, first, step, func(b int64) { got[b]++ })
				if !ok {
					if len(got) > 0 {
						t.Fatalf("%s: refused after counting %v", name, got)
					}
					if aligned || name == "on disk" {
						t.Fatalf("%s: refused a count in whole milliseconds (tr %+v first %d step %d)", name, tr, first, step)
					}
					continue
				}
				if !maps.Equal(got, want) {
					t.Fatalf("%s: level %d in %+v step %d: got %v, want %v", name, lv, tr, step, got, want)
				}
			}
		}
	}
	if (&ChunkMeta{}).NotableIn(model.LevelInfo, model.TimeRange{End: 1}, 0, 0, func(int64) {}) {
		t.Fatal("info lines are not notable")
	}
	open := &ChunkMeta{}
	open.Levels[model.LevelError] = 1
	if open.NotableIn(model.LevelError, model.TimeRange{End: 1}, 0, 0, func(int64) {}) {
		t.Fatal("an open chunk's metadata has no notable lines to count")
	}
}

// Metric series share the strings of the labels they have in common, made
// by appends or loaded at Open.
func TestMetricSeriesShareLabels(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, DefaultOptions())
	now := time.Now().UnixMilli()
	for _, dep := range []string{"d1", "d2", "d3"} {
		// Labels of their own in every call, as a request's would be.
		ls := metricLabels(string([]byte("requests_total")), string([]byte("deploy_id")), string([]byte(dep)), string([]byte("service")), string([]byte("api")))
		if _, err := s.AppendSamples(context.Background(), []model.Series{{Labels: ls, Samples: []model.Sample{{T: now, V: 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		s.ms.mu.RLock()
		defer s.ms.mu.RUnlock()
		if len(s.ms.series) != 3 {
			t.Fatalf("%s: %d series", when, len(s.ms.series))
		}
		var first []model.Label
		for _, sr := range s.ms.series {
			if first == nil {
				first = sr.lset
				continue
			}
			for i, l := range sr.lset {
				f := first[i]
				if l.Name != f.Name || unsafe.StringData(l.Name) != unsafe.StringData(f.Name) {
					t.Fatalf("%s: label name %q not shared with %q", when, l.Name, f.Name)
				}
				if l.Name != "deploy_id" && unsafe.StringData(l.Value) != unsafe.StringData(f.Value) {
					t.Fatalf("%s: value %q of %s not shared", when, l.Value, l.Name)
				}
				if l.Name == "deploy_id" && l.Value == f.Value {
					t.Fatalf("%s: two series with deploy_id %q", when, l.Value)
				}
			}
		}
	}
	check(s, "appended")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, DefaultOptions())
	defer s.Close()
	check(s, "reopened")
	if got := readAll(t, s, 0, math.MaxInt64, eq("service", "api"), eq("deploy_id", "d2")); len(got) != 1 {
		t.Fatalf("series of deploy d2: %v", got)
	}
}

// BenchmarkNotableIn: counting a chunk's error lines per minute from its
// metadata (query d), in the form on disk and the one the store keeps.
func BenchmarkNotableIn(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := int64(1_770_000_000_000_000_000)
	m := &ChunkMeta{MinT: base, MaxT: base}
	l := &Lines{Meta: m}
	for range 667 {
		tt := base + rng.Int64N(int64(5*time.Minute))
		lv := model.LevelInfo
		if rng.IntN(7) == 0 {
			lv = model.Level(rng.IntN(3)) + NotableLevel
		}
		l.Times, l.Levels = append(l.Times, tt), append(l.Levels, lv)
		m.Levels[lv]++
		m.MaxT = max(m.MaxT, tt)
	}
	m.Notable = buildNotable(l)
	compact := *m
	compact.Notable, compact.notableMS = compactNotable(m.Notable, m.MinT), true
	tr := model.TimeRange{Start: base - int64(time.Hour), End: base + int64(time.Hour)}
	step := int64(time.Minute)
	for name, mm := range map[string]*ChunkMeta{"disk": m, "memory": &compact} {
		b.Run(name, func(b *testing.B) {
			counts := map[int64]int{}
			for b.Loop() {
				mm.NotableIn(model.LevelError, tr, tr.Start, step, func(k int64) { counts[k]++ })
			}
		})
	}
}

// Series whose labels hash the same are all found, and found again once
// any of them is removed.
func TestMetricSeriesHashCollisions(t *testing.T) {
	ms := bareMetricStore(t, t.TempDir())
	const h = 42
	var srs []*mseries
	for i := range 4 {
		srs = append(srs, ms.addSeries(uint64(100+i), h, metricLabels("m", "i", string(rune('a'+i)))))
	}
	for _, order := range [][]int{{0, 1, 2, 3}, {2, 0, 3, 1}} {
		live := map[int]bool{0: true, 1: true, 2: true, 3: true}
		for _, gone := range order {
			ms.removeSeries(srs[gone])
			delete(live, gone)
			for i, sr := range srs {
				got := ms.lookup(h, metricLabels("m", "i", string(rune('a'+i))))
				if live[i] && got != sr || !live[i] && got != nil {
					t.Fatalf("after removing %v: series %d found as %v", order, i, got)
				}
			}
		}
		if ms.byHash[h] != nil || ms.collide[h] != nil {
			t.Fatalf("left behind: %v %v", ms.byHash[h], ms.collide[h])
		}
		for i, sr := range srs {
			srs[i] = ms.addSeries(sr.id, h, sr.lset)
		}
	}
}
