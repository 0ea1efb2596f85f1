package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/metrics"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// openTestStore opens a store in a fresh t.TempDir(), closed when t ends.
func openTestStore(t testing.TB) *store.Store {
	t.Helper()
	st := openAlertStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func openAlertStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	so := store.DefaultOptions()
	so.Maintenance = time.Hour
	so.BadgerMemTable, so.BadgerCache = 8<<20, 8<<20
	st, err := store.Open(dir, so, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// appendLines stores n lines of (service, host, build, deploy) at level lv,
// one a millisecond from t0.
func appendLines(t testing.TB, st *store.Store, n int, lb model.Labels, lv model.Level, t0 time.Time) {
	t.Helper()
	b := model.Batch{}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Labels: lb,
			Level: lv, Message: fmt.Sprintf("request %d failed: connection refused", i)})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func TestAlertLogsQuery(t *testing.T) {
	{
		st := openAlertStore(t, t.TempDir())
		now := time.Now().UTC().Truncate(time.Second)
		t0 := now.Add(-2 * time.Minute)
		api := model.Labels{Service: "api", Host: "web-1", BuildID: "b-1", DeployID: "d-1"}
		api2 := model.Labels{Service: "api", Host: "web-2", BuildID: "b-1", DeployID: "d-1"}
		web := model.Labels{Service: "web", Host: "web-9", BuildID: "b-2"}
		appendLines(t, st, 8, api, model.LevelError, t0)
		appendLines(t, st, 4, api2, model.LevelError, t0)
		appendLines(t, st, 3, web, model.LevelError, t0)
		appendLines(t, st, 50, api, model.LevelInfo, t0)
		appendLines(t, st, 5, api, model.LevelError, now.Add(-time.Hour)) // outside the window
		checkAlertLogsQuery(t, st, query.NewLocal(st, query.DefaultOptions()), now, t0, api, web)
		st.Close()
	}
}

func checkAlertLogsQuery(t *testing.T, st *store.Store, eng query.Backend, now, t0 time.Time, api, web model.Labels) {
	fn := AlertLogsQuery(eng)
	ctx := context.Background()
	run := func(q string, by ...string) map[string]alert.LogsGroup {
		t.Helper()
		gs, err := fn(ctx, alert.LogsQuery{Query: q, Start: now.Add(-5 * time.Minute), End: now, By: by})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]alert.LogsGroup{}
		for _, g := range gs {
			var k []string
			for _, f := range by {
				k = append(k, g.Labels[f])
			}
			out[strings.Join(k, ",")] = g
		}
		return out
	}
	if g := run("level:error"); len(g) != 1 || g[""].Count != 15 || g[""].BuildID != "" || g[""].Query != "level:error" {
		t.Errorf("level:error: %+v", g)
	}
	if g := run("service:api AND level:error"); g[""].Count != 12 || g[""].BuildID != "b-1" || g[""].DeployID != "d-1" {
		t.Errorf("api errors: %+v", g)
	}
	g := run("level:error", "service")
	if len(g) != 2 || g["api"].Count != 12 || g["api"].BuildID != "b-1" || g["web"].Count != 3 || g["web"].BuildID != "b-2" ||
		g["web"].DeployID != "" || g["api"].Query != `(level:error) AND service:"api"` {
		t.Errorf("by service: %+v", g)
	}
	g = run("connection", "host", "level")
	if len(g) != 4 || g["web-1,error"].Count != 8 || g["web-1,info"].Count != 50 || g["web-2,error"].Count != 4 || g["web-9,error"].Count != 3 {
		t.Errorf("by host, level: %+v", g)
	}
	if g := run("level:fatal"); len(g) != 1 || g[""].Count != 0 {
		t.Errorf("no match without by: %+v", g)
	}
	if g := run("level:fatal", "service"); len(g) != 0 {
		t.Errorf("no match with by: %+v", g)
	}

	// Many matches: counts stay exact, a shared build is checked.
	const many = 5200
	appendLines(t, st, many, api, model.LevelWarn, t0)
	appendLines(t, st, 10, web, model.LevelWarn, now.Add(-time.Second))
	g = run("level:warn", "service")
	if g["api"].Count != many || g["api"].BuildID != "b-1" || g["web"].Count != 10 || g["web"].BuildID != "b-2" {
		t.Errorf("beyond the sample: %+v", g)
	}
	if g := run("level:warn"); g[""].Count != many+10 || g[""].BuildID != "" {
		t.Errorf("beyond the sample, no by: %+v", g)
	}
	if _, err := fn(ctx, alert.LogsQuery{Query: "level:bogus", Start: now.Add(-time.Minute), End: now}); err == nil {
		t.Error("bad query: no error")
	}
}

// hookRecorder keeps webhook bodies.
type hookRecorder struct {
	mu     sync.Mutex
	bodies []alert.WebhookMessage
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m alert.WebhookMessage
	_ = json.NewDecoder(r.Body).Decode(&m)
	h.mu.Lock()
	h.bodies = append(h.bodies, m)
	h.mu.Unlock()
}

func (h *hookRecorder) take() []alert.WebhookMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.bodies
	h.bodies = nil
	return out
}

// alertRig is a Manager and Notifier over a real store and query engine.
type alertRig struct {
	mgr *alert.Manager
	nt  *alert.Notifier
}

func newAlertRig(t testing.TB, st *store.Store, rules string, now func() time.Time) *alertRig {
	t.Helper()
	no := alert.DefaultNotifierOptions()
	no.Now, no.Store, no.ExternalURL = now, st, "http://ui.test"
	nt, err := alert.NewNotifier(nil, nil, no)
	if err != nil {
		t.Fatal(err)
	}
	mo := alert.DefaultOptions()
	mo.Now, mo.Store, mo.ExternalURL, mo.Notify = now, st, "http://ui.test", nt.Notify
	mo.Logs = AlertLogsQuery(query.NewLocal(st, query.DefaultOptions()))
	mgr, err := alert.NewManager(nil, nil, mo)
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.LoadFile(rules); err != nil {
		t.Fatal(err)
	}
	return &alertRig{mgr: mgr, nt: nt}
}

func (r *alertRig) eval() {
	r.mgr.EvalAll(context.Background())
	r.nt.Flush()
}

// Rules over a real store fire with links to the build, keep their state in
// Badger across a reopen without notifying twice, and are served over HTTP.
func TestAlertsOverStore(t *testing.T) {
	hook := &hookRecorder{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	dir := t.TempDir()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	text := fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: api
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 5m
        threshold: '> 10'
        annotations: {summary: '{{ $value }} errors on {{ $labels.host }}'}
        by: [host]
`, hs.URL)
	if err := os.WriteFile(rules, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	st := openAlertStore(t, dir)
	appendLines(t, st, 12, model.Labels{Service: "api", Host: "web-1", BuildID: "b-1"}, model.LevelError, now.Add(-time.Minute))
	appendLines(t, st, 5, model.Labels{Service: "api", Host: "web-2", BuildID: "b-1"}, model.LevelError, now.Add(-time.Minute))
	r := newAlertRig(t, st, rules, clock)
	r.eval()
	got := hook.take()
	if len(got) != 1 || len(got[0].Alerts) != 1 {
		t.Fatalf("notifications %+v", got)
	}
	a := got[0].Alerts[0]
	if a.Labels["host"] != "web-1" || a.Value != 12 || a.Annotations["summary"] != "12 errors on web-1" ||
		a.Links.Build != "http://ui.test/builds/b-1" || !strings.HasPrefix(a.Links.Logs, "http://ui.test/search?q=") {
		t.Errorf("alert %+v", a)
	}

	// The HTTP API.
	api := struct{ URL string }{alertServer(t, r.mgr)}
	legacy := legacyAlertHandlers(r.mgr) // the same answers as the hand-written handlers
	for _, p := range []string{"/v1/alerts", "/v1/alerts/rules", "/v1/alerts/history", "/v1/alerts/history?limit=1"} {
		if old, got := doJSON(t, legacy, "", "GET", p), doJSON(t, nil, api.URL, "GET", p); old.code != got.code || !reflect.DeepEqual(old.body, got.body) {
			t.Errorf("%s:\nold %d %v\nnew %d %v", p, old.code, old.body, got.code, got.body)
		}
	}
	var alerts struct {
		Alerts []struct {
			State  string            `json:"state"`
			Labels map[string]string `json:"labels"`
			Value  float64           `json:"value"`
			Links  map[string]string `json:"links"`
		} `json:"alerts"`
	}
	getJSON(t, api.URL+"/v1/alerts", 200, &alerts)
	if len(alerts.Alerts) != 1 || alerts.Alerts[0].State != "firing" || alerts.Alerts[0].Value != 12 || alerts.Alerts[0].Links["build"] == "" {
		t.Errorf("/v1/alerts %+v", alerts)
	}
	var rs struct {
		Rules []struct {
			Name, Health, State, Type, Query string
		} `json:"rules"`
		LastReloadSuccessful bool `json:"last_reload_successful"`
	}
	getJSON(t, api.URL+"/v1/alerts/rules", 200, &rs)
	if len(rs.Rules) != 1 || rs.Rules[0].Health != "ok" || rs.Rules[0].State != "firing" || rs.Rules[0].Type != "logs" || !rs.LastReloadSuccessful {
		t.Errorf("/v1/alerts/rules %+v", rs)
	}
	var hist struct {
		Transitions []struct{ ID, To string } `json:"transitions"`
		NextCursor  string                    `json:"next_cursor"`
	}
	getJSON(t, api.URL+"/v1/alerts/history?limit=1", 200, &hist)
	if len(hist.Transitions) != 1 || hist.Transitions[0].To != "firing" || hist.NextCursor == "" {
		t.Errorf("history %+v", hist)
	}
	getJSON(t, api.URL+"/v1/alerts/history?cursor="+hist.NextCursor, 200, &hist)
	if len(hist.Transitions) != 1 || hist.Transitions[0].To != "pending" || hist.NextCursor != "" {
		t.Errorf("history page 2 %+v", hist)
	}
	getJSON(t, api.URL+"/v1/alerts/history?limit=5000", 400, nil)
	getJSON(t, api.URL+"/v1/alerts/history?cursor=zz", 400, nil)

	// A broken file on POST /-/reload: 400, the rule keeps running.
	if err := os.WriteFile(rules, []byte("groups: [{name: x, rules: [{alert: A}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, body := post(t, api.URL+"/-/reload")
	if code != 400 || !strings.Contains(body, `needs expr: (PromQL) or logs:`) {
		t.Errorf("reload: %d %s", code, body)
	}
	getJSON(t, api.URL+"/v1/alerts/rules", 200, &rs)
	if len(rs.Rules) != 1 || rs.LastReloadSuccessful {
		t.Errorf("after a bad reload %+v", rs)
	}
	if err := os.WriteFile(rules, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, api.URL+"/-/reload"); code != 200 {
		t.Errorf("reload: %d %s", code, body)
	}

	// Reopen the store: the alert is still firing and nothing is sent again.
	r.nt.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openAlertStore(t, dir)
	defer st.Close()
	now = now.Add(30 * time.Second)
	r = newAlertRig(t, st, rules, clock)
	defer r.nt.Close()
	if al := r.mgr.Alerts(); len(al) != 1 || al[0].State != alert.StateFiring {
		t.Fatalf("restored %+v", al)
	}
	r.eval()
	if got := hook.take(); len(got) != 0 {
		t.Errorf("notified again after a restart: %+v", got)
	}
	now = now.Add(10 * time.Minute) // the errors are out of the window
	r.eval()
	if got := hook.take(); len(got) != 1 || got[0].Status != "resolved" {
		t.Errorf("resolution: %+v", got)
	}

	// Without --rules the endpoints say so.
	none := alertServer(t, nil)
	getJSON(t, none+"/v1/alerts", 501, nil)
	if code, _ := post(t, none+"/-/reload"); code != 501 {
		t.Errorf("reload without rules: %d", code)
	}
}

func getJSON(t testing.TB, u string, code int, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d %s, want %d", u, resp.StatusCode, b, code)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, b)
		}
	}
}

func post(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAlertPromQueryGuard: a rule's PromQL goes through the same guard as
// the Prometheus API, so a rule cannot run the server out of memory either.
func TestAlertPromQueryGuard(t *testing.T) {
	st := openAlertStore(t, t.TempDir())
	defer st.Close()
	qf := AlertPromQuery(&Metrics{Engine: metrics.NewEngine(metrics.DefaultOptions(), nil, nil), Queryable: metrics.NewQueryable(st, metrics.DefaultOptions())})
	_, err := qf(context.Background(), `max_over_time(vector(1)[10000d:1ms]) > 0`, time.Now())
	if !errors.Is(err, metrics.ErrLimit) {
		t.Fatalf("hostile rule: %v, want metrics.ErrLimit", err)
	}
	got, err := qf(context.Background(), `max_over_time(vector(1)[1h:1m]) > 0`, time.Now())
	if err != nil || len(got) != 1 || got[0].Value != 1 {
		t.Fatalf("everyday rule: %v %v", got, err)
	}
}
