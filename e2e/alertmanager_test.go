package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// startAlertmanager runs Debian's prometheus-alertmanager on a loopback port
// it picks and returns its base URL, or skips the test when it is missing.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Skip("prometheus-alertmanager is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfg, []byte("route: {receiver: 'null', group_wait: 1s}\nreceivers: [{name: 'null'}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	am := startPromProcess(t, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0", "--cluster.listen-address=")
	return "http://" + am.addr
}

// amAlert is an alert as Alertmanager's GET /api/v2/alerts shows it.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(t *testing.T, am string) []amAlert {
	t.Helper()
	resp, err := http.Get(am + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []amAlert
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
		t.Fatalf("alertmanager: %d %s", resp.StatusCode, b)
	}
	return out
}

// waitFor polls cond every 100ms for up to 30s.
func waitFor(t *testing.T, s *server, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s\n%s", what, s.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A real Alertmanager receives shiplog's alerts (labels with the external
// labels, annotations, generatorURL to the matching lines) and shows them
// in its API until they resolve; recording rules over logs and over PromQL
// write series PromQL reads; /api/v1/rules and /api/v1/alerts answer in
// Prometheus' shapes.
func TestAlertmanagerAndRecordingRules(t *testing.T) {
	am := startAlertmanager(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	text := fmt.Sprintf(`
receivers:
  - name: am
    alertmanager_url: %s
groups:
  - name: api
    interval: 1s
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 2m
        threshold: '> 5'
        by: [service]
        labels: {severity: page}
        annotations: {summary: '{{ $labels.service }} logs {{ $value }} errors in {{ $externalLabels.cluster }}'}
      - record: log_errors:by_service
        logs: level:error
        window: 2m
        by: [service]
      - record: log_errors:total
        expr: sum(log_errors:by_service)
`, am)
	if err := os.WriteFile(rules, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(t.TempDir(), "data"), "--rules", rules, "--external-labels", "cluster=e2e")
	ui := "http://" + s.httpAddr
	pushErrors(t, s, 10)

	var got []amAlert
	waitFor(t, s, "the alert in Alertmanager", func() bool {
		got = amAlerts(t, am)
		return len(got) == 1
	})
	a := got[0]
	want := map[string]string{"alertname": "ApiErrors", "service": "api", "severity": "page", "cluster": "e2e"}
	if fmt.Sprint(a.Labels) != fmt.Sprint(want) || a.Annotations["summary"] != "api logs 10 errors in e2e" ||
		a.Status.State != "active" || !a.EndsAt.After(time.Now()) ||
		!strings.HasPrefix(a.GeneratorURL, ui+"/search?q="+url.QueryEscape(`(service:api AND level:error) AND service:"api"`)+"&start=") {
		t.Errorf("alertmanager has %+v", a)
	}

	// The recording rules' series, through PromQL.
	query := func(q string) map[string]string {
		var r struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		s.getJSON(t, "/api/v1/query", url.Values{"query": {q}}, &r)
		out := map[string]string{}
		for _, x := range r.Data.Result {
			out[fmt.Sprint(x.Metric)] = fmt.Sprint(x.Value[1])
		}
		return out
	}
	waitFor(t, s, "recorded series", func() bool {
		return query("log_errors:by_service")["map[__name__:log_errors:by_service service:api]"] == "10" &&
			query("log_errors:total")["map[__name__:log_errors:total]"] == "10"
	})

	// Prometheus' API shapes.
	var rules1 struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name     string  `json:"name"`
				File     string  `json:"file"`
				Interval float64 `json:"interval"`
				Rules    []struct {
					Name   string `json:"name"`
					Type   string `json:"type"`
					Health string `json:"health"`
					State  string `json:"state"`
					Alerts []struct {
						State string `json:"state"`
						Value string `json:"value"`
					} `json:"alerts"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if code, body := s.getJSON(t, "/api/v1/rules", nil, &rules1); code != 200 || rules1.Status != "success" || len(rules1.Data.Groups) != 1 {
		t.Fatalf("/api/v1/rules: %d %s", code, body)
	}
	g := rules1.Data.Groups[0]
	if g.Name != "api" || g.File != rules || g.Interval != 1 || len(g.Rules) != 3 || g.Rules[0].Type != "alerting" ||
		g.Rules[0].State != "firing" || len(g.Rules[0].Alerts) != 1 || g.Rules[0].Alerts[0].Value != "1e+01" ||
		g.Rules[1].Type != "recording" || g.Rules[1].Name != "log_errors:by_service" || g.Rules[2].Health != "ok" {
		t.Errorf("/api/v1/rules: %+v", g)
	}
	var alerts struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if s.getJSON(t, "/api/v1/alerts", nil, &alerts); len(alerts.Data.Alerts) != 1 || alerts.Data.Alerts[0].State != "firing" {
		t.Errorf("/api/v1/alerts: %+v", alerts)
	}
	if code, body := s.getJSON(t, "/api/v1/rules", url.Values{"type": {"record"}}, &rules1); code != 200 || len(rules1.Data.Groups[0].Rules) != 2 {
		t.Errorf("type=record: %d %s", code, body)
	}

	// Over gRPC too, with each rule's kind.
	gr, err := shiplogv1.NewQueryServiceClient(s.dial(t)).ListAlertRules(context.Background(), &shiplogv1.ListAlertRulesRequest{})
	if err != nil || len(gr.Rules) != 3 || gr.Rules[0].Kind != "alerting" || gr.Rules[1].Kind != "recording" || gr.Rules[1].Type != "logs" {
		t.Errorf("gRPC ListAlertRules: %v %v", gr, err)
	}

	// The threshold goes up: the alert resolves, and Alertmanager, told
	// endsAt, shows it no more.
	if err := os.WriteFile(rules, []byte(strings.Replace(text, "threshold: '> 5'", "threshold: '> 100'", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(ui+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, s, "the alert resolved in Alertmanager", func() bool { return len(amAlerts(t, am)) == 0 })
}
