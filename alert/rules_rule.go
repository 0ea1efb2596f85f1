package alert

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
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
		r.Name = p.uniqueName(fl, item, "receiver", nameRE, "/ or control characters", names)
		var urls []*yaml.Node
		for _, f := range []struct {
			key string
			dst *string
		}{{"webhook_url", &r.WebhookURL}, {"slack_webhook_url", &r.SlackWebhookURL}, {"alertmanager_url", &r.AlertmanagerURL}} {
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
			p.at(item, "receiver %q needs webhook_url:, slack_webhook_url: or alertmanager_url:", r.Name)
		case len(urls) > 1:
			p.at(urls[1], "receiver %q: webhook_url, slack_webhook_url and alertmanager_url are exclusive: make one receiver each", r.Name)
		}
		if v := fl.get("resend_interval"); v != nil {
			if d, ok := p.duration(v, "resend_interval"); ok {
				if r.AlertmanagerURL == "" {
					p.at(fl.key("resend_interval"), "resend_interval: is for alertmanager_url: receivers (others repeat on the group's repeat_interval)")
				}
				r.ResendInterval = d
			}
		}
		fl.unknown(p, "name", "webhook_url", "slack_webhook_url", "alertmanager_url", "resend_interval")
		out = append(out, r)
	}
	return out
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
	var nameNode, recNode, exprNode, logsNode *yaml.Node
	r.Alert, nameNode = str("alert")
	r.Record, recNode = str("record")
	switch {
	case nameNode != nil && recNode != nil:
		p.at(recNode, "a rule has alert: (an alerting rule) or record: (a recording rule), not both")
	case nameNode == nil && recNode == nil:
		p.at(n, "a rule needs alert: (its name) or record: (the metric it writes)")
	case nameNode != nil && r.Alert == "":
		p.at(nameNode, "alert name must not be empty")
	case recNode != nil:
		checkRecordName(p, recNode, r.Record)
	}
	r.Expr, exprNode = str("expr")
	r.Logs, logsNode = str("logs")
	switch {
	case exprNode != nil && logsNode != nil:
		p.at(logsNode, "a rule has expr: (PromQL) or logs: (a log query), not both")
	case exprNode == nil && logsNode == nil:
		if nameNode != nil || recNode != nil {
			p.at(firstNode(nameNode, recNode), "%q needs expr: (PromQL) or logs: (a log query)", r.Name())
		}
	case exprNode != nil:
		p.checkExpr(exprNode, r.Expr)
		for _, k := range []string{"window", "threshold", "by", "agg"} {
			if kn := fl.key(k); kn != nil {
				p.at(kn, "%s: is for logs: rules; with expr: put the condition in the PromQL", k)
			}
		}
	case logsNode != nil:
		p.logsRule(fl, logsNode, &r)
	}
	if recNode != nil {
		for _, k := range []string{"for", "keep_firing_for", "annotations", "receivers", "threshold"} {
			if kn := fl.key(k); kn != nil {
				p.at(kn, "%s: is for alerting rules, not a recording rule", k)
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
	r.Labels = p.labels(fl.get("labels"), "labels", recNode == nil)
	r.Annotations = p.labels(fl.get("annotations"), "annotations", true)
	if v := fl.get("receivers"); v != nil {
		r.Receivers = p.ruleReceivers(v, recv)
	}
	fl.unknown(p, "alert", "record", "expr", "logs", "window", "threshold", "by", "agg", "for", "keep_firing_for", "labels", "annotations", "receivers")
	return r, true
}

func firstNode(ns ...*yaml.Node) *yaml.Node {
	for _, n := range ns {
		if n != nil {
			return n
		}
	}
	return nil
}

// checkRecordName checks a recorded metric's name as Prometheus 3 does: any
// UTF-8, but no braces (an expression put in the name by mistake).
func checkRecordName(p *fileParser, n *yaml.Node, name string) {
	switch {
	case name == "":
		p.at(n, "record: the metric name must not be empty")
	case !utf8.ValidString(name):
		p.at(n, "record: %q is not valid UTF-8", name)
	case strings.ContainsAny(name, "{}"):
		p.at(n, "record: braces in the metric name %q; should it be in expr:?", name)
	}
}

// logsRule reads the fields of a logs: rule.
func (p *fileParser) logsRule(fl fieldList, logsNode *yaml.Node, r *Rule) {
	if strings.TrimSpace(r.Logs) == "" {
		p.at(logsNode, "logs: must not be empty")
	} else if p.opts.CheckLogsQuery != nil {
		if err := p.opts.CheckLogsQuery(r.Logs); err != nil {
			p.at(logsNode, "logs: %v", err)
		}
	}
	if v := fl.get("window"); v == nil {
		if r.Record == "" {
			p.at(logsNode, "a logs: rule needs window: (how far back to count, e.g. 5m)")
		}
	} else if d, ok := p.duration(v, "window"); ok {
		if d <= 0 {
			p.at(v, "window must be positive")
		}
		r.Window = d
	}
	if v := fl.get("threshold"); v == nil {
		if r.Record == "" {
			p.at(logsNode, "a logs: rule needs threshold: (e.g. '> 10')")
		}
	} else if s, ok := p.scalar(v, "threshold"); ok && r.Record == "" {
		t, err := ParseThreshold(s)
		if err != nil {
			p.at(v, "%v", err)
		}
		r.Threshold = t
	}
	if v := fl.get("agg"); v != nil {
		if s, ok := p.scalar(v, "agg"); ok {
			r.Agg = strings.TrimSpace(s)
			var err error
			switch {
			case r.Agg == "":
				err = errors.New("must not be empty")
			case p.opts.CheckAgg != nil:
				err = p.opts.CheckAgg(r.Agg)
			}
			if err != nil {
				p.at(v, "agg: %v", err)
			}
		}
	}
	if v := fl.get("by"); v != nil {
		r.By = p.byFields(v)
	}
}

// byFields reads a logs rule's by: list.
func (p *fileParser) byFields(v *yaml.Node) []string {
	var out []string
	seen := map[string]bool{}
	for _, b := range p.sequence(v, "by") {
		s, ok := p.scalar(b, "by")
		if !ok {
			continue
		}
		switch err := p.groupable(s); {
		case err != nil:
			p.at(b, "by: %v", err)
		case seen[s]:
			p.at(b, "by: %q twice", s)
		case len(out) == p.maxBy():
			p.at(b, "by: at most %d fields", p.maxBy())
		default:
			out = append(out, s)
		}
		seen[s] = true
	}
	return out
}

// MaxBy bounds the by: fields of a logs rule, unless ParseOptions.MaxBy says.
const MaxBy = 5

func (p *fileParser) maxBy() int {
	if p.opts.MaxBy > 0 {
		return p.opts.MaxBy
	}
	return MaxBy
}

func (p *fileParser) groupable(f string) error {
	switch {
	case slices.Contains(ByFields, f):
		return nil
	case p.opts.CheckBy != nil:
		return p.opts.CheckBy(f)
	}
	return fmt.Errorf("%q is not a field to group by (want %s)", f, strings.Join(ByFields, ", "))
}

// ruleReceivers reads a rule's receivers: list.
func (p *fileParser) ruleReceivers(v *yaml.Node, recv []Receiver) []string {
	out := []string{}
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
		out = append(out, s)
	}
	return out
}

// labels reads labels: or annotations:, checking names and, when templated,
// templates. Names are Prometheus 3's: any UTF-8 (not __name__ for labels).
func (p *fileParser) labels(n *yaml.Node, what string, templated bool) map[string]string {
	if n == nil || (deref(n).Kind == yaml.ScalarNode && deref(n).Tag == "!!null") {
		return nil
	}
	fl, ok := p.mapping(n, what)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(fl.keys))
	for i, k := range fl.keys {
		if k.Value == "" || !utf8.ValidString(k.Value) || (what == "labels" && k.Value == "__name__") {
			p.at(k, "%s: %q is not a valid name", what, k.Value)
			continue
		}
		s, ok := p.scalar(fl.vals[i], k.Value)
		if !ok {
			continue
		}
		if templated {
			if err := checkTemplate(k.Value, s); err != nil {
				p.at(fl.vals[i], "%s: %s: %v", what, k.Value, err)
			}
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
	_, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
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
	// A range vector or a string parses, and promtool takes it: the
	// evaluation reports it (health err), as in Prometheus.
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
