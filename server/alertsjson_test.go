package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/query"
)

// alertServer serves al's alert endpoints (al nil: a server without
// --rules) on a real Server over loopback, without auth; it returns the
// HTTP base URL.
func alertServer(t testing.TB, al Alerting) string {
	t.Helper()
	st := openAlertStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	o := DefaultOptions()
	o.HTTPAddr, o.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	hub := NewHub(DefaultHubOptions())
	core := Core{Ingest: ingest.New(TailSink{Next: st, Hub: hub}, ingest.DefaultOptions(), nil, nil), Backend: query.NewLocal(st, query.DefaultOptions()),
		Hub: hub, Limits: NewLimiter(context.Background(), DefaultLimits(), nil), Alerts: al}
	srv, err := New(core, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + srv.HTTPAddr()
}

// legacyAlertHandlers are the hand-written alert handlers the gateway
// replaced, kept as the reference of the JSON users and the web UI read.
func legacyAlertHandlers(al Alerting) http.Handler {
	mux := http.NewServeMux()
	need := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if al == nil {
				writeHTTPError(w, errNoAlerting)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/alerts", need(func(w http.ResponseWriter, _ *http.Request) {
		list := al.Alerts()
		if list == nil {
			list = []alert.Alert{}
		}
		writeJSON(w, http.StatusOK, struct {
			Alerts []alert.Alert `json:"alerts"`
		}{list})
	}))
	mux.HandleFunc("GET /v1/alerts/rules", need(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, al.Rules())
	}))
	mux.HandleFunc("GET /v1/alerts/history", need(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxHistoryPage {
				writeHTTPError(w, invalid("limit %q: want 1 to %d", s, maxHistoryPage))
				return
			}
			limit = n
		}
		list, next, err := al.History(r.URL.Query().Get("cursor"), limit)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Transitions []alert.Transition `json:"transitions"`
			NextCursor  string             `json:"next_cursor"`
		}{list, next})
	}))
	reload := need(func(w http.ResponseWriter, _ *http.Request) {
		if err := al.Reload(); err != nil {
			writeHTTPError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
	})
	mux.HandleFunc("POST /-/reload", reload)
	mux.HandleFunc("PUT /-/reload", reload)
	return mux
}

// fakeAlerting answers with fixed values (edge cases the real manager
// reaches only by chance: non-finite values, every optional field set).
type fakeAlerting struct {
	alerts  []alert.Alert
	rules   alert.RulesStatus
	history []alert.Transition
	reload  error
}

func (f *fakeAlerting) Alerts() []alert.Alert    { return f.alerts }
func (f *fakeAlerting) Rules() alert.RulesStatus { return f.rules }
func (f *fakeAlerting) Reload() error            { return f.reload }
func (f *fakeAlerting) History(cursor string, limit int) ([]alert.Transition, string, error) {
	if cursor != "" && cursor != "7" {
		return nil, "", alert.ErrBadRequest
	}
	out := f.history[:min(limit, len(f.history))]
	if out == nil {
		out = []alert.Transition{}
	}
	if limit < len(f.history) {
		return out, "7", nil
	}
	return out, "", nil
}

func fakeAlerts() *fakeAlerting {
	t0 := time.Date(2026, 12, 3, 5, 0, 0, 123456700, time.UTC)
	links := alert.Links{Logs: "/search?q=level%3Aerror", Build: "/builds/b-1"}
	return &fakeAlerting{
		alerts: []alert.Alert{
			{Group: "api", Rule: "ApiErrors", State: alert.StateFiring, Labels: map[string]string{"alertname": "ApiErrors", "host": "web-1"},
				Annotations: map[string]string{"summary": "12 errors"}, Value: 12, Fingerprint: "00aa", ActiveAt: t0, FiredAt: t0.Add(time.Minute),
				LastSeenAt: t0.Add(2 * time.Minute), KeepFiringSince: t0.Add(3 * time.Minute), Links: links,
				WindowStart: t0.Add(-5 * time.Minute), WindowEnd: t0},
			{Group: "api", Rule: "Latency", State: alert.StatePending, Labels: map[string]string{"alertname": "Latency"},
				Annotations: map[string]string{}, Value: alert.Float(math.Inf(1)), Fingerprint: "00bb", ActiveAt: t0},
			{Group: "api", Rule: "Ratio", State: alert.StatePending, Labels: map[string]string{}, Annotations: map[string]string{},
				Value: alert.Float(math.NaN()), Fingerprint: "00cc", ActiveAt: t0, ResolvedAt: t0},
			{Group: "api", Rule: "Zero", State: alert.StatePending, Labels: map[string]string{}, Annotations: map[string]string{},
				Value: 0, Fingerprint: "00dd"},
		},
		rules: alert.RulesStatus{File: "rules.yaml", LastReloadSuccessful: false, LastReloadTime: t0, LastReloadError: "line 3: bad",
			Problems: []string{"line 3: bad"},
			Rules: []alert.RuleStatus{
				{Group: "api", Name: "ApiErrors", Kind: "alerting", Type: "logs", Agg: "quantile(0.99, latency_ms)", Query: "level:error",
					Window: "5m", Threshold: "> 10", By: []string{"host"}, For: "1m", KeepFiringFor: "2m", Interval: "15s",
					Labels: map[string]string{"severity": "page"}, Annotations: map[string]string{"summary": "x"}, Receivers: []string{"ops"},
					State: "firing", Health: "err", LastError: "boom", LastEvaluation: t0, EvaluationSeconds: 0.0012, Alerts: 1},
				{Group: "api", Name: "up:sum", Kind: "recording", Type: "promql", Query: "sum(up)", Interval: "15s",
					Receivers: []string{}, State: "inactive", Health: "unknown"},
			},
			Groups: []alert.GroupStatus{{Name: "api", Interval: "15s", QueryOffset: "1m", Limit: 10, LastEvaluation: t0, EvaluationSeconds: 0.5},
				{Name: "b", Interval: "1m"}},
		},
		history: []alert.Transition{
			{ID: "9", Time: t0, Group: "api", Rule: "Latency", From: "inactive", To: "pending", Labels: map[string]string{"a": "b"},
				Value: alert.Float(math.Inf(-1)), Fingerprint: "00bb", Links: links},
			{ID: "8", Time: t0, Group: "api", Rule: "Ratio", From: "", To: "pending", Labels: map[string]string{},
				Value: alert.Float(math.NaN()), Fingerprint: "00cc"},
			{ID: "7", Time: t0, Group: "api", Rule: "ApiErrors", From: "pending", To: "firing", Labels: map[string]string{"host": "web-1"},
				Value: 12.5, Fingerprint: "00aa", Links: links},
		},
	}
}

// answer is an HTTP answer with its body parsed.
type answer struct {
	code int
	body any
}

func doJSON(t testing.TB, h http.Handler, base, method, path string) answer {
	t.Helper()
	var b []byte
	var code int
	if h != nil {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		code, b = rec.Code, rec.Body.Bytes()
	} else {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ = io.ReadAll(resp.Body)
		code = resp.StatusCode
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s %s: %d %v: %s", method, path, code, err, b)
	}
	return answer{code, normalJSON(v)}
}

// normalJSON makes parsed JSON comparable as a client reads it: numbers as
// float64, times (RFC 3339) as the instant they name.
func normalJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case string:
		if ts, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return ts.UTC().Format(time.RFC3339Nano)
		}
	case []any:
		for i := range x {
			x[i] = normalJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalJSON(x[k])
		}
	}
	return v
}

// The alert endpoints through the gateway answer what the hand-written
// handlers answered, as parsed JSON: keys, types and values.
func TestAlertJSONUnchanged(t *testing.T) {
	empty := &fakeAlerting{rules: alert.RulesStatus{Rules: []alert.RuleStatus{}, Groups: []alert.GroupStatus{}, LastReloadSuccessful: true}}
	cases := []struct {
		name string
		al   Alerting
		reqs []string
	}{
		{"full", fakeAlerts(), []string{"GET /v1/alerts", "GET /v1/alerts/rules", "GET /v1/alerts/history",
			"GET /v1/alerts/history?limit=2", "GET /v1/alerts/history?limit=2&cursor=7", "GET /v1/alerts/history?cursor=zz",
			"GET /v1/alerts/history?limit=5000", "GET /v1/alerts/history?limit=-1", "POST /-/reload", "PUT /-/reload"}},
		{"empty", empty, []string{"GET /v1/alerts", "GET /v1/alerts/rules", "GET /v1/alerts/history"}},
		{"bad reload", &fakeAlerting{reload: alert.ErrInvalidRules}, []string{"POST /-/reload"}},
		{"no rules", nil, []string{"GET /v1/alerts", "GET /v1/alerts/rules", "GET /v1/alerts/history", "POST /-/reload", "PUT /-/reload"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, legacy := alertServer(t, c.al), legacyAlertHandlers(c.al)
			for _, r := range c.reqs {
				method, path, _ := strings.Cut(r, " ")
				old, got := doJSON(t, legacy, "", method, path), doJSON(t, nil, base, method, path)
				if old.code != got.code || !reflect.DeepEqual(old.body, got.body) {
					ob, _ := json.Marshal(old.body)
					gb, _ := json.Marshal(got.body)
					t.Errorf("%s:\nold %d %s\nnew %d %s", r, old.code, ob, got.code, gb)
				}
			}
		})
	}
	// A limit that is not a number: 400 in the one error shape.
	got := doJSON(t, nil, alertServer(t, fakeAlerts()), "GET", "/v1/alerts/history?limit=abc")
	e, _ := got.body.(map[string]any)
	if got.code != 400 || e["code"] != 3.0 || e["status"] != "InvalidArgument" || e["message"] == "" || len(e) != 3 {
		t.Errorf("limit=abc: %d %v", got.code, got.body)
	}
}

// Every binding of the alert RPCs is routed to the alerts gateway (a path
// left to the main gateway would answer with the main gateway's JSON), and
// every route of alertPaths is such a binding.
func TestAlertPathsAreTheAlertBindings(t *testing.T) {
	srv := routeServer(t, false)
	routed := map[string]bool{}
	for _, p := range alertPaths {
		_, path, _ := strings.Cut(p, " ")
		routed[path] = true
		if _, ok := srv.gwPaths[path]; !ok {
			t.Errorf("route %s is no binding of an RPC", p)
		}
	}
	for path := range srv.gwPaths {
		if (strings.HasPrefix(path, "/v1/alerts") || path == "/-/reload") && !routed[path] {
			t.Errorf("binding %s is not routed to the alerts gateway", path)
		}
	}
}
