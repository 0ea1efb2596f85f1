package alert

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
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
}

// Kind is "webhook" or "slack".
func (r Receiver) Kind() string {
	if r.SlackWebhookURL != "" {
		return "slack"
	}
	return "webhook"
}

// URL is where the receiver's notifications are posted.
func (r Receiver) URL() string {
	if r.SlackWebhookURL != "" {
		return r.SlackWebhookURL
	}
	return r.WebhookURL
}

// Group is a rule group, evaluated every Interval.
type Group struct {
	Name           string
	Interval       time.Duration // 0: Options.DefaultInterval
	RepeatInterval time.Duration // 0: Options.RepeatInterval
	Rules          []Rule
}

// Rule is one alerting rule: Expr (PromQL) or Logs (a query string counted over
// Window and compared with Threshold, per By group).
type Rule struct {
	Alert         string
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
	data  []byte
	opts  ParseOptions
	probs []Problem
	lines []string // of data, for positions inside block scalars
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
			if k.Value == "record" {
				p.at(k, "recording rules are not supported: a rule needs alert:")
				continue
			}
			p.at(k, "unknown field %q (want %s)", k.Value, strings.Join(known, ", "))
		}
	}
}

func (p *fileParser) mapping(n *yaml.Node, what string) (fieldList, bool) {
	var fl fieldList
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		p.at(n, "%s must be a mapping (key: value)", what)
		return fl, false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			p.at(k, "merge keys (<<) are not supported")
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
	return fl, true
}

func (p *fileParser) sequence(n *yaml.Node, what string) []*yaml.Node {
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
	d, err := ParseDuration(s)
	if err != nil {
		p.at(n, "%s: %v", what, err)
		return 0, false
	}
	return d, true
}

var durationRE = regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$`)

// ParseDuration reads a Prometheus duration: 30s, 5m, 1h30m, 1d, 2w, 1y, 0.
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	m := durationRE.FindStringSubmatch(s)
	if s == "" || m == nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h30m, 1d)", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second, time.Millisecond}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(math.MaxInt64/u) || d > math.MaxInt64-time.Duration(n)*u {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}

// FormatDuration renders d as Prometheus does (1h30m, 5m, 0s).
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"y", 365 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	return b.String()
}

var (
	labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	nameRE      = regexp.MustCompile(`^[^\x00-\x1f/]+$`)
)

func (p *fileParser) receivers(n *yaml.Node) []Receiver {
	var out []Receiver
	names := map[string]bool{}
	for _, item := range p.sequence(n, "receivers") {
		fl, ok := p.mapping(item, "a receiver")
		if !ok {
			continue
		}
		var r Receiver
		if v := fl.get("name"); v != nil {
			r.Name, _ = p.scalar(v, "name")
			switch {
			case r.Name == "":
				p.at(v, "receiver name must not be empty")
			case !nameRE.MatchString(r.Name):
				p.at(v, "receiver name %q must not contain / or control characters", r.Name)
			case names[r.Name]:
				p.at(v, "receiver %q is defined twice", r.Name)
			}
			names[r.Name] = true
		} else {
			p.at(item, "a receiver needs a name:")
		}
		var urls []*yaml.Node
		for _, f := range []struct {
			key string
			dst *string
		}{{"webhook_url", &r.WebhookURL}, {"slack_webhook_url", &r.SlackWebhookURL}} {
			v := fl.get(f.key)
			if v == nil {
				continue
			}
			urls = append(urls, v)
			s, _ := p.scalar(v, f.key)
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.at(v, "%s %q: want an http:// or https:// URL", f.key, s)
				continue
			}
			*f.dst = s
		}
		switch {
		case len(urls) == 0:
			p.at(item, "receiver %q needs webhook_url: or slack_webhook_url:", r.Name)
		case len(urls) > 1:
			p.at(urls[1], "receiver %q: webhook_url and slack_webhook_url are exclusive: make two receivers", r.Name)
		}
		fl.unknown(p, "name", "webhook_url", "slack_webhook_url")
		out = append(out, r)
	}
	return out
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
		if v := fl.get("name"); v != nil {
			g.Name, _ = p.scalar(v, "name")
			switch {
			case g.Name == "":
				p.at(v, "group name must not be empty")
			case !nameRE.MatchString(g.Name):
				p.at(v, "group name %q must not contain / or control characters", g.Name)
			case names[g.Name]:
				p.at(v, "group %q is defined twice", g.Name)
			}
			names[g.Name] = true
		} else {
			p.at(item, "a group needs a name:")
		}
		for _, f := range []struct {
			key string
			dst *time.Duration
		}{{"interval", &g.Interval}, {"repeat_interval", &g.RepeatInterval}} {
			if v := fl.get(f.key); v != nil {
				if d, ok := p.duration(v, f.key); ok {
					if d <= 0 {
						p.at(v, "%s must be positive", f.key)
					}
					*f.dst = d
				}
			}
		}
		if v := fl.get("rules"); v != nil {
			seen := map[string]bool{}
			for _, rn := range p.sequence(v, "rules") {
				r, ok := p.rule(rn, recv)
				if !ok {
					continue
				}
				if k := ruleID(&r); r.Alert != "" && seen[k] {
					p.at(rn, "alert %q with the same labels appears twice in group %q", r.Alert, g.Name)
				} else {
					seen[k] = true
				}
				g.Rules = append(g.Rules, r)
			}
		}
		fl.unknown(p, "name", "interval", "repeat_interval", "rules")
		out = append(out, g)
	}
	return out
}

// ruleID names a rule within its group: its alert name and static labels.
func ruleID(r *Rule) string {
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

func (p *fileParser) rule(n *yaml.Node, recv []Receiver) (Rule, bool) {
	fl, ok := p.mapping(n, "a rule")
	if !ok {
		return Rule{}, false
	}
	r := Rule{Line: n.Line}
	str := func(key string) (string, *yaml.Node) {
		v := fl.get(key)
		if v == nil {
			return "", nil
		}
		s, _ := p.scalar(v, key)
		return s, v
	}
	name, nameNode := str("alert")
	r.Alert = name
	switch {
	case nameNode == nil:
		if fl.get("record") == nil {
			p.at(n, "a rule needs alert: (its name)")
		}
	case name == "":
		p.at(nameNode, "alert name must not be empty")
	}
	var exprNode, logsNode *yaml.Node
	r.Expr, exprNode = str("expr")
	r.Logs, logsNode = str("logs")
	switch {
	case exprNode != nil && logsNode != nil:
		p.at(logsNode, "a rule has expr: (PromQL) or logs: (a log query), not both")
	case exprNode == nil && logsNode == nil:
		if nameNode != nil {
			p.at(nameNode, "alert %q needs expr: (PromQL) or logs: (a log query)", name)
		}
	case exprNode != nil:
		p.checkExpr(exprNode, r.Expr)
		for _, k := range []string{"window", "threshold", "by"} {
			if kn := fl.key(k); kn != nil {
				p.at(kn, "%s: is for logs: rules; with expr: put the condition in the PromQL", k)
			}
		}
	case logsNode != nil:
		if strings.TrimSpace(r.Logs) == "" {
			p.at(logsNode, "logs: must not be empty")
		} else if p.opts.CheckLogsQuery != nil {
			if err := p.opts.CheckLogsQuery(r.Logs); err != nil {
				p.at(logsNode, "logs: %v", err)
			}
		}
		if v := fl.get("window"); v == nil {
			p.at(logsNode, "a logs: rule needs window: (how far back to count, e.g. 5m)")
		} else if d, ok := p.duration(v, "window"); ok {
			if d <= 0 {
				p.at(v, "window must be positive")
			}
			r.Window = d
		}
		if v := fl.get("threshold"); v == nil {
			p.at(logsNode, "a logs: rule needs threshold: (e.g. '> 10')")
		} else if s, ok := p.scalar(v, "threshold"); ok {
			t, err := ParseThreshold(s)
			if err != nil {
				p.at(v, "%v", err)
			}
			r.Threshold = t
		}
		if v := fl.get("by"); v != nil {
			seen := map[string]bool{}
			for _, b := range p.sequence(v, "by") {
				s, ok := p.scalar(b, "by")
				if !ok {
					continue
				}
				switch {
				case !slices.Contains(ByFields, s):
					p.at(b, "by: %q is not a field to group by (want %s)", s, strings.Join(ByFields, ", "))
				case seen[s]:
					p.at(b, "by: %q twice", s)
				default:
					r.By = append(r.By, s)
				}
				seen[s] = true
			}
		}
	}
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"for", &r.For}, {"keep_firing_for", &r.KeepFiringFor}} {
		if v := fl.get(f.key); v != nil {
			if d, ok := p.duration(v, f.key); ok {
				*f.dst = d
			}
		}
	}
	r.Labels = p.templates(fl.get("labels"), "labels")
	r.Annotations = p.templates(fl.get("annotations"), "annotations")
	if v := fl.get("receivers"); v != nil {
		r.Receivers = []string{}
		for _, rn := range p.sequence(v, "receivers") {
			s, ok := p.scalar(rn, "receivers")
			if !ok {
				continue
			}
			known := false
			for _, x := range recv {
				known = known || x.Name == s
			}
			if !known {
				var names []string
				for _, x := range recv {
					names = append(names, x.Name)
				}
				p.at(rn, "receiver %q is not defined (receivers: %s)", s, strings.Join(names, ", "))
				continue
			}
			r.Receivers = append(r.Receivers, s)
		}
	}
	fl.unknown(p, "alert", "expr", "logs", "window", "threshold", "by", "for", "keep_firing_for", "labels", "annotations", "receivers")
	return r, true
}

// templates reads labels: or annotations:, checking names and templates.
func (p *fileParser) templates(n *yaml.Node, what string) map[string]string {
	if n == nil {
		return nil
	}
	fl, ok := p.mapping(n, what)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(fl.keys))
	for i, k := range fl.keys {
		if !labelNameRE.MatchString(k.Value) {
			p.at(k, "%s: %q is not a valid name (letters, digits and _, not starting with a digit)", what, k.Value)
			continue
		}
		s, ok := p.scalar(fl.vals[i], k.Value)
		if !ok {
			continue
		}
		if err := checkTemplate(k.Value, s); err != nil {
			p.at(fl.vals[i], "%s: %s: %v", what, k.Value, err)
		}
		out[k.Value] = s
	}
	return out
}

// checkExpr parses a PromQL expression and reports its errors where they are
// in the file.
func (p *fileParser) checkExpr(n *yaml.Node, expr string) {
	if strings.TrimSpace(expr) == "" {
		p.at(n, "expr: must not be empty")
		return
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		var perrs parser.ParseErrors
		var perr *parser.ParseErr
		switch {
		case errors.As(err, &perrs):
			for _, pe := range perrs {
				line, col := p.posIn(n, int(pe.PositionRange.Start))
				p.probs = append(p.probs, Problem{Line: line, Column: col, Msg: "expr: " + pe.Err.Error()})
			}
		case errors.As(err, &perr):
			line, col := p.posIn(n, int(perr.PositionRange.Start))
			p.probs = append(p.probs, Problem{Line: line, Column: col, Msg: "expr: " + perr.Err.Error()})
		default:
			p.at(n, "expr: %v", err)
		}
		return
	}
	switch t := e.Type(); t {
	case parser.ValueTypeVector, parser.ValueTypeScalar:
	default:
		p.at(n, "expr: must give an instant vector or a scalar, not a %s", t)
	}
}

// posIn maps a byte offset in a scalar's value to its line and column in the
// file. Exact for plain, quoted (without escapes) and literal (|) scalars.
func (p *fileParser) posIn(n *yaml.Node, off int) (int, int) {
	if off < 0 || off > len(n.Value) {
		return n.Line, n.Column
	}
	if off == len(n.Value) && off > 0 && n.Value[off-1] == '\n' {
		off-- // the end of a block: point at its last line
	}
	before := n.Value[:off]
	nl := strings.Count(before, "\n")
	colIn := off - (strings.LastIndexByte(before, '\n') + 1)
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		if p.lines == nil {
			p.lines = strings.Split(string(p.data), "\n")
		}
		line := n.Line + 1 + nl // the block starts on the line after the indicator
		// Skip blank lines before the content, as YAML does.
		for line-1 < len(p.lines) && strings.TrimSpace(p.lines[line-1]) == "" && nl == 0 {
			line++
		}
		indent := 0
		if line-1 < len(p.lines) {
			s := p.lines[line-1]
			indent = len(s) - len(strings.TrimLeft(s, " "))
		}
		return line, indent + colIn + 1
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if nl == 0 {
			return n.Line, n.Column + 1 + colIn
		}
	default:
		if nl == 0 {
			return n.Line, n.Column + colIn
		}
	}
	return n.Line + nl, colIn + 1
}
