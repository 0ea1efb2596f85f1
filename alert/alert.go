package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/histogram"

	"github.com/shiplog/shiplog/model"
)

// QueryFunc runs an instant PromQL query at ts (the metrics engine provides it).
type QueryFunc func(ctx context.Context, expr string, ts time.Time) ([]Sample, error)

// Sample is one series of an instant query's result.
type Sample struct {
	Labels map[string]string // __name__ is dropped from alert labels
	Value  float64
	// H is set when the series is a native histogram (Value is then 0):
	// recording rules write it; alerting rules alert on it with value 0.
	H *histogram.FloatHistogram
}

// LogsQueryFunc counts the log lines that match a query over a time range,
// per group (the query engine provides it).
type LogsQueryFunc func(ctx context.Context, q LogsQuery) ([]LogsGroup, error)

// LogsQuery is one count of a logs rule.
type LogsQuery struct {
	Query      string
	Start, End time.Time // [Start, End)
	By         []string  // fields to group by; none: one group of every match
	Agg        string    // an aggregate such as quantile(0.99, latency_ms); "": only the count
	// Keep says which groups the rule keeps (those past its threshold): only
	// they need links, so only their shared build and deploy are looked up
	// (nil: every group).
	Keep func(value float64) bool
}

// LogsGroup is the count of one by: group. Without By there is exactly one,
// even when its count is 0.
type LogsGroup struct {
	Labels   map[string]string // the by: fields' values
	Count    float64
	Value    float64 // the aggregate, when LogsQuery.Agg is set (NaN: no number to aggregate)
	Query    string  // the rule's query narrowed to this group, for links
	BuildID  string  // set when every matching line of the group has this build
	DeployID string  // ... and this deploy
}

// value is what a logs rule compares or records: the aggregate or the count.
func (g *LogsGroup) value(r *Rule) float64 {
	if r.Agg != "" {
		return g.Value
	}
	return g.Count
}

// AppendFunc writes recording rules' series into the metric store.
type AppendFunc func(ctx context.Context, series []model.Series) error

// NotifyFunc is handed each rule's firing and just resolved alerts after every
// evaluation (Notifier.Notify decides what is new and sends it).
type NotifyFunc func(ctx context.Context, n *Notification)

// Notification is a rule's alerts worth telling receivers about.
type Notification struct {
	GroupKey       string // names the rule: group, alert name and static labels
	Group, Rule    string
	Receivers      []Receiver
	RepeatInterval time.Duration
	Interval       time.Duration // the group's evaluation interval
	Summary        string        // what the rule checks, e.g. "count of level:error over 5m > 10"
	Alerts         []Alert       // firing and resolved (pending ones are not sent)
}

// StateStore keeps alert state across restarts (the store implements it).
type StateStore interface {
	// PutAlertState writes value under key; a nil value deletes it.
	PutAlertState(key string, value []byte) error
	// AlertStates returns every key and value.
	AlertStates() (map[string][]byte, error)
	// AppendAlertHistory appends one transition.
	AppendAlertHistory(value []byte) error
	// AlertHistory calls fn on transitions newest first, starting below seq
	// before (0: the newest), until fn returns false.
	AlertHistory(before uint64, fn func(seq uint64, value []byte) bool) error
}

// State is an alert's state, as in Prometheus.
type State int

// States.
const (
	StateInactive State = iota
	StatePending
	StateFiring
)

func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateFiring:
		return "firing"
	}
	return "inactive"
}

// MarshalText renders the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	switch string(b) {
	case "inactive", "resolved":
		*s = StateInactive
	case "pending":
		*s = StatePending
	case "firing":
		*s = StateFiring
	default:
		return fmt.Errorf("unknown alert state %q", b)
	}
	return nil
}

// Float is a float64 that survives JSON as NaN and ±Inf (as strings).
type Float float64

// MarshalJSON renders finite values as numbers, others as "NaN", "+Inf", "-Inf".
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(strconv.FormatFloat(v, 'g', -1, 64))
	}
	return []byte(strconv.FormatFloat(v, 'g', -1, 64)), nil
}

// UnmarshalJSON reads a number or a string.
func (f *Float) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := strconv.ParseFloat(s, 64)
		*f = Float(v)
		return err
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = Float(v)
	return err
}

// Links point into the web UI.
type Links struct {
	Logs   string `json:"logs,omitempty"`   // the matching lines: /search?q=&start=&end=
	Build  string `json:"build,omitempty"`  // /builds/{id}, when the lines share one build
	Deploy string `json:"deploy,omitempty"` // /deploys/{id}, when they share one deploy
}

// Alert is one alert of a rule: one result series or by: group.
type Alert struct {
	Group       string            `json:"group"`
	Rule        string            `json:"rule"`
	State       State             `json:"state"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Value       Float             `json:"value"`
	Fingerprint string            `json:"fingerprint"`
	ActiveAt    time.Time         `json:"active_at"`
	FiredAt     time.Time         `json:"fired_at,omitzero"`
	ResolvedAt  time.Time         `json:"resolved_at,omitzero"`
	LastSeenAt  time.Time         `json:"last_seen_at,omitzero"` // last evaluation that found it active
	// KeepFiringSince is when the condition stopped while keep_firing_for holds it.
	KeepFiringSince time.Time `json:"keep_firing_since,omitzero"`
	Links           Links     `json:"links"`
	// Window is the logs range the value was counted over.
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
}

// Resolved reports whether the alert fired and stopped.
func (a *Alert) Resolved() bool { return a.State == StateInactive && !a.ResolvedAt.IsZero() }

// StatusString is "firing" or "resolved" (notifications), or "pending".
func (a *Alert) StatusString() string {
	if a.State == StateInactive {
		return "resolved"
	}
	return a.State.String()
}

// Fingerprint hashes a label set as Alertmanager does (FNV-1a 64 of sorted
// name, value pairs), in 16 hex digits.
func Fingerprint(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, k := range names {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// Transition is one entry of the history.
type Transition struct {
	ID          string            `json:"id"` // the cursor of the entries older than it
	Time        time.Time         `json:"time"`
	Group       string            `json:"group"`
	Rule        string            `json:"rule"`
	From        string            `json:"from"`
	To          string            `json:"to"` // pending, firing, resolved, inactive (pending that went away)
	Labels      map[string]string `json:"labels"`
	Value       Float             `json:"value"`
	Fingerprint string            `json:"fingerprint"`
	Links       Links             `json:"links"`
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
