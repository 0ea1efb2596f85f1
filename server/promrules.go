package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
)

// GET /api/v1/rules and GET /api/v1/alerts: the loaded rules and the active
// alerts in the shapes of Prometheus' HTTP API (prometheus/web/api/v1
// RuleDiscovery and AlertDiscovery), for Grafana and other clients. Logs
// rules appear as alerting or recording rules whose query is the log query.
// A server without --rules answers empty lists, as Prometheus with no rules.

// promAlert is Prometheus' Alert.
type promAlert struct {
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	State           string            `json:"state"`
	ActiveAt        *time.Time        `json:"activeAt,omitempty"`
	KeepFiringSince *time.Time        `json:"keepFiringSince,omitempty"`
	Value           string            `json:"value"`
}

// promRule is Prometheus' AlertingRule or RecordingRule (by Type).
type promRule struct {
	State          string            `json:"state,omitempty"`
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Duration       *float64          `json:"duration,omitempty"`
	KeepFiringFor  *float64          `json:"keepFiringFor,omitempty"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	Alerts         *[]promAlert      `json:"alerts,omitempty"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError,omitempty"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
	Type           string            `json:"type"` // alerting or recording
}

type promRuleGroup struct {
	Name           string     `json:"name"`
	File           string     `json:"file"`
	Rules          []promRule `json:"rules"`
	Interval       float64    `json:"interval"`
	Limit          int        `json:"limit"`
	EvaluationTime float64    `json:"evaluationTime"`
	LastEvaluation time.Time  `json:"lastEvaluation"`
}

// maxRuleFilters bounds the values of each repeated filter parameter.
const maxRuleFilters = 1000

func promRulesHandlers(rt *router, core Core) {
	rt.handleFunc("GET /api/v1/alerts", ScopeQuery, func(w http.ResponseWriter, _ *http.Request) {
		out := []promAlert{}
		if core.Alerts != nil {
			for _, a := range core.Alerts.Alerts() {
				out = append(out, toPromAlert(&a))
			}
		}
		writePromJSON(w, struct {
			Alerts []promAlert `json:"alerts"`
		}{out})
	})
	rt.handleFunc("GET /api/v1/rules", ScopeQuery, func(w http.ResponseWriter, r *http.Request) {
		groups, perr := promRuleGroups(core, r)
		if perr != nil {
			writePromError(w, perr)
			return
		}
		writePromJSON(w, struct {
			Groups []promRuleGroup `json:"groups"`
		}{groups})
	})
}

func writePromJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writePromError(w, &promError{typ: "internal", code: http.StatusInternalServerError, err: err})
		return
	}
	writePromData(w, b, nil, nil)
}

// ruleFilter is what /api/v1/rules was asked for.
type ruleFilter struct {
	typ                  string // "", alert or record
	names, groups, files map[string]bool
	matchers             [][]*labels.Matcher
	excludeAlerts        bool
}

func parseRuleFilter(r *http.Request) (*ruleFilter, *promError) {
	if err := r.ParseForm(); err != nil {
		return nil, promBadData(fmt.Errorf("error parsing form values: %w", err))
	}
	f := &ruleFilter{typ: strings.ToLower(r.Form.Get("type"))}
	if f.typ != "" && f.typ != "alert" && f.typ != "record" {
		return nil, invalidParam("type", fmt.Errorf("not supported value %q", f.typ))
	}
	set := func(name string) (map[string]bool, *promError) {
		vs := r.Form[name]
		if len(vs) > maxRuleFilters {
			return nil, invalidParam(name, fmt.Errorf("%d values, at most %d", len(vs), maxRuleFilters))
		}
		if len(vs) == 0 {
			return nil, nil
		}
		m := make(map[string]bool, len(vs))
		for _, v := range vs {
			m[v] = true
		}
		return m, nil
	}
	var perr *promError
	if f.names, perr = set("rule_name[]"); perr != nil {
		return nil, perr
	}
	if f.groups, perr = set("rule_group[]"); perr != nil {
		return nil, perr
	}
	if f.files, perr = set("file[]"); perr != nil {
		return nil, perr
	}
	if ms := r.Form["match[]"]; len(ms) > 0 {
		if len(ms) > maxRuleFilters {
			return nil, invalidParam("match[]", fmt.Errorf("%d values, at most %d", len(ms), maxRuleFilters))
		}
		sets, err := parser.NewParser(parser.Options{}).ParseMetricSelectors(ms)
		if err != nil {
			return nil, invalidParam("match[]", err)
		}
		f.matchers = sets
	}
	if s := r.Form.Get("exclude_alerts"); s != "" {
		b, err := strconv.ParseBool(strings.ToLower(s))
		if err != nil {
			return nil, invalidParam("exclude_alerts", fmt.Errorf("error converting exclude_alerts: %w", err))
		}
		f.excludeAlerts = b
	}
	return f, nil
}

// matches reports whether a rule's labels pass match[] (any one set).
func (f *ruleFilter) matches(lbls map[string]string) bool {
	if len(f.matchers) == 0 {
		return true
	}
outer:
	for _, set := range f.matchers {
		for _, m := range set {
			if !m.Matches(lbls[m.Name]) {
				continue outer
			}
		}
		return true
	}
	return false
}

func promRuleGroups(core Core, r *http.Request) ([]promRuleGroup, *promError) {
	f, perr := parseRuleFilter(r)
	if perr != nil {
		return nil, perr
	}
	out := []promRuleGroup{}
	if core.Alerts == nil {
		return out, nil
	}
	st := core.Alerts.Rules()
	byGroup := map[string][]alert.RuleStatus{}
	for _, rs := range st.Rules {
		byGroup[rs.Group] = append(byGroup[rs.Group], rs)
	}
	for _, g := range st.Groups {
		if (f.groups != nil && !f.groups[g.Name]) || (f.files != nil && !f.files[st.File]) {
			continue
		}
		pg := promRuleGroup{Name: g.Name, File: st.File, Rules: []promRule{}, Interval: g.IntervalSeconds, Limit: g.Limit,
			EvaluationTime: g.EvaluationSeconds, LastEvaluation: g.LastEvaluation}
		for _, rs := range byGroup[g.Name] {
			recording := rs.Kind == "recording"
			if (f.typ == "alert" && recording) || (f.typ == "record" && !recording) ||
				(f.names != nil && !f.names[rs.Name]) || !f.matches(rs.Labels) {
				continue
			}
			pg.Rules = append(pg.Rules, toPromRule(&rs, f.excludeAlerts))
		}
		if len(pg.Rules) > 0 {
			out = append(out, pg)
		}
	}
	return out, nil
}

func toPromRule(rs *alert.RuleStatus, excludeAlerts bool) promRule {
	pr := promRule{Name: rs.Name, Query: rs.Query, Labels: nonNilMap(rs.Labels), Health: rs.Health,
		LastError: rs.LastError, EvaluationTime: rs.EvaluationSeconds, LastEvaluation: rs.LastEvaluation, Type: "recording"}
	if rs.Kind == "recording" {
		return pr
	}
	pr.Type, pr.State, pr.Annotations = "alerting", rs.State, nonNilMap(rs.Annotations)
	forD, _ := model.ParseDuration(rs.For)
	keep, _ := model.ParseDuration(rs.KeepFiringFor)
	d, k := forD.Seconds(), keep.Seconds()
	pr.Duration, pr.KeepFiringFor = &d, &k
	if !excludeAlerts {
		list := make([]promAlert, 0, len(rs.ActiveAlerts))
		for i := range rs.ActiveAlerts {
			list = append(list, toPromAlert(&rs.ActiveAlerts[i]))
		}
		pr.Alerts = &list
	}
	return pr
}

func toPromAlert(a *alert.Alert) promAlert {
	activeAt := a.ActiveAt
	pa := promAlert{Labels: nonNilMap(a.Labels), Annotations: nonNilMap(a.Annotations), State: a.State.String(),
		ActiveAt: &activeAt, Value: strconv.FormatFloat(float64(a.Value), 'e', -1, 64)}
	if !a.KeepFiringSince.IsZero() {
		k := a.KeepFiringSince
		pa.KeepFiringSince = &k
	}
	return pa
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
