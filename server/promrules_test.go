package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
)

// /api/v1/rules and /api/v1/alerts answer in Prometheus' shapes, with its
// filters; bad parameters get its JSON error; without rules, empty lists.
func TestPromRulesAPI(t *testing.T) {
	mo := alert.DefaultOptions()
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	mo.Now = func() time.Time { return now }
	mo.Query = func(context.Context, string, time.Time) ([]alert.Sample, error) {
		return []alert.Sample{{Labels: map[string]string{"job": "api"}, Value: 10}}, nil
	}
	mo.Append = func(context.Context, []model.Series) error { return nil }
	mgr, err := alert.NewManager(nil, nil, mo)
	if err != nil {
		t.Fatal(err)
	}
	f, probs := alert.Parse([]byte(`
groups:
  - name: a
    interval: 30s
    limit: 5
    rules:
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: '{{ $labels.job }} down'}
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {team: x}
  - name: b
    rules:
      - alert: Other
        expr: vector(1)
        labels: {severity: ticket}
`), alert.ParseOptions{})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	mgr.Apply(f)
	mgr.EvalAll(context.Background())
	mux := newRouter()
	promRulesHandlers(mux, Core{Alerts: mgr})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string, params url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path + "?" + params.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v %s", path, err, b)
		}
		return resp.StatusCode, m
	}
	names := func(m map[string]any) string {
		var out []string
		for _, g := range m["data"].(map[string]any)["groups"].([]any) {
			g := g.(map[string]any)
			for _, r := range g["rules"].([]any) {
				out = append(out, g["name"].(string)+"/"+r.(map[string]any)["name"].(string))
			}
		}
		return strings.Join(out, ",")
	}
	code, m := get("/api/v1/rules", nil)
	if code != 200 || m["status"] != "success" || names(m) != "a/Down,a/job:up:sum,b/Other" {
		t.Fatalf("%d %v", code, m)
	}
	g := m["data"].(map[string]any)["groups"].([]any)[0].(map[string]any)
	down := g["rules"].([]any)[0].(map[string]any)
	rec := g["rules"].([]any)[1].(map[string]any)
	if g["interval"] != 30.0 || g["limit"] != 5.0 || down["type"] != "alerting" || down["duration"] != 300.0 ||
		down["keepFiringFor"] != 60.0 || down["state"] != "pending" || down["health"] != "ok" || down["query"] != "up == 0" ||
		rec["type"] != "recording" || rec["labels"].(map[string]any)["team"] != "x" || rec["alerts"] != nil || rec["duration"] != nil {
		t.Errorf("group %v", g)
	}
	al := down["alerts"].([]any)[0].(map[string]any)
	if al["state"] != "pending" || al["value"] != "1e+01" || al["activeAt"] != "2026-01-02T12:00:00Z" ||
		al["annotations"].(map[string]any)["summary"] != "api down" {
		t.Errorf("alert %v", al)
	}
	for _, c := range []struct {
		params url.Values
		want   string
	}{
		{url.Values{"type": {"alert"}}, "a/Down,b/Other"},
		{url.Values{"type": {"record"}}, "a/job:up:sum"},
		{url.Values{"rule_name[]": {"Other", "job:up:sum"}}, "a/job:up:sum,b/Other"},
		{url.Values{"rule_group[]": {"b"}}, "b/Other"},
		{url.Values{"match[]": {`{severity="page"}`}}, "a/Down"},
		{url.Values{"match[]": {`{severity=~"page|ticket"}`, `{team="x"}`}}, "a/Down,a/job:up:sum,b/Other"},
		{url.Values{"file[]": {"elsewhere.yaml"}}, ""},
	} {
		if code, m := get("/api/v1/rules", c.params); code != 200 || names(m) != c.want {
			t.Errorf("%v: %d %q, want %q", c.params, code, names(m), c.want)
		}
	}
	_, m = get("/api/v1/rules", url.Values{"exclude_alerts": {"true"}})
	if r := m["data"].(map[string]any)["groups"].([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any); r["alerts"] != nil {
		t.Errorf("exclude_alerts: %v", r)
	}
	for _, p := range []url.Values{{"type": {"bogus"}}, {"match[]": {"{"}}, {"exclude_alerts": {"maybe"}}} {
		if code, m := get("/api/v1/rules", p); code != 400 || m["status"] != "error" || m["errorType"] != "bad_data" {
			t.Errorf("%v: %d %v", p, code, m)
		}
	}
	code, m = get("/api/v1/alerts", nil)
	if list := m["data"].(map[string]any)["alerts"].([]any); code != 200 || len(list) != 2 {
		t.Errorf("alerts %d %v", code, m)
	}

	// No rules file: empty lists, as Prometheus with no rules.
	mux = newRouter()
	promRulesHandlers(mux, Core{})
	srv2 := httptest.NewServer(mux)
	defer srv2.Close()
	for _, p := range []string{"/api/v1/rules", "/api/v1/alerts"} {
		resp, err := http.Get(srv2.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (!strings.Contains(string(b), `"groups":[]`) && !strings.Contains(string(b), `"alerts":[]`)) {
			t.Errorf("%s without rules: %d %s", p, resp.StatusCode, b)
		}
	}
}
