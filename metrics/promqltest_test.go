package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Reasons for not running a built-in test file (promql/promqltest/testdata)
// whole.
const (
	whyStartTimestamps = "needs start timestamps (UseStartTimestamps), which the metric store does not keep"
)

// builtinSkips are the built-in test files RunBuiltinTestsWithStorage does
// not run, by name, with the reason.
var builtinSkips = map[string]string{
	"testdata/start_timestamps.test": whyStartTimestamps,
}

// skipRun runs the built-in test files, skipping builtinSkips by name; seen
// collects the names it was given.
type skipRun struct {
	*testing.T
	seen map[string]bool
}

func (r skipRun) Run(name string, f func(*testing.T)) bool {
	r.seen[name] = true
	return r.T.Run(name, func(t *testing.T) {
		if why, ok := builtinSkips[name]; ok {
			t.Skip(why)
		}
		f(t)
	})
}

// testStoreOptions are the store's defaults with small Badger buffers: the
// suite opens a store for every test file and every "clear".
func testStoreOptions() store.Options {
	o := store.DefaultOptions()
	o.BadgerMemTable = 1 << 20
	o.BadgerCache = 1 << 20
	return o
}

// suiteMode is how the suite's storage writes the loads of a test file.
type suiteMode struct {
	name string
	// reopen closes the store and opens it again after each load, so that
	// evaluations read what it wrote to Badger (Close seals every open
	// chunk) rather than its open chunks.
	reopen bool
	// scramble gives the store tiny chunks and a wide out-of-order window,
	// and writes each load in two batches, each series' even samples, then
	// its odd ones (all out of order): reads merge many small, overlapping
	// in-order and out-of-order chunks, queued and written concurrently.
	scramble bool
}

var suiteModes = []suiteMode{
	{name: "plain"},
	{name: "reopen", reopen: true},
	{name: "scrambled", scramble: true},
	{name: "scrambled-reopen", scramble: true, reopen: true},
}

func (m suiteMode) storeOptions() store.Options {
	o := testStoreOptions()
	if m.scramble {
		o.Metrics.ChunkMaxSamples = 7
		o.Metrics.OutOfOrderMax = 5
		o.Metrics.OutOfOrderWindow = 1000 * 24 * time.Hour
	}
	return o
}

// open opens a store in a new directory of t's.
func (m suiteMode) open(t testing.TB) storage.Storage {
	dir := t.TempDir()
	st, err := store.Open(dir, m.storeOptions(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &suiteStorage{Storage: NewStorage(st, Options{}), mode: m, dir: dir}
}

// suiteStorage is a Storage that writes its loads as its mode says.
type suiteStorage struct {
	*Storage
	mode suiteMode
	dir  string
}

func (s *suiteStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &suiteAppender{appenderV2: appenderV2{batch{ctx: ctx, st: s.st}}, s: s}
}

type suiteAppender struct {
	appenderV2
	s *suiteStorage
}

func (a *suiteAppender) Commit() error {
	if a.s.mode.scramble {
		all := a.series
		a.series, a.index = nil, nil
		for pass := range 2 {
			for _, sr := range all {
				var part []model.Sample
				for i := pass; i < len(sr.Samples); i += 2 {
					part = append(part, sr.Samples[i])
				}
				// Histograms go in order: the counter reset hints the
				// suite expects are those of in-order chunks (Prometheus
				// too leaves them unknown in out-of-order chunks).
				var hpart []model.HistogramSample
				if pass == 0 {
					hpart = sr.Histograms
				}
				a.series = append(a.series, model.Series{Labels: sr.Labels, Samples: part, Histograms: hpart})
			}
			if err := a.batch.Commit(); err != nil {
				return err
			}
		}
	} else if err := a.batch.Commit(); err != nil {
		return err
	}
	if !a.s.mode.reopen {
		return nil
	}
	if err := a.s.Storage.Close(); err != nil {
		return err
	}
	st, err := store.Open(a.s.dir, a.s.mode.storeOptions(), nil, nil)
	if err != nil {
		return err
	}
	a.s.Storage = NewStorage(st, Options{})
	return nil
}

func testEngine(t *testing.T) promql.QueryEngine {
	return promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
}

// TestPromQLBuiltin runs Prometheus' own PromQL test suite
// (promql/promqltest/testdata) over the metric store on disk, through the
// store's append and read paths, in each of suiteModes.
func TestPromQLBuiltin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	engine := testEngine(t)
	for _, m := range suiteModes {
		t.Run(m.name, func(t *testing.T) {
			r := skipRun{T: t, seen: map[string]bool{}}
			promqltest.RunBuiltinTestsWithStorage(r, engine, m.open)
			// A skip must name a file the suite has, or it hides nothing
			// and the list goes stale when Prometheus is upgraded.
			for name := range builtinSkips {
				if !r.seen[name] {
					t.Errorf("builtinSkips names %s, which the suite does not have", name)
				}
			}
			if len(r.seen) != 22 {
				t.Logf("the suite has %d files (22 in v0.316.0): update docs/metrics.md", len(r.seen))
			}
		})
	}
}
