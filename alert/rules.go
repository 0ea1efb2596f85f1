package alert

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shiplog/shiplog/model"
)

// ErrInvalidRules wraps every error about a rules file that does not load.
var ErrInvalidRules = errors.New("invalid rules file")

// File is a parsed rules file.
type File struct {
	Receivers []Receiver
	Groups    []Group
}

// Receiver is where notifications go: exactly one of the URLs is set.
type Receiver struct {
	Name            string
	WebhookURL      string // generic JSON body (Alertmanager's webhook v4)
	SlackWebhookURL string // Slack incoming webhook
	AlertmanagerURL string // an Alertmanager: alerts POSTed to its /api/v2/alerts
	// ResendInterval is how often an Alertmanager is told again of alerts
	// still firing (0: NotifierOptions.ResendDelay).
	ResendInterval time.Duration
}

// Kind is "webhook", "slack" or "alertmanager".
func (r Receiver) Kind() string {
	switch {
	case r.SlackWebhookURL != "":
		return "slack"
	case r.AlertmanagerURL != "":
		return "alertmanager"
	}
	return "webhook"
}

// URL is where the receiver's notifications are posted.
func (r Receiver) URL() string {
	switch {
	case r.SlackWebhookURL != "":
		return r.SlackWebhookURL
	case r.AlertmanagerURL != "":
		return strings.TrimRight(r.AlertmanagerURL, "/") + "/api/v2/alerts"
	}
	return r.WebhookURL
}

// Group is a rule group, evaluated every Interval.
type Group struct {
	Name           string
	Interval       time.Duration // 0: Options.DefaultInterval
	RepeatInterval time.Duration // 0: Options.RepeatInterval
	// QueryOffset moves every query of the group back in time (Prometheus'
	// query_offset): a rule evaluated at t queries at t - QueryOffset.
	QueryOffset time.Duration
	// Limit bounds the alerts of an alerting rule and the series of a
	// recording rule (0: none); past it the evaluation fails, as in Prometheus.
	Limit int
	// Labels are added to every rule's labels (a rule's own win).
	Labels map[string]string
	Rules  []Rule
}

// Rule is one rule: an alerting rule (Alert) or a recording rule (Record),
// over Expr (PromQL) or Logs (a query string counted over Window, per By
// group; an alert compares the count, or Agg, with Threshold).
type Rule struct {
	Alert         string
	Record        string // the metric a recording rule writes
	Agg           string // logs rules: an aggregate instead of the count, e.g. quantile(0.99, latency_ms)
	Expr          string
	Logs          string
	Window        time.Duration
	Threshold     Threshold
	By            []string
	For           time.Duration
	KeepFiringFor time.Duration
	Labels        map[string]string // values are templates
	Annotations   map[string]string // templates
	Receivers     []string          // nil: every receiver
	Line          int               // of the rule in the file
}

// Kind is "logs" or "promql".
func (r *Rule) Kind() string {
	if r.Logs != "" {
		return "logs"
	}
	return "promql"
}

// Name is the alert's name, or the recorded metric's.
func (r *Rule) Name() string {
	if r.Record != "" {
		return r.Record
	}
	return r.Alert
}

// Threshold is a comparison such as "> 10".
type Threshold struct {
	Op    string // >, >=, <, <=, ==, !=
	Value float64
}

// Match reports whether v passes the comparison.
func (t Threshold) Match(v float64) bool {
	switch t.Op {
	case ">":
		return v > t.Value
	case ">=":
		return v >= t.Value
	case "<":
		return v < t.Value
	case "<=":
		return v <= t.Value
	case "==":
		return v == t.Value
	case "!=":
		return v != t.Value
	}
	return false
}

func (t Threshold) String() string {
	if t.Op == "" {
		return ""
	}
	return t.Op + " " + strconv.FormatFloat(t.Value, 'g', -1, 64)
}

// ParseThreshold reads "> 10", ">=1", "< 5", "== 0", "!= 0".
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	for _, op := range []string{">=", "<=", "==", "!=", ">", "<"} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil || math.IsNaN(v) {
				return Threshold{}, fmt.Errorf("threshold %q: want a comparison and a number, such as '> 10'", s)
			}
			return Threshold{Op: op, Value: v}, nil
		}
	}
	return Threshold{}, fmt.Errorf("threshold %q: want a comparison and a number, such as '> 10' (quoted: a bare > starts a YAML block)", s)
}

// ByFields are the fields a logs rule may group by.
var ByFields = []string{"service", "host", "build_id", "deploy_id", "level"}

// Problem is one thing wrong with a rules file, at a 1-based line and column
// (0 when unknown).
type Problem struct {
	Line, Column int
	Msg          string
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("%d:%d: %s", p.Line, p.Column, p.Msg)
	case p.Line > 0:
		return fmt.Sprintf("%d: %s", p.Line, p.Msg)
	}
	return p.Msg
}

// ProblemsError is a rules file that did not load, with every problem.
type ProblemsError struct {
	File     string
	Problems []Problem
}

func (e *ProblemsError) Error() string {
	if len(e.Problems) == 0 {
		return e.File + ": invalid"
	}
	p := e.Problems[0]
	msg := p.String()
	switch {
	case e.File != "" && p.Line > 0:
		msg = e.File + ":" + msg
	case e.File != "":
		msg = e.File + ": " + msg
	}
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more problem%s)", n, plural(n))
	}
	return msg
}

// Is makes errors.Is(err, ErrInvalidRules) true.
func (e *ProblemsError) Is(target error) bool { return target == ErrInvalidRules }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ParseOptions add checks that need other packages.
type ParseOptions struct {
	// CheckLogsQuery validates a logs: query string (nil: not checked).
	CheckLogsQuery func(string) error
	// CheckAgg validates a logs rule's agg: (nil: not checked).
	CheckAgg func(string) error
	// CheckBy validates a by: field beyond ByFields, such as an attribute
	// key (nil: only ByFields).
	CheckBy func(string) error
	// MaxBy bounds a logs rule's by: fields (0: MaxBy).
	MaxBy int
}

// LoadFile reads and parses a rules file. The error, when not nil, is a
// *ProblemsError (errors.Is ErrInvalidRules).
func LoadFile(path string, opts ParseOptions) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &ProblemsError{File: path, Problems: []Problem{{Msg: "cannot read it: " + err.Error()}}}
	}
	f, probs := Parse(data, opts)
	if len(probs) > 0 {
		return nil, &ProblemsError{File: path, Problems: probs}
	}
	return f, nil
}

// Parse parses a rules file and returns every problem found, in file order.
// The File is only meaningful when there are none.
func Parse(data []byte, opts ParseOptions) (*File, []Problem) {
	p := &fileParser{data: data, opts: opts}
	f := p.parse()
	sort.SliceStable(p.probs, func(i, j int) bool {
		a, b := p.probs[i], p.probs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return f, p.probs
}

type fileParser struct {
	data   []byte
	opts   ParseOptions
	probs  []Problem
	lines  []string // of data, for positions inside block scalars
	merges int      // merge keys followed so far
}

func (p *fileParser) at(n *yaml.Node, format string, a ...any) {
	p.probs = append(p.probs, Problem{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, a...)})
}

var unquotedCmp = regexp.MustCompile(`^\s*threshold:\s*[<>]`)

var yamlLine = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)

func (p *fileParser) parse() *File {
	f := &File{}
	var doc yaml.Node
	if err := yaml.Unmarshal(p.data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		pr := Problem{}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			pr.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		pr.Msg = "YAML: " + msg
		if pr.Line > 0 {
			lines := strings.Split(string(p.data), "\n")
			if pr.Line <= len(lines) && unquotedCmp.MatchString(lines[pr.Line-1]) {
				pr.Msg += " (quote comparisons: threshold: '> 10')"
			}
		}
		p.probs = append(p.probs, pr)
		return f
	}
	if len(doc.Content) == 0 {
		return f // an empty file: no rules
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f
	}
	fields, ok := p.mapping(root, "the rules file")
	if !ok {
		return f
	}
	// Receivers first: rules refer to them.
	if n := fields.get("receivers"); n != nil {
		f.Receivers = p.receivers(n)
	}
	if n := fields.get("groups"); n != nil {
		f.Groups = p.groups(n, f.Receivers)
	}
	fields.unknown(p, "receivers", "groups")
	return f
}

// fieldList is a mapping's key and value nodes, in order.
type fieldList struct {
	keys, vals []*yaml.Node
}

func (fl fieldList) get(name string) *yaml.Node {
	for i, k := range fl.keys {
		if k.Value == name {
			return fl.vals[i]
		}
	}
	return nil
}

func (fl fieldList) key(name string) *yaml.Node {
	for _, k := range fl.keys {
		if k.Value == name {
			return k
		}
	}
	return nil
}

func (fl fieldList) unknown(p *fileParser, known ...string) {
	for _, k := range fl.keys {
		if !slices.Contains(known, k.Value) {
			p.at(k, "unknown field %q (want %s)", k.Value, strings.Join(known, ", "))
		}
	}
}

func (p *fileParser) mapping(n *yaml.Node, what string) (fieldList, bool) {
	var fl fieldList
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.at(n, "%s must be a mapping (key: value)", what)
		return fl, false
	}
	seen := map[string]bool{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.Tag == "!!merge" {
			merged = append(merged, v)
			continue
		}
		if seen[k.Value] {
			p.at(k, "%q appears twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		fl.keys = append(fl.keys, k)
		fl.vals = append(fl.vals, v)
	}
	// Merge keys (<<: *anchor, or a list of them), as YAML and Prometheus
	// take them: the mapping's own keys win, then the first merged.
	for _, m := range merged {
		srcs := []*yaml.Node{m}
		if d := deref(m); d.Kind == yaml.SequenceNode {
			srcs = d.Content
		}
		for _, src := range srcs {
			if p.merges++; p.merges > maxMerges {
				if p.merges == maxMerges+1 {
					p.at(src, "more than %d merges (<<): not a rules file", maxMerges)
				}
				return fl, false
			}
			sub, ok := p.mapping(src, "a merge (<<)")
			if !ok {
				continue
			}
			for i, k := range sub.keys {
				if !seen[k.Value] {
					seen[k.Value] = true
					fl.keys = append(fl.keys, k)
					fl.vals = append(fl.vals, sub.vals[i])
				}
			}
		}
	}
	return fl, true
}

// maxMerges bounds the merge keys followed in one file, nested ones
// included (merges of merges grow exponentially: a billion laughs).
const maxMerges = 10000

// deref follows an alias (*name) to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func (p *fileParser) sequence(n *yaml.Node, what string) []*yaml.Node {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.at(n, "%s must be a list", what)
		return nil
	}
	return n.Content
}

// scalar returns a string value; ok is false (and a problem recorded) when n
// is not a scalar.
func (p *fileParser) scalar(n *yaml.Node, what string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		p.at(n, "%s must be a single value", what)
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (p *fileParser) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0, false
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		p.at(n, "%s: %v", what, err)
		return 0, false
	}
	return d, true
}

var (
	nameRE      = regexp.MustCompile(`^[^\x00-\x1f/]+$`)
	groupNameRE = regexp.MustCompile(`^[^\x00-\x1f]+$`)
)

// uniqueName reads the name: of a receiver or group (what), which must be
// set, match re (else it must not contain forbidden) and not repeat one in
// names.
func (p *fileParser) uniqueName(fl fieldList, item *yaml.Node, what string, re *regexp.Regexp, forbidden string, names map[string]bool) string {
	v := fl.get("name")
	if v == nil {
		p.at(item, "a %s needs a name:", what)
		return ""
	}
	name, _ := p.scalar(v, "name")
	switch {
	case name == "":
		p.at(v, "%s name must not be empty", what)
	case !re.MatchString(name):
		p.at(v, "%s name %q must not contain %s", what, name, forbidden)
	case names[name]:
		p.at(v, "%s %q is defined twice", what, name)
	}
	names[name] = true
	return name
}

func (p *fileParser) groups(n *yaml.Node, recv []Receiver) []Group {
	var out []Group
	names := map[string]bool{}
	for _, item := range p.sequence(n, "groups") {
		fl, ok := p.mapping(item, "a group")
		if !ok {
			continue
		}
		var g Group
		g.Name = p.uniqueName(fl, item, "group", groupNameRE, "control characters", names)
		for _, f := range []struct {
			key string
			dst *time.Duration
		}{{"interval", &g.Interval}, {"repeat_interval", &g.RepeatInterval}, {"query_offset", &g.QueryOffset}} {
			if v := fl.get(f.key); v != nil {
				if d, ok := p.duration(v, f.key); ok {
					*f.dst = d // 0: the default, as in Prometheus
				}
			}
		}
		if v := fl.get("limit"); v != nil {
			if s, ok := p.scalar(v, "limit"); ok && s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					p.at(v, "limit %q: want a number of alerts or series, 0 for none", s)
				}
				g.Limit = max(n, 0)
			}
		}
		g.Labels = p.labels(fl.get("labels"), "labels", false)
		if v := fl.get("rules"); v != nil {
			for _, rn := range p.sequence(v, "rules") {
				r, ok := p.rule(rn, recv)
				if !ok {
					continue
				}
				if len(g.Labels) > 0 {
					lbls := copyMap(g.Labels)
					for k, v := range r.Labels {
						lbls[k] = v
					}
					r.Labels = lbls
				}
				g.Rules = append(g.Rules, r)
			}
		}
		fl.unknown(p, "name", "interval", "repeat_interval", "query_offset", "limit", "labels", "rules")
		out = append(out, g)
	}
	return out
}

// ruleID names a rule within its group: its alert name and static labels
// (a recording rule: record: and its name).
func ruleID(r *Rule) string {
	if r.Record != "" {
		return "record:" + r.Record
	}
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(r.Alert)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, r.Labels[k])
	}
	return b.String()
}
