package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// Options configure a Manager.
type Options struct {
	// Now is the clock of evaluations (default time.Now).
	Now func() time.Time
	// Logs counts log lines for logs: rules (nil: they fail).
	Logs LogsQueryFunc
	// Query runs PromQL for expr: rules (nil: they report "PromQL engine not available").
	Query QueryFunc
	// Notify is handed every rule's alerts after each evaluation (nil: none).
	Notify NotifyFunc
	// Append writes recording rules' series into the metric store (nil:
	// recording rules report the store missing).
	Append AppendFunc
	// ExternalLabels are $externalLabels in templates (Prometheus'
	// global external_labels).
	ExternalLabels map[string]string
	// Store keeps state across restarts (nil: in memory only).
	Store StateStore
	// ExternalURL is the web UI's address, for links (no trailing slash).
	ExternalURL string
	// DefaultInterval is a group's interval when it sets none.
	DefaultInterval time.Duration
	// RepeatInterval is how often a firing alert is notified again, when its
	// group sets no repeat_interval.
	RepeatInterval time.Duration
	// ResolvedRetention is how long a resolved alert is kept (and handed to
	// Notify) after it resolves.
	ResolvedRetention time.Duration
	// PromQLLinkWindow is the range of the logs link of a PromQL alert whose
	// labels name a service, host, build or deploy.
	PromQLLinkWindow time.Duration
	// Parse adds checks to rules files.
	Parse ParseOptions
	// Metrics, when set, are the metrics the Manager records (registered
	// once by NewMetrics, shared by the managers built one after another);
	// NewManager's reg is then not used.
	Metrics *Metrics
}

// DefaultOptions returns the Manager's defaults.
func DefaultOptions() Options {
	return Options{
		Now:               time.Now,
		DefaultInterval:   time.Minute,
		RepeatInterval:    4 * time.Hour,
		ResolvedRetention: 15 * time.Minute,
		PromQLLinkWindow:  15 * time.Minute,
	}
}

// errNoPromQL is the health of PromQL rules on a server without a metrics engine.
var errNoPromQL = errors.New("PromQL engine not available")

// Manager loads rules, evaluates them and keeps their alerts.
type Manager struct {
	opts   Options
	extURL *url.URL // opts.ExternalURL, parsed
	log    *slog.Logger
	met    *managerMetrics
	store  StateStore

	mu        sync.Mutex
	file      string
	groups    []*group
	receivers []Receiver
	reload    reloadStatus
	loaded    bool              // a file has loaded once
	restored  map[string][]byte // rule states read at start, until the first Apply
	states    map[string]*ruleState
	runCtx    context.Context    // set while Run runs
	stopLoops context.CancelFunc // of the current groups' loops
	loops     sync.WaitGroup
}

type reloadStatus struct {
	done       bool
	successful bool
	at         time.Time
	err        string
	problems   []Problem
}

// Key prefixes of what the Manager and Notifier keep in the StateStore.
const (
	keyRule  = "rule/"  // rule/<group>/<alert and labels>: the rule's alerts
	keyNflog = "nflog/" // nflog/<receiver>/<group key>: what the receiver was told
)

// NewManager returns a Manager with no rules, reading saved rule states from
// opts.Store (they are matched to rules by Apply).
func NewManager(log *slog.Logger, reg prometheus.Registerer, opts Options) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultOptions()
	if opts.Now == nil {
		opts.Now = d.Now
	}
	if opts.DefaultInterval <= 0 {
		opts.DefaultInterval = d.DefaultInterval
	}
	if opts.RepeatInterval <= 0 {
		opts.RepeatInterval = d.RepeatInterval
	}
	if opts.ResolvedRetention <= 0 {
		opts.ResolvedRetention = d.ResolvedRetention
	}
	if opts.PromQLLinkWindow <= 0 {
		opts.PromQLLinkWindow = d.PromQLLinkWindow
	}
	opts.ExternalURL = strings.TrimRight(opts.ExternalURL, "/")
	extURL, err := url.Parse(opts.ExternalURL)
	if err != nil {
		return nil, fmt.Errorf("external URL %q: %w", opts.ExternalURL, err)
	}
	m := &Manager{opts: opts, extURL: extURL, log: log, store: opts.Store, states: map[string]*ruleState{}, restored: map[string][]byte{}}
	if m.store == nil {
		m.store = newMemStore()
	}
	all, err := m.store.AlertStates()
	if err != nil {
		return nil, fmt.Errorf("read alert states: %w", err)
	}
	for k, v := range all {
		if strings.HasPrefix(k, keyRule) {
			m.restored[k] = v
		}
	}
	if opts.Metrics != nil {
		m.met = opts.Metrics.manager
		opts.Metrics.current.Store(m)
	} else {
		m.met = newManagerMetrics(reg, m.Alerts)
	}
	return m, nil
}

// LoadFile loads the rules file at path and remembers it for Reload.
func (m *Manager) LoadFile(path string) error {
	m.mu.Lock()
	m.file = path
	m.mu.Unlock()
	return m.Reload()
}

// Reload reads the rules file again. A file that does not load leaves the
// previous rules running; the error says why (a *ProblemsError) and is shown
// by Rules and the metric shiplog_rules_last_reload_successful.
func (m *Manager) Reload() error {
	m.mu.Lock()
	path := m.file
	m.mu.Unlock()
	if path == "" {
		return fmt.Errorf("%w: the server has no rules file (--rules)", ErrInvalidRules)
	}
	f, err := LoadFile(path, m.opts.Parse)
	now := m.opts.Now()
	if err != nil {
		var pe *ProblemsError
		var probs []Problem
		if errors.As(err, &pe) {
			probs = pe.Problems
		}
		m.mu.Lock()
		loaded := m.loaded
		m.reload = reloadStatus{done: true, at: now, err: err.Error(), problems: probs}
		m.mu.Unlock()
		m.met.reloadOK.Set(0)
		msg := "rules file did not load"
		if loaded {
			msg += "; the previous rules keep running"
		}
		m.log.Error(msg, "file", path, "err", err)
		return err
	}
	m.Apply(f)
	m.mu.Lock()
	m.reload = reloadStatus{done: true, successful: true, at: now}
	m.loaded = true
	m.mu.Unlock()
	m.met.reloadOK.Set(1)
	m.met.reloadTime.Set(float64(now.UnixNano()) / 1e9)
	n := 0
	for _, g := range f.Groups {
		n += len(g.Rules)
	}
	m.log.Info("rules loaded", "file", path, "groups", len(f.Groups), "rules", n, "receivers", len(f.Receivers))
	return nil
}

// Apply replaces the rules with f's. The alerts of a rule that stays (same
// group, alert name and labels) carry over; those of removed rules are dropped.
func (m *Manager) Apply(f *File) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := map[string]Receiver{}
	for _, r := range f.Receivers {
		byName[r.Name] = r
	}
	keep := map[string]bool{}
	var groups []*group
	for _, gs := range f.Groups {
		g := &group{name: gs.Name, interval: gs.Interval, repeat: gs.RepeatInterval, queryOffset: gs.QueryOffset, limit: gs.Limit}
		if g.interval <= 0 {
			g.interval = m.opts.DefaultInterval
		}
		if g.repeat <= 0 {
			g.repeat = m.opts.RepeatInterval
		}
		for _, rs := range gs.Rules {
			r := &rule{spec: rs, group: gs.Name}
			r.key = keyRule + gs.Name + "/" + ruleID(&rs)
			for n := 2; keep[r.key]; n++ { // the same rule twice in a group, as Prometheus allows
				r.key = keyRule + gs.Name + "/" + ruleID(&rs) + "\x00#" + strconv.Itoa(n)
			}
			r.groupKey = groupKey(gs.Name, &rs)
			if rs.Receivers == nil {
				r.receivers = append([]Receiver(nil), f.Receivers...)
			} else {
				for _, n := range rs.Receivers {
					if x, ok := byName[n]; ok {
						r.receivers = append(r.receivers, x)
					}
				}
			}
			st := m.states[r.key]
			if st == nil {
				st = &ruleState{alerts: map[string]*Alert{}}
				if b, ok := m.restored[r.key]; ok {
					if err := st.decode(b); err != nil {
						m.log.Warn("alert state not restored", "rule", rs.Alert, "group", gs.Name, "err", err)
					}
					st.persisted = b
				}
				m.states[r.key] = st
			}
			r.st = st
			keep[r.key] = true
			g.rules = append(g.rules, r)
		}
		groups = append(groups, g)
	}
	for k := range m.states {
		if !keep[k] {
			delete(m.states, k)
			m.putState(k, nil)
		}
	}
	for k := range m.restored {
		if !keep[k] {
			m.putState(k, nil)
		}
	}
	m.restored = nil
	m.groups, m.receivers = groups, f.Receivers
	if m.runCtx != nil {
		m.stopLoops()
		m.startLoopsLocked()
	}
	m.met.rules.Set(float64(len(keep)))
}

func (m *Manager) putState(key string, v []byte) {
	if err := m.store.PutAlertState(key, v); err != nil {
		m.log.Error("alert state not saved", "key", key, "err", err)
	}
}

// groupKey names a rule in notifications, as Alertmanager's group keys do.
func groupKey(g string, r *Rule) string {
	keys := []string{"alertname", "rule_group"}
	vals := map[string]string{"alertname": r.Alert, "rule_group": g}
	for k, v := range r.Labels {
		if k != "alertname" && k != "rule_group" && !strings.Contains(v, "{{") {
			keys = append(keys, k)
			vals[k] = v
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(vals[k])
	}
	return "{}:{" + strings.Join(parts, ", ") + "}"
}

// Run evaluates every group on its interval until ctx is done, then waits for
// evaluations in flight. Apply while running restarts the loops.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	m.startLoopsLocked()
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	m.stopLoops()
	m.runCtx = nil
	m.mu.Unlock()
	m.loops.Wait()
}

func (m *Manager) startLoopsLocked() {
	ctx, cancel := context.WithCancel(m.runCtx)
	m.stopLoops = cancel
	for _, g := range m.groups {
		m.loops.Add(1)
		go func(g *group) {
			defer m.loops.Done()
			m.evalGroup(ctx, g)
			t := time.NewTicker(g.interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					m.evalGroup(ctx, g)
				}
			}
		}(g)
	}
}

// EvalAll evaluates every group once at Options.Now(), in order, and returns
// when all are done: the manual trigger of tests.
func (m *Manager) EvalAll(ctx context.Context) {
	m.mu.Lock()
	groups := m.groups
	m.mu.Unlock()
	for _, g := range groups {
		m.evalGroup(ctx, g)
	}
}

// Alerts returns the pending and firing alerts, by group, rule and labels.
func (m *Manager) Alerts() []Alert {
	var out []Alert
	for _, r := range m.rules() {
		r.st.mu.Lock()
		for _, a := range r.st.alerts {
			if a.State != StateInactive {
				out = append(out, cloneAlert(a))
			}
		}
		r.st.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Fingerprint < b.Fingerprint
	})
	return out
}

func (m *Manager) rules() []*rule {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*rule
	for _, g := range m.groups {
		out = append(out, g.rules...)
	}
	return out
}

// RuleStatus describes one loaded rule.
type RuleStatus struct {
	Group             string            `json:"group"`
	Name              string            `json:"name"`
	Kind              string            `json:"kind"` // alerting or recording
	Type              string            `json:"type"` // logs or promql
	Agg               string            `json:"agg,omitempty"`
	Query             string            `json:"query"`
	Window            string            `json:"window,omitempty"`
	Threshold         string            `json:"threshold,omitempty"`
	By                []string          `json:"by,omitempty"`
	For               string            `json:"for"`
	KeepFiringFor     string            `json:"keep_firing_for,omitempty"`
	Interval          string            `json:"interval"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	Receivers         []string          `json:"receivers"`
	State             string            `json:"state"`  // firing, pending or inactive: the highest of its alerts
	Health            string            `json:"health"` // ok, err, or unknown before the first evaluation
	LastError         string            `json:"last_error,omitempty"`
	LastEvaluation    time.Time         `json:"last_evaluation,omitzero"`
	EvaluationSeconds float64           `json:"evaluation_seconds"`
	Alerts            int               `json:"alerts"` // pending and firing
	// ActiveAlerts are the pending and firing alerts (for /api/v1/rules).
	ActiveAlerts []Alert `json:"-"`
}

// GroupStatus describes one loaded group.
type GroupStatus struct {
	Name              string    `json:"name"`
	Interval          string    `json:"interval"`
	QueryOffset       string    `json:"query_offset,omitempty"`
	Limit             int       `json:"limit,omitempty"`
	LastEvaluation    time.Time `json:"last_evaluation,omitzero"`
	EvaluationSeconds float64   `json:"evaluation_seconds"`
	IntervalSeconds   float64   `json:"-"`
}

// RulesStatus is the loaded rules and how the last (re)load went.
type RulesStatus struct {
	Rules                []RuleStatus  `json:"rules"`
	Groups               []GroupStatus `json:"groups"`
	File                 string        `json:"file"`
	LastReloadSuccessful bool          `json:"last_reload_successful"`
	LastReloadTime       time.Time     `json:"last_reload_time,omitzero"`
	LastReloadError      string        `json:"last_reload_error,omitempty"`
	Problems             []string      `json:"problems,omitempty"`
	Receivers            []struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"receivers"`
}

// Rules returns every loaded rule with its health, and the reload status.
func (m *Manager) Rules() RulesStatus {
	m.mu.Lock()
	out := RulesStatus{File: m.file, LastReloadSuccessful: m.reload.successful || !m.reload.done,
		LastReloadTime: m.reload.at, LastReloadError: m.reload.err, Rules: []RuleStatus{}, Groups: []GroupStatus{}}
	for _, p := range m.reload.problems {
		out.Problems = append(out.Problems, p.String())
	}
	for _, r := range m.receivers {
		out.Receivers = append(out.Receivers, struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		}{r.Name, r.Kind()})
	}
	groups := m.groups
	m.mu.Unlock()
	for _, g := range groups {
		g.statMu.Lock()
		gs := GroupStatus{Name: g.name, Interval: model.FormatDuration(g.interval), Limit: g.limit, LastEvaluation: g.lastEval,
			EvaluationSeconds: g.evalDur.Seconds(), IntervalSeconds: g.interval.Seconds()}
		g.statMu.Unlock()
		if g.queryOffset > 0 {
			gs.QueryOffset = model.FormatDuration(g.queryOffset)
		}
		out.Groups = append(out.Groups, gs)
		for _, r := range g.rules {
			out.Rules = append(out.Rules, ruleStatus(g, r))
		}
	}
	return out
}

func ruleStatus(g *group, r *rule) RuleStatus {
	s := &r.spec
	rs := RuleStatus{Group: g.name, Name: s.Name(), Kind: "alerting", Type: s.Kind(), Query: s.Expr, For: model.FormatDuration(s.For),
		Interval: model.FormatDuration(g.interval), Labels: s.Labels, Annotations: s.Annotations, Receivers: []string{}, By: s.By, Agg: s.Agg}
	if s.Record != "" {
		rs.Kind, rs.For = "recording", ""
	}
	if s.Logs != "" {
		rs.Query, rs.Threshold = s.Logs, s.Threshold.String()
		if s.Window > 0 {
			rs.Window = model.FormatDuration(s.Window)
		}
	}
	if s.KeepFiringFor > 0 {
		rs.KeepFiringFor = model.FormatDuration(s.KeepFiringFor)
	}
	if s.Record == "" {
		for _, x := range r.receivers {
			rs.Receivers = append(rs.Receivers, x.Name)
		}
	}
	r.st.mu.Lock()
	rs.Health, rs.LastError, rs.LastEvaluation = r.st.health, r.st.lastErr, r.st.lastEval
	rs.EvaluationSeconds = r.st.evalDur.Seconds()
	state := StateInactive
	for _, a := range r.st.alerts {
		if a.State != StateInactive {
			rs.Alerts++
			rs.ActiveAlerts = append(rs.ActiveAlerts, cloneAlert(a))
		}
		state = max(state, a.State)
	}
	r.st.mu.Unlock()
	sort.Slice(rs.ActiveAlerts, func(i, j int) bool { return rs.ActiveAlerts[i].Fingerprint < rs.ActiveAlerts[j].Fingerprint })
	rs.State = state.String()
	if rs.Health == "" {
		rs.Health = "unknown"
	}
	return rs
}

// History returns up to limit transitions, newest first, older than cursor
// (an ID from a previous page; "" for the newest). next is "" at the end.
func (m *Manager) History(cursor string, limit int) (out []Transition, next string, err error) {
	var before uint64
	if cursor != "" {
		if before, err = strconv.ParseUint(cursor, 10, 64); err != nil || before == 0 {
			return nil, "", fmt.Errorf("%w: cursor %q is not one this server gave out", ErrBadRequest, cursor)
		}
	}
	if limit <= 0 {
		limit = 100
	}
	out = []Transition{}
	var last uint64
	more := false
	err = m.store.AlertHistory(before, func(seq uint64, v []byte) bool {
		if len(out) == limit {
			more = true
			return false
		}
		var t Transition
		if json.Unmarshal(v, &t) != nil {
			return true
		}
		t.ID = strconv.FormatUint(seq, 10)
		out = append(out, t)
		last = seq
		return true
	})
	if err != nil {
		return nil, "", err
	}
	if more {
		next = strconv.FormatUint(last, 10)
	}
	return out, next, nil
}

// ErrBadRequest marks bad parameters of the Manager's read methods.
var ErrBadRequest = errors.New("bad request")

type managerMetrics struct {
	reloadOK, reloadTime, rules prometheus.Gauge
	evals, failures             prometheus.Counter
	evalSeconds                 prometheus.Histogram
}

func newManagerMetrics(reg prometheus.Registerer, current func() []Alert) *managerMetrics {
	mm := &managerMetrics{
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_rules_last_reload_successful",
			Help: "Whether the last load of the rules file succeeded (1) or kept the previous rules (0)."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_rules_last_reload_success_timestamp_seconds",
			Help: "When the rules file last loaded."}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_rules", Help: "Rules loaded, alerting and recording."}),
		evals: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_rule_evaluations_total", Help: "Rule evaluations."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_rule_evaluation_failures_total",
			Help: "Rule evaluations that failed (the query failed or no engine)."}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_rule_evaluation_duration_seconds",
			Help: "Time to evaluate one rule.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
	}
	mm.reloadOK.Set(1)
	if reg != nil {
		alerts := func(s State) prometheus.GaugeFunc {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_alerts", Help: "Alerts by state.",
				ConstLabels: prometheus.Labels{"state": s.String()}}, func() float64 {
				n := 0
				for _, a := range current() {
					if a.State == s {
						n++
					}
				}
				return float64(n)
			})
		}
		reg.MustRegister(mm.reloadOK, mm.reloadTime, mm.rules, mm.evals, mm.failures, mm.evalSeconds,
			alerts(StatePending), alerts(StateFiring))
	}
	return mm
}
