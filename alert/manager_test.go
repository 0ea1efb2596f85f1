package alert

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func contractRules(ops, chat string) string {
	return fmt.Sprintf(`
receivers:
  - name: ops
    webhook_url: %s/hook
  - name: chat
    slack_webhook_url: %s/slack
groups:
  - name: api
    interval: 15s
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 5m
        threshold: '> 10'
        for: 1m
        labels: {severity: page}
        annotations: {summary: 'api is logging errors', description: '{{ $value }} errors in 5m'}
        receivers: [ops, chat]
`, ops, chat)
}

// A logs rule goes pending, fires after for:, notifies both receivers with
// links to the lines and the build they share, stays quiet while it keeps
// firing, and notifies again when the errors stop.
func TestLogsRuleFiresAndResolves(t *testing.T) {
	ops, chat := newRecorder(t), newRecorder(t)
	n := 12.0
	var queries []LogsQuery
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "build-7", "", &queries)})
	r.load(t, contractRules(ops.srv.URL, chat.srv.URL))
	t0 := r.clock.Now()

	r.eval(t, 0)
	if len(queries) != 1 || queries[0].Query != "service:api AND level:error" || !queries[0].End.Equal(t0) ||
		!queries[0].Start.Equal(t0.Add(-5*time.Minute)) || len(queries[0].By) != 0 {
		t.Fatalf("queries %+v", queries)
	}
	al := r.mgr.Alerts()
	if len(al) != 1 || al[0].State != StatePending || !al[0].ActiveAt.Equal(t0) || al[0].Value != 12 {
		t.Fatalf("alerts %+v", al)
	}
	ops.none(t)
	chat.none(t)

	r.eval(t, 30*time.Second) // still pending: for: 1m
	ops.none(t)
	r.eval(t, 30*time.Second) // fires
	fired := t0.Add(time.Minute)
	wantLogs := testURL + "/search?q=service%3Aapi+AND+level%3Aerror&start=2026-01-02T11%3A56%3A00Z&end=2026-01-02T12%3A01%3A01Z"

	m := ops.webhook(t)
	if m.Version != "4" || m.Status != "firing" || m.Receiver != "ops" || m.ExternalURL != testURL ||
		m.GroupLabels["alertname"] != "ApiErrors" || m.CommonLabels["severity"] != "page" ||
		m.CommonAnnotations["summary"] != "api is logging errors" || !strings.Contains(m.GroupKey, `alertname="ApiErrors"`) {
		t.Errorf("webhook body %+v", m)
	}
	if len(m.Alerts) != 1 {
		t.Fatalf("alerts %+v", m.Alerts)
	}
	a := m.Alerts[0]
	wantLabels := map[string]string{"alertname": "ApiErrors", "severity": "page"}
	if a.Status != "firing" || !a.StartsAt.Equal(fired) || !a.EndsAt.IsZero() || a.Value != 12 ||
		fmt.Sprint(a.Labels) != fmt.Sprint(wantLabels) || a.Fingerprint != Fingerprint(wantLabels) ||
		a.Annotations["description"] != "12 errors in 5m" {
		t.Errorf("alert %+v", a)
	}
	if a.GeneratorURL != wantLogs || a.Links.Logs != wantLogs || a.Links.Build != testURL+"/builds/build-7" || a.Links.Deploy != "" {
		t.Errorf("links: generator %s, %+v\nwant logs %s", a.GeneratorURL, a.Links, wantLogs)
	}

	s := chat.slack(t)
	text, _ := s["text"].(string)
	if text != "[FIRING:1] ApiErrors: api is logging errors" {
		t.Errorf("slack text %q", text)
	}
	urls, all := slackButtons(s), fmt.Sprint(s["blocks"])
	if len(urls) != 2 || urls[0] != wantLogs || urls[1] != testURL+"/builds/build-7" {
		t.Errorf("slack buttons %q", urls)
	}
	for _, want := range []string{"*Value:* 12", "*Since:* 2026-01-02 12:01:00 UTC", "severity=page", "api is logging errors", "FIRING: ApiErrors"} {
		if !strings.Contains(all, want) {
			t.Errorf("slack message lacks %q: %s", want, all)
		}
	}

	// Still firing, other values: nothing new to say.
	n = 15
	r.eval(t, 15*time.Second)
	ops.none(t)
	chat.none(t)
	if al := r.mgr.Alerts(); len(al) != 1 || al[0].State != StateFiring || al[0].Value != 15 {
		t.Fatalf("alerts %+v", al)
	}

	// The errors stop: resolved, to both.
	n = 0
	r.eval(t, 15*time.Second)
	resolved := fired.Add(30 * time.Second)
	m = ops.webhook(t)
	if m.Status != "resolved" || len(m.Alerts) != 1 || m.Alerts[0].Status != "resolved" || !m.Alerts[0].EndsAt.Equal(resolved) ||
		m.Alerts[0].Value != 15 || m.Alerts[0].Links.Build == "" {
		t.Errorf("resolved webhook %+v", m)
	}
	if s := chat.slack(t); !strings.HasPrefix(s["text"].(string), "[RESOLVED:1] ApiErrors") || !strings.Contains(fmt.Sprint(s["blocks"]), "after firing for 30s") {
		t.Errorf("resolved slack %v", s)
	}
	if len(r.mgr.Alerts()) != 0 {
		t.Errorf("alerts after resolution: %+v", r.mgr.Alerts())
	}
	r.eval(t, 15*time.Second)
	ops.none(t)
	chat.none(t)

	hist, next, err := r.mgr.History("", 10)
	if err != nil || next != "" || len(hist) != 3 {
		t.Fatalf("history %+v %q %v", hist, next, err)
	}
	for i, want := range []string{"resolved", "firing", "pending"} {
		if hist[i].To != want || hist[i].Rule != "ApiErrors" || hist[i].Group != "api" {
			t.Errorf("history[%d] %+v, want to %s", i, hist[i], want)
		}
	}
	rs := r.mgr.Rules()
	if len(rs.Rules) != 1 || rs.Rules[0].Health != "ok" || rs.Rules[0].Type != "logs" || rs.Rules[0].Threshold != "> 10" ||
		rs.Rules[0].Window != "5m" || rs.Rules[0].For != "1m" || rs.Rules[0].Interval != "15s" || fmt.Sprint(rs.Rules[0].Receivers) != "[ops chat]" {
		t.Errorf("rules %+v", rs)
	}
	if v := testutil.ToFloat64(r.nt.met.sent.WithLabelValues("ops", "webhook")); v != 2 {
		t.Errorf("shiplog_notifications_total{receiver=ops} = %v, want 2", v)
	}
}

func slackButtons(m map[string]any) []string {
	var out []string
	blocks, _ := m["blocks"].([]any)
	for _, b := range blocks {
		bm, _ := b.(map[string]any)
		if bm["type"] != "actions" {
			continue
		}
		els, _ := bm["elements"].([]any)
		for _, e := range els {
			em, _ := e.(map[string]any)
			if u, ok := em["url"].(string); ok {
				out = append(out, u)
			}
		}
	}
	return out
}

// A pending alert whose errors stop before for: goes away without a word.
func TestPendingGoesAway(t *testing.T) {
	ops := newRecorder(t)
	n := 12.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.load(t, contractRules(ops.srv.URL, ops.srv.URL))
	r.eval(t, 0)
	n = 0
	r.eval(t, 30*time.Second)
	ops.none(t)
	if al := r.mgr.Alerts(); len(al) != 0 {
		t.Fatalf("alerts %+v", al)
	}
	hist, _, _ := r.mgr.History("", 10)
	if len(hist) != 2 || hist[0].From != "pending" || hist[0].To != "inactive" {
		t.Errorf("history %+v", hist)
	}
}

// by: makes one alert per group; the body lists them, and the common labels
// are the ones they share.
func TestByGrouping(t *testing.T) {
	ops := newRecorder(t)
	counts := map[string]float64{"api": 20, "web": 3}
	var got LogsQuery
	eng := &fakeEngines{logs: func(_ context.Context, q LogsQuery) ([]LogsGroup, error) {
		got = q
		var out []LogsGroup
		for _, s := range []string{"api", "web"} {
			out = append(out, LogsGroup{Labels: map[string]string{"service": s}, Count: counts[s],
				Query: "(" + q.Query + `) AND service:"` + s + `"`, DeployID: "deploy-" + s})
		}
		return out, nil
	}}
	r := newRig(t, nil, newClock(), eng)
	r.load(t, fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: g
    rules:
      - alert: Errors
        logs: level:error
        window: 1m
        threshold: '> 10'
        by: [service]
        annotations: {summary: '{{ $labels.service }} logs errors'}
`, ops.srv.URL))
	r.eval(t, 0)
	if fmt.Sprint(got.By) != "[service]" {
		t.Errorf("by %v", got.By)
	}
	m := ops.webhook(t)
	if len(m.Alerts) != 1 || m.Alerts[0].Labels["service"] != "api" || m.Alerts[0].Value != 20 ||
		m.Alerts[0].Annotations["summary"] != "api logs errors" || m.Alerts[0].Links.Deploy != testURL+"/deploys/deploy-api" ||
		!strings.Contains(m.Alerts[0].Links.Logs, url.QueryEscape(`(level:error) AND service:"api"`)) {
		t.Fatalf("body %+v", m)
	}
	counts["web"] = 11
	r.eval(t, time.Minute)
	m = ops.webhook(t)
	if len(m.Alerts) != 2 || m.Alerts[0].Fingerprint == m.Alerts[1].Fingerprint {
		t.Fatalf("body %+v", m)
	}
	if _, ok := m.CommonLabels["service"]; ok || m.CommonLabels["alertname"] != "Errors" || len(m.CommonAnnotations) != 0 {
		t.Errorf("common labels %v annotations %v", m.CommonLabels, m.CommonAnnotations)
	}
	if al := r.mgr.Alerts(); len(al) != 2 {
		t.Errorf("alerts %+v", al)
	}
	// api stops: its resolution goes out with web still firing.
	counts["api"] = 0
	r.eval(t, time.Minute)
	m = ops.webhook(t)
	if m.Status != "firing" || len(m.Alerts) != 2 {
		t.Fatalf("body %+v", m)
	}
	for _, a := range m.Alerts {
		if want := map[string]string{"api": "resolved", "web": "firing"}[a.Labels["service"]]; a.Status != want {
			t.Errorf("%s: %s, want %s", a.Labels["service"], a.Status, want)
		}
	}
}

func TestTemplates(t *testing.T) {
	eng := &fakeEngines{logs: func(_ context.Context, q LogsQuery) ([]LogsGroup, error) {
		return []LogsGroup{{Labels: map[string]string{"service": "api", "host": "web-1"}, Count: 1234.5}}, nil
	}}
	r := newRig(t, nil, newClock(), eng)
	r.load(t, `
groups:
  - name: g
    rules:
      - alert: T
        logs: x
        window: 1m
        threshold: '> 0'
        by: [service, host]
        labels:
          team: '{{ $labels.service }}-team'
          static: plain
        annotations:
          summary: '{{ $value }} errors on {{ $labels.service }} (team {{ $labels.team }}, {{ $labels.alertname }})'
          human: '{{ humanize $value }} on {{ $labels.host | toUpper }}'
          link: '{{ $externalURL }}/hosts'
          broken: '{{ index $labels 1 }}'
`)
	r.eval(t, 0)
	al := r.mgr.Alerts()
	if len(al) != 1 {
		t.Fatalf("alerts %+v", al)
	}
	a := al[0]
	if fmt.Sprint(a.Labels) != "map[alertname:T host:web-1 service:api static:plain team:api-team]" {
		t.Errorf("labels %v", a.Labels)
	}
	for k, want := range map[string]string{
		"summary": "1234.5 errors on api (team api-team, T)",
		"human":   "1.234k on WEB-1",
		"link":    testURL + "/hosts",
	} {
		if a.Annotations[k] != want {
			t.Errorf("%s = %q, want %q", k, a.Annotations[k], want)
		}
	}
	if !strings.HasPrefix(a.Annotations["broken"], "<error expanding template") {
		t.Errorf("broken = %q", a.Annotations["broken"])
	}
}

func TestKeepFiringFor(t *testing.T) {
	ops := newRecorder(t)
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.load(t, fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: g
    rules:
      - alert: K
        logs: x
        window: 1m
        threshold: '> 0'
        keep_firing_for: 2m
`, ops.srv.URL))
	r.eval(t, 0) // for: 0 fires at once
	if m := ops.webhook(t); m.Status != "firing" {
		t.Fatalf("%+v", m)
	}
	n = 0
	r.eval(t, time.Minute)
	r.eval(t, 59*time.Second)
	ops.none(t)
	if al := r.mgr.Alerts(); len(al) != 1 || al[0].State != StateFiring || al[0].KeepFiringSince.IsZero() {
		t.Fatalf("alerts %+v", al)
	}
	r.eval(t, 61*time.Second) // 2m after the condition stopped
	if m := ops.webhook(t); m.Status != "resolved" {
		t.Fatalf("%+v", m)
	}
}

func TestRepeatInterval(t *testing.T) {
	ops := newRecorder(t)
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	rules := func(repeat string) string {
		return fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: g
    %s
    rules:
      - {alert: R, logs: x, window: 1m, threshold: '> 0'}
`, ops.srv.URL, repeat)
	}
	r.load(t, rules(""))
	r.eval(t, 0)
	ops.webhook(t)
	r.eval(t, 4*time.Hour-time.Minute)
	ops.none(t)
	r.eval(t, time.Minute) // the default repeat interval, 4h
	if m := ops.webhook(t); m.Status != "firing" || len(m.Alerts) != 1 {
		t.Fatalf("%+v", m)
	}
	r.load(t, rules("repeat_interval: 10m"))
	r.eval(t, 9*time.Minute)
	ops.none(t)
	r.eval(t, time.Minute)
	ops.webhook(t)
}

// A receiver that fails twice is retried with backoff, the failures counted.
func TestReceiverFailsTwiceThenSucceeds(t *testing.T) {
	ops := newRecorder(t)
	ops.fail.Store(2)
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.load(t, fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: g
    rules:
      - {alert: F, logs: x, window: 1m, threshold: '> 0'}
`, ops.srv.URL))
	r.eval(t, 0)
	if m := ops.webhook(t); m.Status != "firing" {
		t.Fatalf("%+v", m)
	}
	ops.none(t)
	if n := ops.requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	for name, want := range map[string]float64{"failed": 2, "retries": 2, "sent": 1} {
		var got float64
		switch name {
		case "failed":
			got = testutil.ToFloat64(r.nt.met.failed.WithLabelValues("ops"))
		case "retries":
			got = testutil.ToFloat64(r.nt.met.retries.WithLabelValues("ops"))
		case "sent":
			got = testutil.ToFloat64(r.nt.met.sent.WithLabelValues("ops", "webhook"))
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Counted in /metrics.
	if n, err := testutil.GatherAndCount(r.reg, "shiplog_notification_requests_failed_total"); err != nil || n != 1 {
		t.Errorf("gathered %d series, %v", n, err)
	}
	r.eval(t, time.Minute)
	ops.none(t) // delivered once is enough
}

// A slow receiver never delays evaluation nor the other receivers.
func TestSlowReceiver(t *testing.T) {
	slow, fast := newRecorder(t), newRecorder(t)
	slow.block = make(chan struct{})
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.load(t, fmt.Sprintf(`
receivers:
  - {name: slow, webhook_url: %s}
  - {name: fast, webhook_url: %s}
groups:
  - name: g
    rules:
      - {alert: S, logs: x, window: 1m, threshold: '> 0'}
`, slow.srv.URL, fast.srv.URL))
	done := make(chan struct{})
	go func() {
		for i := 0; i < 5; i++ {
			r.clock.Add(time.Minute)
			r.mgr.EvalAll(context.Background())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("evaluation waited for the slow receiver")
	}
	fast.webhook(t)
	if st := r.mgr.Rules().Rules[0]; st.LastEvaluation.IsZero() || st.Health != "ok" {
		t.Errorf("rule %+v", st)
	}
	close(slow.block)
	slow.webhook(t)
	r.nt.Flush()
	slow.none(t)
}

// A failing query keeps the alerts as they are and reports why.
func TestQueryError(t *testing.T) {
	n := 5.0
	fail := false
	ok := counts(&n, "", "", nil)
	eng := &fakeEngines{logs: func(ctx context.Context, q LogsQuery) ([]LogsGroup, error) {
		if fail {
			return nil, errors.New("disk on fire")
		}
		return ok(ctx, q)
	}}
	r := newRig(t, nil, newClock(), eng)
	r.load(t, `
groups:
  - name: g
    rules:
      - {alert: E, logs: x, window: 1m, threshold: '> 0'}
`)
	r.eval(t, 0)
	fail = true
	r.eval(t, time.Minute)
	st := r.mgr.Rules().Rules[0]
	if st.Health != "err" || st.LastError != "disk on fire" || st.State != "firing" || st.Alerts != 1 {
		t.Errorf("rule %+v", st)
	}
	if v := testutil.ToFloat64(r.mgr.met.failures); v != 1 {
		t.Errorf("failures %v", v)
	}
}

// PromQL rules: one alert per series, __name__ dropped, logs links from the
// labels; without an engine, health err.
func TestPromQLRule(t *testing.T) {
	ops := newRecorder(t)
	var gotExpr string
	var gotTS time.Time
	eng := &fakeEngines{query: func(_ context.Context, expr string, ts time.Time) ([]Sample, error) {
		gotExpr, gotTS = expr, ts
		return []Sample{
			{Labels: map[string]string{"__name__": "errors_total", "service": "api", "build_id": "b-9"}, Value: 7},
			{Labels: map[string]string{"job": "node"}, Value: 1},
		}, nil
	}}
	r := newRig(t, nil, newClock(), eng)
	rules := fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: prom
    rules:
      - alert: Prom
        expr: rate(errors_total[5m]) > 0
        annotations: {summary: '{{ $labels.service }} {{ $value }}'}
`, ops.srv.URL)
	r.load(t, rules)
	r.eval(t, 0)
	if gotExpr != "rate(errors_total[5m]) > 0" || !gotTS.Equal(r.clock.Now()) {
		t.Errorf("query %q at %v", gotExpr, gotTS)
	}
	m := ops.webhook(t)
	if len(m.Alerts) != 2 {
		t.Fatalf("%+v", m)
	}
	var api WebhookAlert
	for _, a := range m.Alerts {
		if _, ok := a.Labels["__name__"]; ok {
			t.Errorf("__name__ kept: %v", a.Labels)
		}
		if a.Labels["service"] == "api" {
			api = a
		}
	}
	if api.Value != 7 || api.Annotations["summary"] != "api 7" || api.Links.Build != testURL+"/builds/b-9" ||
		!strings.Contains(api.Links.Logs, url.QueryEscape(`service:"api" AND build_id:"b-9"`)) {
		t.Errorf("api alert %+v", api)
	}

	// No engine: the rule says so.
	r2 := newRig(t, nil, newClock(), &fakeEngines{})
	r2.mgr.opts.Query = nil
	r2.load(t, rules)
	r2.eval(t, 0)
	st := r2.mgr.Rules().Rules[0]
	if st.Health != "err" || st.LastError != "PromQL engine not available" || st.Type != "promql" {
		t.Errorf("rule %+v", st)
	}
}

func TestHistoryPaging(t *testing.T) {
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	r.load(t, `
groups:
  - name: g
    rules:
      - {alert: H, logs: x, window: 1m, threshold: '> 0'}
`)
	for i := 0; i < 3; i++ { // pending+firing, resolved
		n = 5
		r.eval(t, time.Minute)
		n = 0
		r.eval(t, time.Minute)
	}
	var all []Transition
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := r.mgr.History(cursor, 2)
		if err != nil || pages > 10 {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 9 {
		t.Fatalf("%d transitions, want 9", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.After(all[i-1].Time) {
			t.Errorf("not newest first: %v after %v", all[i].Time, all[i-1].Time)
		}
	}
	if all[0].To != "resolved" || all[8].To != "pending" {
		t.Errorf("first %+v last %+v", all[0], all[8])
	}
	if _, _, err := r.mgr.History("x", 2); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad cursor: %v", err)
	}
}
