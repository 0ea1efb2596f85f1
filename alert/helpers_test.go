package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// fakeEngines stands in for the query engines: a struct of func fields.
type fakeEngines struct {
	logs   func(ctx context.Context, q LogsQuery) ([]LogsGroup, error)
	query  func(ctx context.Context, expr string, ts time.Time) ([]Sample, error)
	append func(ctx context.Context, series []model.Series) error
}

func (f *fakeEngines) Logs(ctx context.Context, q LogsQuery) ([]LogsGroup, error) {
	return f.logs(ctx, q)
}

func (f *fakeEngines) Query(ctx context.Context, expr string, ts time.Time) ([]Sample, error) {
	return f.query(ctx, expr, ts)
}

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a local HTTP receiver: it keeps every body it accepts, fails
// the first `fail` requests with 500, and waits on block (when set) first.
type recorder struct {
	srv      *httptest.Server
	bodies   chan []byte
	fail     atomic.Int32
	failCode atomic.Int32 // the status of failed requests (0: 500)
	requests atomic.Int32
	block    chan struct{}
}

func newRecorder(t testing.TB) *recorder {
	r := &recorder{bodies: make(chan []byte, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if r.block != nil {
			select {
			case <-r.block:
			case <-req.Context().Done():
				return
			}
		}
		b, _ := io.ReadAll(req.Body)
		if req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
			return
		}
		if r.fail.Add(-1) >= 0 {
			code := int(r.failCode.Load())
			if code == 0 {
				code = http.StatusInternalServerError
			}
			http.Error(w, "refused", code)
			return
		}
		r.bodies <- b
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// next returns the next body, failing the test after 10s.
func (r *recorder) next(t testing.TB) []byte {
	t.Helper()
	select {
	case b := <-r.bodies:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
		return nil
	}
}

// none fails the test if a body was received (call after Notifier.Flush).
func (r *recorder) none(t testing.TB) {
	t.Helper()
	select {
	case b := <-r.bodies:
		t.Fatalf("unexpected notification: %s", b)
	default:
	}
}

func (r *recorder) webhook(t testing.TB) *WebhookMessage {
	t.Helper()
	var m WebhookMessage
	if err := json.Unmarshal(r.next(t), &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func (r *recorder) slack(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.next(t), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// rig is a Manager and a Notifier on a fake clock and fake engines.
type rig struct {
	clock *clock
	eng   *fakeEngines
	store StateStore
	mgr   *Manager
	nt    *Notifier
	reg   *prometheus.Registry
}

const testURL = "http://shiplog.test:7070"

func newRig(t testing.TB, store StateStore, c *clock, eng *fakeEngines) *rig {
	t.Helper()
	if store == nil {
		store = newMemStore()
	}
	r := &rig{clock: c, eng: eng, store: store, reg: prometheus.NewRegistry()}
	no := DefaultNotifierOptions()
	no.Now, no.Store, no.ExternalURL = c.Now, store, testURL
	no.MinBackoff, no.MaxBackoff = time.Millisecond, 5*time.Millisecond
	var err error
	if r.nt, err = NewNotifier(nil, r.reg, no); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nt.Close)
	mo := DefaultOptions()
	mo.Now, mo.Store, mo.ExternalURL, mo.Notify = c.Now, store, testURL, r.nt.Notify
	mo.Logs, mo.Query = eng.Logs, eng.Query
	if eng.append != nil {
		mo.Append = eng.append
	}
	mo.Parse = testParseOptions
	if r.mgr, err = NewManager(nil, r.reg, mo); err != nil {
		t.Fatal(err)
	}
	return r
}

// load applies a rules file given as text ("{{ops}}" and "{{chat}}" in it
// are replaced by the receivers' URLs).
func (r *rig) load(t testing.TB, text string) {
	t.Helper()
	f, probs := Parse([]byte(text), testParseOptions)
	if len(probs) > 0 {
		t.Fatalf("rules: %v", probs)
	}
	r.mgr.Apply(f)
}

// eval moves the clock by d, evaluates every group and waits for the
// notifications that follow.
func (r *rig) eval(t testing.TB, d time.Duration) {
	t.Helper()
	r.clock.Add(d)
	r.mgr.EvalAll(context.Background())
	r.nt.Flush()
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }

// counts makes a logs func answering one group (no by:) with *n lines and the
// given build and deploy, and recording the queries it got.
func counts(n *float64, build, deploy string, got *[]LogsQuery) func(context.Context, LogsQuery) ([]LogsGroup, error) {
	var mu sync.Mutex
	return func(_ context.Context, q LogsQuery) ([]LogsGroup, error) {
		mu.Lock()
		defer mu.Unlock()
		if got != nil {
			*got = append(*got, q)
		}
		return []LogsGroup{{Labels: map[string]string{}, Count: *n, Query: q.Query, BuildID: build, DeployID: deploy}}, nil
	}
}
