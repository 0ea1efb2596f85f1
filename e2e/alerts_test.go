package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// alertHook is a local receiver: it keeps every body posted to it, by path.
type alertHook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string][]map[string]any
}

func newAlertHook(t *testing.T) *alertHook {
	h := &alertHook{bodies: map[string][]map[string]any{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		h.mu.Lock()
		h.bodies[r.URL.Path] = append(h.bodies[r.URL.Path], m)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *alertHook) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies[path])
}

// wait returns the n-th (1-based) body posted to path, within 30s.
func (h *alertHook) wait(t *testing.T, s *server, path string, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		if len(h.bodies[path]) >= n {
			b := h.bodies[path][n-1]
			h.mu.Unlock()
			return b
		}
		h.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no notification %d on %s within 30s\n%s", n, path, s.logText())
	return nil
}

type alertRules struct {
	Rules []struct {
		Name           string    `json:"name"`
		Health         string    `json:"health"`
		State          string    `json:"state"`
		LastEvaluation time.Time `json:"last_evaluation"`
	} `json:"rules"`
	LastReloadSuccessful bool   `json:"last_reload_successful"`
	LastReloadError      string `json:"last_reload_error"`
}

// evaluatedAfter waits until every rule has been evaluated after t.
func evaluatedAfter(t *testing.T, s *server, after time.Time) alertRules {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r alertRules
		if code, body := s.getJSON(t, "/v1/alerts/rules", nil, &r); code != 200 {
			t.Fatalf("rules: %d %s", code, body)
		}
		ok := len(r.Rules) > 0
		for _, x := range r.Rules {
			ok = ok && x.LastEvaluation.After(after)
		}
		if ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules not evaluated after %v: %+v\n%s", after, r, s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pushErrors(t *testing.T, s *server, n int) {
	t.Helper()
	req := &shiplogv1.PushRequest{}
	// A second in the past: a rule evaluated at a tick just before the write
	// (its window ends at the tick) then counts all of them or, if its query
	// ran before the write, none; at "now" it could count some (9 of 10).
	now := time.Now().Add(-time.Second)
	for i := 0; i < n; i++ {
		req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(now.Add(-time.Duration(i) * time.Millisecond)),
			Service: "api", Host: "web-1", BuildId: "build-e2e", DeployId: "deploy-e2e", Level: "error",
			Message: fmt.Sprintf("connection refused to db-1:5432 (%d)", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := shiplogv1.NewIngestServiceClient(s.dial(t)).Write(ctx, req); err != nil {
		t.Fatal(err)
	}
}

// Alert rules end to end: a logs rule fires and notifies a webhook and a
// Slack receiver with links to the web UI; SIGHUP with a broken file keeps
// the rule running, a good one replaces it; a restart while firing sends
// nothing again.
func TestAlertsEndToEnd(t *testing.T) {
	hook := newAlertHook(t)
	dir := t.TempDir()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	good := fmt.Sprintf(`
receivers:
  - name: ops
    webhook_url: %[1]s/hook
  - name: chat
    slack_webhook_url: %[1]s/slack
groups:
  - name: api
    interval: 1s
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 2m
        threshold: '> 5'
        labels: {severity: page}
        annotations: {summary: 'api logs {{ $value }} errors'}
`, hook.srv.URL)
	if err := os.WriteFile(rules, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(dir, "data"), "--rules", rules)
	ui := "http://" + s.httpAddr

	pushErrors(t, s, 10)
	m := hook.wait(t, s, "/hook", 1)
	alerts, _ := m["alerts"].([]any)
	if m["status"] != "firing" || m["version"] != "4" || m["receiver"] != "ops" || m["externalURL"] != ui || len(alerts) != 1 {
		t.Fatalf("webhook body %v", m)
	}
	a := alerts[0].(map[string]any)
	links, _ := a["links"].(map[string]any)
	if a["value"] != 10.0 || !strings.HasPrefix(fmt.Sprint(a["generatorURL"]), ui+"/search?q=service%3Aapi+AND+level%3Aerror&start=") ||
		links["build"] != ui+"/builds/build-e2e" || links["deploy"] != ui+"/deploys/deploy-e2e" ||
		a["annotations"].(map[string]any)["summary"] != "api logs 10 errors" {
		t.Errorf("webhook alert %v", a)
	}
	sl := hook.wait(t, s, "/slack", 1)
	if txt := fmt.Sprint(sl["text"]); txt != "[FIRING:1] ApiErrors: api logs 10 errors" || !strings.Contains(fmt.Sprint(sl["blocks"]), ui+"/builds/build-e2e") {
		t.Errorf("slack body %v", sl)
	}
	var now struct {
		Alerts []struct{ State string } `json:"alerts"`
	}
	if s.getJSON(t, "/v1/alerts", nil, &now); len(now.Alerts) != 1 || now.Alerts[0].State != "firing" {
		t.Errorf("/v1/alerts %+v", now)
	}
	// The same over gRPC (QueryService offers what the HTTP API does).
	qc := shiplogv1.NewQueryServiceClient(s.dial(t))
	ga, err := qc.ListAlerts(context.Background(), &shiplogv1.ListAlertsRequest{})
	if err != nil || len(ga.Alerts) != 1 || ga.Alerts[0].State != "firing" || ga.Alerts[0].Rule != "ApiErrors" ||
		ga.Alerts[0].Value != 10 || ga.Alerts[0].Links.GetBuild() != ui+"/builds/build-e2e" {
		t.Errorf("gRPC ListAlerts: %v %v", ga, err)
	}
	if gr, err := qc.ListAlertRules(context.Background(), &shiplogv1.ListAlertRulesRequest{}); err != nil || len(gr.Rules) != 1 || gr.Rules[0].Health != "ok" {
		t.Errorf("gRPC ListAlertRules: %v %v", gr, err)
	}
	if gh, err := qc.ListAlertHistory(context.Background(), &shiplogv1.ListAlertHistoryRequest{Limit: 10}); err != nil || len(gh.Transitions) != 2 || gh.Transitions[0].To != "firing" {
		t.Errorf("gRPC ListAlertHistory: %v %v", gh, err)
	}

	// SIGHUP with a broken file: the rule keeps running, the reason is shown.
	if err := os.WriteFile(rules, []byte(strings.Replace(good, "threshold: '> 5'", "threshold: 5", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var r alertRules
	for {
		s.getJSON(t, "/v1/alerts/rules", nil, &r)
		if !r.LastReloadSuccessful || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.LastReloadSuccessful || !strings.Contains(r.LastReloadError, "rules.yaml:14:20: threshold") {
		t.Fatalf("after a broken reload: %+v", r)
	}
	if _, body := s.getJSON(t, "/metrics", nil, nil); !strings.Contains(body, "shiplog_rules_last_reload_successful 0") {
		t.Error("/metrics lacks shiplog_rules_last_reload_successful 0")
	}
	if r := evaluatedAfter(t, s, time.Now()); len(r.Rules) != 1 || r.Rules[0].State != "firing" || r.Rules[0].Health != "ok" {
		t.Errorf("old rule after a broken reload: %+v", r)
	}

	// A good file (one more rule), by POST /-/reload this time.
	more := good + `
      - alert: ApiFatal
        logs: 'service:api AND level:fatal'
        window: 1m
        threshold: '> 0'
`
	if err := os.WriteFile(rules, []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(ui+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /-/reload: %d", resp.StatusCode)
	}
	r = evaluatedAfter(t, s, time.Now())
	if !r.LastReloadSuccessful || len(r.Rules) != 2 || r.Rules[0].State != "firing" {
		t.Errorf("after a good reload: %+v", r)
	}
	if _, body := s.getJSON(t, "/metrics", nil, nil); !strings.Contains(body, "shiplog_rules_last_reload_successful 1") {
		t.Error("/metrics lacks shiplog_rules_last_reload_successful 1")
	}
	if n := hook.count("/hook") + hook.count("/slack"); n != 2 {
		t.Errorf("%d notifications before the restart, want 2", n)
	}

	// Restart while firing: still firing, nothing sent again.
	s.stop()
	s.restart()
	r = evaluatedAfter(t, s, time.Now().Add(2*time.Second)) // a few evaluations
	if len(r.Rules) != 2 || r.Rules[0].State != "firing" {
		t.Errorf("after the restart: %+v", r)
	}
	if n := hook.count("/hook") + hook.count("/slack"); n != 2 {
		t.Errorf("%d notifications after the restart, want still 2\n%s", n, s.logText())
	}
	var hist struct {
		Transitions []struct{ Rule, To string } `json:"transitions"`
	}
	s.getJSON(t, "/v1/alerts/history", nil, &hist)
	if len(hist.Transitions) != 2 || hist.Transitions[0].To != "firing" || hist.Transitions[1].To != "pending" {
		t.Errorf("history %+v", hist)
	}
}

// A PromQL rule over pushed metrics: one alert per series, with a link to the
// logs and the build its labels name.
func TestAlertsPromQL(t *testing.T) {
	hook := newAlertHook(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s/hook}]
groups:
  - name: metrics
    interval: 1s
    rules:
      - alert: QueueDeep
        expr: queue_depth > 5
        annotations: {summary: '{{ $labels.service }} queue at {{ $value }}'}
`, hook.srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--rules", rules)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := timestamppb.New(time.Now().Add(-time.Second))
	_, err := shiplogv1.NewMetricsServiceClient(s.dial(t)).Push(ctx, &shiplogv1.PushMetricsRequest{Samples: []*shiplogv1.Sample{
		{Name: "queue_depth", Labels: map[string]string{"service": "api", "build_id": "build-9"}, Value: 9, Time: now},
		{Name: "queue_depth", Labels: map[string]string{"service": "web"}, Value: 2, Time: now},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := hook.wait(t, s, "/hook", 1)
	alerts, _ := m["alerts"].([]any)
	if len(alerts) != 1 {
		t.Fatalf("body %v", m)
	}
	a := alerts[0].(map[string]any)
	labels, _ := a["labels"].(map[string]any)
	links, _ := a["links"].(map[string]any)
	ui := "http://" + s.httpAddr
	if labels["service"] != "api" || labels["__name__"] != nil || a["value"] != 9.0 ||
		a["annotations"].(map[string]any)["summary"] != "api queue at 9" || links["build"] != ui+"/builds/build-9" ||
		!strings.HasPrefix(fmt.Sprint(links["logs"]), ui+"/search?q=service%3A%22api%22+AND+build_id%3A%22build-9%22") {
		t.Errorf("alert %v", a)
	}
}
