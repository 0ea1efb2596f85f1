package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/model"
)

// group is a loaded rule group.
type group struct {
	name        string
	interval    time.Duration
	repeat      time.Duration
	queryOffset time.Duration
	limit       int
	rules       []*rule
	evalMu      sync.Mutex // one evaluation of the group at a time

	statMu   sync.Mutex // guards lastEval and evalDur
	lastEval time.Time
	evalDur  time.Duration
}

// rule is a loaded rule. Its state outlives reloads that keep the rule.
type rule struct {
	spec      Rule
	group     string
	key       string // in the StateStore
	groupKey  string // in notifications
	receivers []Receiver
	st        *ruleState
}

// ruleState is a rule's alerts and health. mu guards every field.
type ruleState struct {
	mu        sync.Mutex
	alerts    map[string]*Alert // by fingerprint
	health    string            // "", ok, err
	lastErr   string
	lastEval  time.Time
	evalDur   time.Duration
	persisted []byte // what the store holds
	// recorded is what a recording rule wrote last, by labels: a series
	// missing from the next evaluation gets a stale marker.
	recorded map[string][]model.Label
}

type savedState struct {
	Alerts []*Alert `json:"alerts"`
}

func (st *ruleState) encode() []byte {
	s := savedState{Alerts: make([]*Alert, 0, len(st.alerts))}
	for _, a := range st.alerts {
		s.Alerts = append(s.Alerts, a)
	}
	sort.Slice(s.Alerts, func(i, j int) bool { return s.Alerts[i].Fingerprint < s.Alerts[j].Fingerprint })
	b, _ := json.Marshal(s)
	return b
}

func (st *ruleState) decode(b []byte) error {
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, a := range s.Alerts {
		if a != nil && a.Fingerprint != "" {
			st.alerts[a.Fingerprint] = a
		}
	}
	return nil
}

func cloneAlert(a *Alert) Alert {
	c := *a
	c.Labels = copyMap(a.Labels)
	c.Annotations = copyMap(a.Annotations)
	return c
}

// result is one active series of an evaluation.
type result struct {
	labels       map[string]string
	value        float64
	links        Links
	wstart, wend time.Time
}

func (m *Manager) evalGroup(ctx context.Context, g *group) {
	g.evalMu.Lock()
	defer g.evalMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	ts := m.opts.Now()
	ctx, cancel := context.WithTimeout(ctx, g.interval)
	defer cancel()
	start := time.Now()
	for _, r := range g.rules {
		if r.spec.Record != "" {
			m.evalRecording(ctx, g, r, ts)
		} else {
			m.evalRule(ctx, g, r, ts)
		}
	}
	g.statMu.Lock()
	g.lastEval, g.evalDur = ts, time.Since(start)
	g.statMu.Unlock()
}

func (m *Manager) evalRule(ctx context.Context, g *group, r *rule, ts time.Time) {
	start := time.Now()
	res, err := m.query(ctx, g, r, ts)
	took := time.Since(start)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down or reloading: not the rule's fault
	}
	m.met.evals.Inc()
	m.met.evalSeconds.Observe(took.Seconds())
	st := r.st
	st.mu.Lock()
	st.lastEval, st.evalDur = ts, took
	if err != nil {
		m.met.failures.Inc()
		st.health, st.lastErr = "err", err.Error()
		st.mu.Unlock()
		if err != errNoPromQL {
			m.log.Warn("rule evaluation failed", "group", g.name, "rule", r.spec.Alert, "err", err)
		}
		return
	}
	st.health, st.lastErr = "ok", ""
	trans := m.update(ctx, r, st, res, ts)
	if n := activeAlerts(st); g.limit > 0 && n > g.limit {
		// As Prometheus: the rule fails and its alerts are dropped.
		clear(st.alerts)
		trans = nil
		m.met.failures.Inc()
		st.health, st.lastErr = "err", fmt.Sprintf("exceeded limit of %d with %d alerts", g.limit, n)
	}
	var enc []byte
	if b := st.encode(); string(b) != string(st.persisted) {
		enc, st.persisted = b, b
	}
	var send []Alert
	for _, a := range st.alerts {
		if a.State == StateFiring || a.Resolved() {
			send = append(send, cloneAlert(a))
		}
	}
	st.mu.Unlock()

	if enc != nil {
		m.putState(r.key, enc)
	}
	for _, t := range trans {
		b, _ := json.Marshal(t)
		if err := m.store.AppendAlertHistory(b); err != nil {
			m.log.Error("alert history not saved", "err", err)
		}
		m.log.Info("alert "+t.To, "group", t.Group, "rule", t.Rule, "labels", labelsString(t.Labels), "value", float64(t.Value))
	}
	if m.opts.Notify != nil && len(send) > 0 {
		sort.Slice(send, func(i, j int) bool { return send[i].Fingerprint < send[j].Fingerprint })
		m.opts.Notify(ctx, &Notification{GroupKey: r.groupKey, Group: g.name, Rule: r.spec.Alert,
			Receivers: r.receivers, RepeatInterval: g.repeat, Interval: g.interval, Summary: summary(&r.spec), Alerts: send})
	}
}

func activeAlerts(st *ruleState) int {
	n := 0
	for _, a := range st.alerts {
		if a.State != StateInactive {
			n++
		}
	}
	return n
}

// summary says what a rule checks, for notifications.
func summary(r *Rule) string {
	if r.Logs == "" {
		return r.Expr
	}
	what := "count"
	if r.Agg != "" {
		what = r.Agg
	}
	s := fmt.Sprintf("%s of %s over %s %s", what, r.Logs, model.FormatDuration(r.Window), r.Threshold)
	if len(r.By) > 0 {
		s += " by " + strings.Join(r.By, ", ")
	}
	return s
}

// query runs the rule's query and returns its active series.
func (m *Manager) query(ctx context.Context, g *group, r *rule, ts time.Time) ([]result, error) {
	s := &r.spec
	qts := ts.Add(-g.queryOffset)
	if s.Logs == "" {
		if m.opts.Query == nil {
			return nil, errNoPromQL
		}
		samples, err := m.opts.Query(ctx, s.Expr, qts)
		if err != nil {
			return nil, err
		}
		out := make([]result, 0, len(samples))
		for _, smp := range samples {
			lbls := copyMap(smp.Labels)
			if lbls == nil {
				lbls = map[string]string{}
			}
			delete(lbls, "__name__")
			out = append(out, result{labels: lbls, value: smp.Value, links: m.promLinks(lbls, ts)})
		}
		return out, nil
	}
	start := qts.Add(-s.Window)
	keep := func(v float64) bool { return !math.IsNaN(v) && s.Threshold.Match(v) }
	groups, err := m.logsGroups(ctx, s, start, qts, keep)
	if err != nil {
		return nil, err
	}
	var out []result
	for _, lg := range groups {
		v := lg.value(s)
		if math.IsNaN(v) || !s.Threshold.Match(v) {
			continue
		}
		lbls := copyMap(lg.Labels)
		if lbls == nil {
			lbls = map[string]string{}
		}
		q := lg.Query
		if q == "" {
			q = s.Logs
		}
		out = append(out, result{labels: lbls, value: v, wstart: start, wend: qts,
			links: Links{Logs: m.searchURL(q, start, qts), Build: m.pageURL("builds", lg.BuildID), Deploy: m.pageURL("deploys", lg.DeployID)}})
	}
	return out, nil
}

// logsGroups runs a logs rule's count (or aggregate) over [start, end).
func (m *Manager) logsGroups(ctx context.Context, s *Rule, start, end time.Time, keep func(float64) bool) ([]LogsGroup, error) {
	if m.opts.Logs == nil {
		return nil, fmt.Errorf("log queries are not available")
	}
	return m.opts.Logs(ctx, LogsQuery{Query: s.Logs, Start: start, End: end, By: s.By, Agg: s.Agg, Keep: keep})
}

func (m *Manager) searchURL(q string, start, end time.Time) string {
	// The window's end is exclusive; a second later includes its last line.
	return m.opts.ExternalURL + "/search?q=" + url.QueryEscape(q) +
		"&start=" + url.QueryEscape(start.UTC().Format(time.RFC3339)) +
		"&end=" + url.QueryEscape(end.UTC().Add(time.Second).Truncate(time.Second).Format(time.RFC3339))
}

func (m *Manager) pageURL(kind, id string) string {
	if id == "" {
		return ""
	}
	return m.opts.ExternalURL + "/" + kind + "/" + url.PathEscape(id)
}

// promLinks links a PromQL alert to the logs its labels name, if any.
func (m *Manager) promLinks(lbls map[string]string, ts time.Time) Links {
	var terms []string
	for _, f := range []string{"service", "host", "build_id", "deploy_id"} {
		if v := lbls[f]; v != "" {
			if t, ok := LabelTerm(f, v); ok {
				terms = append(terms, t)
			}
		}
	}
	var l Links
	if len(terms) > 0 {
		l.Logs = m.searchURL(strings.Join(terms, " AND "), ts.Add(-m.opts.PromQLLinkWindow), ts)
	}
	l.Build, l.Deploy = m.pageURL("builds", lbls["build_id"]), m.pageURL("deploys", lbls["deploy_id"])
	return l
}

// LabelTerm is the query term field:"value", or false when value holds a
// quote or backslash (the query language has no escape inside phrases).
func LabelTerm(field, value string) (string, bool) {
	if strings.ContainsAny(value, `"\`) {
		return "", false
	}
	return field + `:"` + value + `"`, true
}

// update moves the rule's alerts through their states, as Prometheus'
// AlertingRule.Eval does, and returns the transitions. st.mu is held.
func (m *Manager) update(ctx context.Context, r *rule, st *ruleState, res []result, ts time.Time) []Transition {
	s := &r.spec
	env := m.templateEnv(ctx, ts)
	var trans []Transition
	note := func(a *Alert, from, to string) {
		trans = append(trans, Transition{Time: ts, Group: r.group, Rule: s.Alert, From: from, To: to,
			Labels: copyMap(a.Labels), Value: a.Value, Fingerprint: a.Fingerprint, Links: a.Links})
	}
	seen := map[string]bool{}
	for _, x := range res {
		lbls := copyMap(x.labels)
		for k, v := range s.Labels {
			lbls[k] = env.expand(k, v, x.labels, x.value)
		}
		lbls["alertname"] = s.Alert
		ann := make(map[string]string, len(s.Annotations))
		for k, v := range s.Annotations {
			ann[k] = env.expand(k, v, lbls, x.value)
		}
		fp := Fingerprint(lbls)
		if seen[fp] {
			continue // two series with the same labels after templating: keep the first
		}
		seen[fp] = true
		if a, ok := st.alerts[fp]; ok && a.State != StateInactive {
			a.Value, a.Annotations, a.Links, a.LastSeenAt = Float(x.value), ann, x.links, ts
			a.WindowStart, a.WindowEnd = x.wstart, x.wend
			a.KeepFiringSince = time.Time{}
			continue
		}
		a := &Alert{Group: r.group, Rule: s.Alert, State: StatePending, Labels: lbls, Annotations: ann, Value: Float(x.value),
			Fingerprint: fp, ActiveAt: ts, LastSeenAt: ts, Links: x.links, WindowStart: x.wstart, WindowEnd: x.wend}
		st.alerts[fp] = a
		note(a, "inactive", "pending")
	}
	fps := make([]string, 0, len(st.alerts))
	for fp := range st.alerts {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	for _, fp := range fps {
		a := st.alerts[fp]
		if !seen[fp] {
			switch a.State {
			case StatePending:
				delete(st.alerts, fp)
				note(a, "pending", "inactive")
			case StateFiring:
				if s.KeepFiringFor > 0 {
					if a.KeepFiringSince.IsZero() {
						a.KeepFiringSince = ts
					}
					if ts.Sub(a.KeepFiringSince) < s.KeepFiringFor {
						continue
					}
				}
				a.State, a.ResolvedAt, a.KeepFiringSince = StateInactive, ts, time.Time{}
				note(a, "firing", "resolved")
			default:
				if ts.Sub(a.ResolvedAt) >= m.opts.ResolvedRetention {
					delete(st.alerts, fp)
				}
			}
			continue
		}
		if a.State == StatePending && ts.Sub(a.ActiveAt) >= s.For {
			a.State, a.FiredAt = StateFiring, ts
			note(a, "pending", "firing")
		}
	}
	return trans
}

func labelsString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}
