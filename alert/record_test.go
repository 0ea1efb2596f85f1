package alert

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"

	"github.com/shiplog/shiplog/model"
)

// appended collects what recording rules write.
type appended struct {
	mu     sync.Mutex
	series []model.Series
}

func (a *appended) append(_ context.Context, s []model.Series) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.series = append(a.series, s...)
	return nil
}

// take returns the series written since the last take, as "labels@t=v" lines.
func (a *appended) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, s := range a.series {
		for _, smp := range s.Samples {
			v := fmt.Sprint(smp.V)
			if value.IsStaleNaN(smp.V) {
				v = "stale"
			}
			out = append(out, fmt.Sprintf("%s@%d=%s", model.LabelsString(s.Labels), smp.T, v))
		}
	}
	a.series = nil
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Recording rules write their result at the query's time (query_offset
// back), named by record: with the rule's labels (an empty one removes a
// label), and a stale marker for a series that went away; past the group's
// limit nothing is written and the rule fails.
func TestRecordingRules(t *testing.T) {
	var out appended
	var mu sync.Mutex
	samples := []Sample{
		{Labels: map[string]string{"__name__": "http_requests_total", "job": "api", "instance": "a:1"}, Value: 3},
		{Labels: map[string]string{"job": "web", "instance": "b:1"}, Value: 4},
	}
	var gotTS time.Time
	eng := &fakeEngines{append: out.append,
		query: func(_ context.Context, expr string, ts time.Time) ([]Sample, error) {
			mu.Lock()
			defer mu.Unlock()
			gotTS = ts
			return samples, nil
		},
		logs: func(_ context.Context, q LogsQuery) ([]LogsGroup, error) {
			if q.End.Sub(q.Start) != 30*time.Second || strings.Join(q.By, ",") != "service,http.status" {
				return nil, fmt.Errorf("query %+v", q)
			}
			return []LogsGroup{{Labels: map[string]string{"service": "api", "http.status": "500"}, Count: 20},
				{Labels: map[string]string{"service": "db", "http.status": ""}, Count: 20000}}, nil
		}}
	r := newRig(t, nil, newClock(), eng)
	f, probs := Parse([]byte(`
groups:
  - name: rec
    interval: 30s
    query_offset: 1m
    limit: 2
    labels: {team: infra}
    rules:
      - record: job:requests:sum
        expr: sum by (job, instance) (http_requests_total)
        labels: {instance: '', source: rule}
      - record: errors:by_service
        logs: level:error
        by: [service, http.status]
`), ParseOptions{CheckBy: func(string) error { return nil }})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	r.mgr.Apply(f)
	r.eval(t, 0)
	qts := r.clock.Now().Add(-time.Minute)
	if !gotTS.Equal(qts) {
		t.Errorf("queried at %v, want %v (query_offset)", gotTS, qts)
	}
	ms := qts.UnixMilli()
	want := []string{
		fmt.Sprintf(`errors:by_service{http_status="500", service="api", team="infra"}@%d=20`, ms),
		fmt.Sprintf(`errors:by_service{service="db", team="infra"}@%d=20000`, ms),
		fmt.Sprintf(`job:requests:sum{job="api", source="rule", team="infra"}@%d=3`, ms),
		fmt.Sprintf(`job:requests:sum{job="web", source="rule", team="infra"}@%d=4`, ms),
	}
	if got := out.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("wrote:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// web goes away: a stale marker.
	mu.Lock()
	samples = samples[:1]
	mu.Unlock()
	r.eval(t, 30*time.Second)
	ms = r.clock.Now().Add(-time.Minute).UnixMilli()
	got := strings.Join(out.take(), "\n")
	if !strings.Contains(got, fmt.Sprintf(`job:requests:sum{job="web", source="rule", team="infra"}@%d=stale`, ms)) ||
		!strings.Contains(got, fmt.Sprintf(`job:requests:sum{job="api", source="rule", team="infra"}@%d=3`, ms)) {
		t.Errorf("wrote:\n%s", got)
	}

	// Three series over the limit of 2: nothing written, the rule fails.
	mu.Lock()
	samples = []Sample{{Labels: map[string]string{"job": "a"}}, {Labels: map[string]string{"job": "b"}}, {Labels: map[string]string{"job": "c"}}}
	mu.Unlock()
	r.eval(t, 30*time.Second)
	for _, l := range out.take() {
		if strings.HasPrefix(l, "job:") {
			t.Errorf("written past the limit: %s", l)
		}
	}
	st := r.mgr.Rules()
	if rs := st.Rules[0]; rs.Health != "err" || rs.LastError != "exceeded limit of 2 with 3 series" || rs.Kind != "recording" || rs.Name != "job:requests:sum" {
		t.Errorf("rule %+v", rs)
	}
	if g := st.Groups[0]; g.Limit != 2 || g.QueryOffset != "1m" || g.LastEvaluation.IsZero() {
		t.Errorf("group %+v", g)
	}

	// Two series with one labelset once the rule's labels apply: an error.
	mu.Lock()
	samples = []Sample{{Labels: map[string]string{"job": "a", "instance": "1"}}, {Labels: map[string]string{"job": "a", "instance": "2"}}}
	mu.Unlock()
	r.eval(t, 30*time.Second)
	if rs := r.mgr.Rules().Rules[0]; rs.Health != "err" || !strings.Contains(rs.LastError, "same labelset") {
		t.Errorf("rule %+v", rs)
	}
}

// An alerting rule past its group's limit fails and drops its alerts.
func TestAlertLimit(t *testing.T) {
	eng := &fakeEngines{query: func(context.Context, string, time.Time) ([]Sample, error) {
		return []Sample{{Labels: map[string]string{"i": "1"}, Value: 1}, {Labels: map[string]string{"i": "2"}, Value: 1}}, nil
	}}
	r := newRig(t, nil, newClock(), eng)
	r.load(t, "groups: [{name: g, limit: 1, rules: [{alert: A, expr: up == 0}]}]\n")
	r.eval(t, 0)
	if al := r.mgr.Alerts(); len(al) != 0 {
		t.Errorf("alerts past the limit: %+v", al)
	}
	if rs := r.mgr.Rules().Rules[0]; rs.Health != "err" || rs.LastError != "exceeded limit of 1 with 2 alerts" {
		t.Errorf("rule %+v", rs)
	}
}

// Prometheus' template functions and variables work in labels and annotations.
func TestPrometheusTemplateFunctions(t *testing.T) {
	eng := &fakeEngines{query: func(_ context.Context, expr string, ts time.Time) ([]Sample, error) {
		switch expr {
		case "up == 0":
			return []Sample{{Labels: map[string]string{"instance": "web-1.example.com:9100", "job": "node"}, Value: 1234567}}, nil
		case `count(up{job="node"})`:
			return []Sample{{Labels: map[string]string{}, Value: 3}}, nil
		case "node_info":
			return []Sample{{Labels: map[string]string{"__name__": "node_info", "os": "linux"}, Value: 1}}, nil
		}
		return nil, fmt.Errorf("unexpected query %q", expr)
	}}
	r := newRig(t, nil, newClock(), eng)
	r.mgr.opts.ExternalLabels = map[string]string{"cluster": "eu-1"}
	r.load(t, `
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        labels:
          host: '{{ $labels.instance | stripPort | stripDomain }}'
        annotations:
          a1024: '{{ $value | humanize1024 }}'
          ts: '{{ 1700000000 | humanizeTimestamp }}'
          totime: '{{ (1700000000 | toTime).Year }}'
          dur: '{{ "1h30m" | parseDuration }}'
          html: '{{ "<b>" | safeHtml }}'
          url: '{{ externalURL }} {{ pathPrefix }}'
          args: '{{ with args 1 "x" }}{{ .arg0 }}-{{ .arg1 }}{{ end }}'
          ext: '{{ $externalLabels.cluster }}'
          q: '{{ with printf "count(up{job=%q})" $labels.job | query }}{{ . | first | value }}{{ end }}'
          qlabel: '{{ with query "node_info" }}{{ . | first | label "os" }}{{ end }}'
          pct: '{{ 0.256 | humanizePercentage }}'
          title: '{{ "hello world" | title }}'
`)
	r.eval(t, 0)
	al := r.mgr.Alerts()
	if len(al) != 1 {
		t.Fatalf("alerts %+v", al)
	}
	a := al[0]
	if a.Labels["host"] != "web-1" {
		t.Errorf("host label %q", a.Labels["host"])
	}
	for k, want := range map[string]string{
		"a1024":  "1.177Mi",
		"ts":     "2023-11-14 22:13:20 +0000 UTC",
		"totime": "2023",
		"dur":    "5400",
		"html":   "<b>",
		"url":    testURL + " ",
		"args":   "1-x",
		"ext":    "eu-1",
		"q":      "3",
		"qlabel": "linux",
		"pct":    "25.6%",
		"title":  "Hello World",
	} {
		if got := a.Annotations[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
