package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func (r *recorder) alertmanager(t testing.TB) []AlertmanagerAlert {
	t.Helper()
	var list []AlertmanagerAlert
	if err := json.Unmarshal(r.next(t), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

// An alertmanager_url receiver gets what Prometheus POSTs to /api/v2/alerts:
// the firing alert with startsAt, an endsAt 4 resends ahead and the logs link
// as generatorURL, again every resend interval while it fires, and endsAt
// set to the resolution when it resolves.
func TestAlertmanagerReceiver(t *testing.T) {
	am := newRecorder(t)
	var paths []string
	var mu sync.Mutex
	am.srv.Config.Handler = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			paths = append(paths, req.Method+" "+req.URL.Path)
			mu.Unlock()
			next.ServeHTTP(w, req)
		})
	}(am.srv.Config.Handler)
	n := 12.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.nt.opts.ExternalLabels = map[string]string{"cluster": "eu-1", "severity": "overridden"}
	r.load(t, fmt.Sprintf(`
receivers:
  - name: am
    alertmanager_url: %s/
groups:
  - name: api
    interval: 15s
    rules:
      - alert: ApiErrors
        logs: 'level:error'
        window: 5m
        threshold: '> 10'
        labels: {severity: page}
        annotations: {summary: '{{ $value }} errors'}
`, am.srv.URL))
	t0 := r.clock.Now()
	r.eval(t, 0)
	list := am.alertmanager(t)
	if len(list) != 1 {
		t.Fatalf("%+v", list)
	}
	a := list[0]
	want := map[string]string{"alertname": "ApiErrors", "severity": "page", "cluster": "eu-1"}
	if fmt.Sprint(a.Labels) != fmt.Sprint(want) || a.Annotations["summary"] != "12 errors" || !a.StartsAt.Equal(t0) ||
		!a.EndsAt.Equal(t0.Add(4*time.Minute)) || !strings.HasPrefix(a.GeneratorURL, testURL+"/search?q=level%3Aerror&") {
		t.Errorf("alert %+v", a)
	}
	mu.Lock()
	if len(paths) != 1 || paths[0] != "POST /api/v2/alerts" {
		t.Errorf("requests %v", paths)
	}
	mu.Unlock()

	r.eval(t, 30*time.Second)
	am.none(t) // resent only after the resend interval (1m)
	r.eval(t, 30*time.Second)
	again := am.alertmanager(t)
	if len(again) != 1 || !again[0].StartsAt.Equal(t0) || !again[0].EndsAt.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("resent %+v", again)
	}

	n = 0
	r.eval(t, 15*time.Second)
	res := am.alertmanager(t)
	if len(res) != 1 || !res[0].EndsAt.Equal(t0.Add(75*time.Second)) {
		t.Errorf("resolved %+v", res)
	}
	r.eval(t, time.Minute)
	am.none(t)
}

// A receiver answering a 4xx (here 400) is not retried: the refusal is logged
// once and counted; a 429 or 5xx is retried with backoff until it goes through.
func TestPermanentRefusalNotRetried(t *testing.T) {
	hook := newRecorder(t)
	hook.fail.Store(1 << 30)
	hook.failCode.Store(http.StatusBadRequest)
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: func(_ context.Context, q LogsQuery) ([]LogsGroup, error) {
		return []LogsGroup{{Labels: map[string]string{"service": "a"}, Count: n}}, nil
	}})
	r.nt.log = slog.New(slog.NewTextHandler(lockedWriter{&logBuf, &logMu}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r.load(t, fmt.Sprintf(`
receivers: [{name: hook, webhook_url: %s}]
groups:
  - name: g
    repeat_interval: 10m
    rules:
      - {alert: A, logs: x, window: 1m, threshold: '> 0', by: [service]}
`, hook.srv.URL))
	r.eval(t, 0)
	if got := hook.requests.Load(); got != 1 {
		t.Fatalf("%d requests after a 400, want 1 (no retry)", got)
	}
	r.eval(t, time.Minute) // nothing new
	r.eval(t, time.Minute)
	if got := hook.requests.Load(); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
	if v := testutil.ToFloat64(r.nt.met.refused.WithLabelValues("hook")); v != 1 {
		t.Errorf("refused = %v", v)
	}
	r.eval(t, 10*time.Minute) // the repeat is due: tried once more, refused again, not logged again
	if got := hook.requests.Load(); got != 2 {
		t.Errorf("%d requests after the repeat interval, want 2", got)
	}
	logMu.Lock()
	logs := logBuf.String()
	logMu.Unlock()
	if c := strings.Count(logs, "notification refused by the receiver"); c != 1 || !strings.Contains(logs, "400 Bad Request") {
		t.Errorf("logged %d times:\n%s", c, logs)
	}
	if strings.Contains(logs, "retrying") {
		t.Errorf("a 400 was retried:\n%s", logs)
	}

	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusRequestTimeout} {
		h := newRecorder(t)
		h.fail.Store(2)
		h.failCode.Store(int32(code))
		r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
		r.load(t, fmt.Sprintf("receivers: [{name: h, webhook_url: %s}]\ngroups: [{name: g, rules: [{alert: A, logs: x, window: 1m, threshold: '> 0'}]}]\n", h.srv.URL))
		r.eval(t, 0)
		if m := h.webhook(t); m.Status != "firing" || h.requests.Load() != 3 {
			t.Errorf("%d: %d requests, want 3 (2 retries)", code, h.requests.Load())
		}
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
