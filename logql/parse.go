package logql

import (
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// Labels a stream selector may name, with service_name read as service (as
// Grafana sends it).
var streamLabels = map[string]string{
	"service": "service", "service_name": "service", "host": "host",
	"build_id": "build_id", "deploy_id": "deploy_id", "level": "level",
	"detected_level": "level",
}

// CanonicalLabel maps a label name as Grafana may send it to shiplog's.
func CanonicalLabel(name string) string {
	if c, ok := streamLabels[name]; ok {
		return c
	}
	return name
}

var rangeFuncs = map[string]bool{
	"count_over_time": true, "rate": true, "bytes_over_time": true, "bytes_rate": true,
	"sum_over_time": true, "avg_over_time": true, "min_over_time": true, "max_over_time": true,
	"quantile_over_time": true,
}

// unwrapFuncs need | unwrap.
var unwrapFuncs = map[string]bool{
	"sum_over_time": true, "avg_over_time": true, "min_over_time": true, "max_over_time": true,
	"quantile_over_time": true,
}

var vectorOps = map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true, "topk": true, "bottomk": true}

// Limits of the parser.
const (
	MaxRange    = 31 * 24 * time.Hour // longest [range]
	MaxTopK     = 10000
	maxMatchers = 64
	maxStages   = 64
)

type parser struct {
	toks []token
	pos  int
	// patternInsts sums the compiled size of the query's regular expressions.
	patternInsts int
}

// MaxPatternInsts bounds the compiled size of a query's regular expressions
// together, as shiplog's own query language does.
const MaxPatternInsts = 2000

// compile compiles a regular expression, counting its size.
func (p *parser) compile(expr string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	p.patternInsts += len(prog.Inst)
	return regexp.Compile(expr)
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == op
}

func (p *parser) expect(op string) error {
	t := p.next()
	if t.kind != tOp || t.text != op {
		return syntaxf("at %d: want %q, got %s", t.pos, op, t)
	}
	return nil
}

// Parse parses a LogQL query of shiplog's subset.
func Parse(s string) (Expr, error) {
	if len(s) > MaxQueryLen {
		return nil, syntaxf("query is %d bytes long; the limit is %d", len(s), MaxQueryLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, syntaxf("empty query: want a stream selector such as {service=\"api\"}")
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if e, err = p.foldConstants(e); err != nil {
		return nil, err
	}
	if n := p.patternInsts; n > MaxPatternInsts {
		return nil, unsupportedf("regular expressions this large: they compile to %d instructions, the limit is %d (each costs its size for every byte of every line)", n, MaxPatternInsts)
	}
	if t := p.peek(); t.kind != tEOF {
		if t.kind == tOp && strings.Contains("+-*/%^<>=", t.text) || t.kind == tIdent && isBinaryWord(t.text) {
			return nil, unsupportedf("binary operations (%s)", t.text)
		}
		return nil, syntaxf("at %d: unexpected %s", t.pos, t)
	}
	return e, nil
}

func isBinaryWord(w string) bool {
	switch w {
	case "and", "or", "unless", "offset", "bool", "on", "ignoring", "group_left", "group_right":
		return true
	}
	return false
}

func (p *parser) parseExpr() (Expr, error) {
	t := p.peek()
	switch {
	case t.kind == tOp && t.text == "{":
		return p.parseLogExpr()
	case t.kind == tOp && t.text == "(":
		p.next()
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	case t.kind == tIdent && rangeFuncs[t.text]:
		return p.parseRangeAgg()
	case t.kind == tIdent && vectorOps[t.text]:
		return p.parseVectorAgg()
	case t.kind == tIdent && t.text == "vector":
		return p.parseConstVector()
	case t.kind == tIdent && p.toks[p.pos+1].kind == tOp && p.toks[p.pos+1].text == "(":
		return nil, unsupportedf("the function %s()", t.text)
	case t.kind == tIdent && (t.text == "label_replace" || isBinaryWord(t.text)):
		return nil, unsupportedf("%s", t.text)
	case t.kind == tNumber:
		return nil, unsupportedf("scalar expressions (%s)", t.text)
	}
	return nil, syntaxf("at %d: unexpected %s: want a stream selector or a function", t.pos, t)
}

func (p *parser) parseLogExpr() (*LogExpr, error) {
	e := &LogExpr{}
	if err := p.parseSelector(e); err != nil {
		return nil, err
	}
	return e, p.parsePipeline(e)
}

func (p *parser) parseSelector(e *LogExpr) error {
	if err := p.expect("{"); err != nil {
		return err
	}
	for !p.isOp("}") {
		if len(e.Matchers) > 0 {
			if err := p.expect(","); err != nil {
				return err
			}
		}
		name := p.next()
		if name.kind != tIdent {
			return syntaxf("at %d: want a label name, got %s", name.pos, name)
		}
		canon, ok := streamLabels[name.text]
		if !ok {
			return unsupportedf("the stream label %q: shiplog's stream labels are service (or service_name), host, build_id, deploy_id and level; filter attributes with | %s=\"...\"", name.text, name.text)
		}
		op := p.next()
		if op.kind != tOp || (op.text != "=" && op.text != "!=" && op.text != "=~" && op.text != "!~") {
			return syntaxf("at %d: want = != =~ or !~ after %s, got %s", op.pos, name.text, op)
		}
		val := p.next()
		if val.kind != tString {
			return syntaxf("at %d: want a quoted value after %s%s, got %s", val.pos, name.text, op.text, val)
		}
		m := Matcher{Name: canon, Op: op.text, Value: val.text}
		if op.text == "=~" || op.text == "!~" {
			rx, err := p.compile("^(?:" + val.text + ")$")
			if err != nil {
				return syntaxf("%s%s%q: %v", name.text, op.text, val.text, err)
			}
			m.rx = rx
		}
		if len(e.Matchers) >= maxMatchers {
			return syntaxf("more than %d label matchers", maxMatchers)
		}
		e.Matchers = append(e.Matchers, m)
	}
	p.next()
	if len(e.Matchers) == 0 {
		return syntaxf("a stream selector needs at least one label matcher")
	}
	for _, m := range e.Matchers {
		if !m.Matches("") {
			return nil
		}
	}
	return syntaxf("queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will")
}

func (p *parser) parseLineFilter(op string) (LineFilter, error) {
	v := p.next()
	if v.kind != tString {
		return LineFilter{}, syntaxf("at %d: want a quoted string after %s, got %s", v.pos, op, v)
	}
	f := LineFilter{Op: op, Value: v.text}
	if op == "|~" || op == "!~" {
		rx, err := p.compile(v.text)
		if err != nil {
			return f, syntaxf("%s %q: %v", op, v.text, err)
		}
		f.rx = rx
	}
	if t := p.peek(); t.kind == tIdent && t.text == "or" {
		return f, unsupportedf("line filters joined by or")
	}
	if t := p.peek(); t.kind == tIdent && (t.text == "ip" || t.text == "pattern") {
		return f, unsupportedf("line filter %s()", t.text)
	}
	return f, nil
}

func (p *parser) parsePipeline(e *LogExpr) error {
	for {
		t := p.peek()
		if t.kind != tOp {
			return nil
		}
		switch t.text {
		case "|=", "!=", "|~", "!~":
			p.next()
			f, err := p.parseLineFilter(t.text)
			if err != nil {
				return err
			}
			if len(e.Stages) == 0 {
				e.Filters = append(e.Filters, f)
			} else {
				e.Stages = append(e.Stages, Stage{Kind: StageLineFilter, Line: f})
			}
		case "|":
			p.next()
			if err := p.parseStage(e); err != nil {
				return err
			}
		default:
			return nil
		}
		if len(e.Filters)+len(e.Stages) > maxStages {
			return syntaxf("more than %d pipeline stages", maxStages)
		}
	}
}

func (p *parser) parseStage(e *LogExpr) error {
	t := p.peek()
	if t.kind != tIdent {
		return syntaxf("at %d: want a stage after |, got %s", t.pos, t)
	}
	switch t.text {
	case "json", "logfmt":
		p.next()
		if n := p.peek(); n.kind == tIdent && !isStageEnd(p) || n.kind == tOp && n.text == "--" {
			return unsupportedf("%s with parameters", t.text)
		}
		e.Stages = append(e.Stages, Stage{Kind: t.text})
		e.Parsed = true
		return nil
	case "drop":
		p.next()
		var names []string
		for {
			n := p.next()
			if n.kind != tIdent {
				return syntaxf("at %d: want a label name after drop, got %s", n.pos, n)
			}
			if p.isOp("=") || p.isOp("=~") {
				return unsupportedf("drop with a matcher")
			}
			names = append(names, CanonicalLabel(n.text))
			if !p.isOp(",") {
				break
			}
			p.next()
		}
		e.Stages = append(e.Stages, Stage{Kind: StageDrop, Drop: names})
		return nil
	case "unwrap":
		return nil // read by the range aggregation
	case "line_format":
		p.next()
		v := p.next()
		if v.kind != tString {
			return syntaxf("at %d: want a quoted template after line_format, got %s", v.pos, v)
		}
		lf, err := newLineFormat(v.text)
		if err != nil {
			return err
		}
		e.Stages = append(e.Stages, Stage{Kind: StageLineFormat, format: lf})
		return nil
	case "label_format", "regexp", "pattern", "unpack", "keep", "decolorize", "distinct":
		return unsupportedf("the %s stage", t.text)
	}
	fs, err := p.parseLabelFilters()
	if err != nil {
		return err
	}
	e.Stages = append(e.Stages, Stage{Kind: StageLabelFilter, Filters: fs})
	return nil
}

func isStageEnd(p *parser) bool {
	t := p.peek()
	return t.kind == tEOF || t.kind == tOp || t.kind == tDuration
}

// parseLabelFilters reads name op value {(and|,) name op value}.
func (p *parser) parseLabelFilters() ([]LabelFilter, error) {
	var out []LabelFilter
	for {
		f, err := p.parseLabelFilter()
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		t := p.peek()
		switch {
		case t.kind == tIdent && t.text == "and", t.kind == tOp && t.text == ",":
			p.next()
		case t.kind == tIdent && t.text == "or":
			return nil, unsupportedf("label filters joined by or")
		default:
			return out, nil
		}
	}
}

func (p *parser) parseLabelFilter() (LabelFilter, error) {
	if p.isOp("(") {
		return LabelFilter{}, unsupportedf("parenthesised label filters")
	}
	name := p.next()
	if name.kind != tIdent {
		return LabelFilter{}, syntaxf("at %d: want a label name, got %s", name.pos, name)
	}
	op := p.next()
	if op.kind != tOp {
		return LabelFilter{}, syntaxf("at %d: want an operator after %s, got %s", op.pos, name.text, op)
	}
	val := p.next()
	f := LabelFilter{Name: CanonicalLabel(name.text), Op: op.text}
	switch {
	case val.kind == tString:
		switch op.text {
		case "=", "!=", "==":
			if op.text == "==" {
				f.Op = "="
			}
		case "=~", "!~":
			rx, err := p.compile("^(?:" + val.text + ")$")
			if err != nil {
				return f, syntaxf("%s%s%q: %v", name.text, op.text, val.text, err)
			}
			f.rx = rx
		default:
			return f, syntaxf("at %d: %s needs a number, not a string", op.pos, op.text)
		}
		f.Value = val.text
	case val.kind == tNumber || val.kind == tOp && val.text == "-" && p.peek().kind == tNumber:
		txt := val.text
		if val.kind == tOp {
			txt = "-" + p.next().text
		}
		n, err := strconv.ParseFloat(txt, 64)
		if err != nil || math.IsNaN(n) {
			return f, unsupportedf("the value %s in a label filter (durations and byte sizes are not supported; use a plain number)", txt)
		}
		switch op.text {
		case "=", "==":
			f.Op = "=="
		case "!=", ">", ">=", "<", "<=":
		default:
			return f, syntaxf("at %d: %s needs a string", op.pos, op.text)
		}
		f.Num, f.Numeric, f.Value = n, true, txt
	default:
		return f, syntaxf("at %d: want a value after %s%s, got %s", val.pos, name.text, op.text, val)
	}
	return f, nil
}

func (p *parser) parseGrouping() (*Grouping, error) {
	t := p.peek()
	if t.kind != tIdent || (t.text != "by" && t.text != "without") {
		return nil, nil
	}
	p.next()
	g := &Grouping{Without: t.text == "without"}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	for !p.isOp(")") {
		if len(g.Labels) > 0 {
			if err := p.expect(","); err != nil {
				return nil, err
			}
		}
		n := p.next()
		if n.kind != tIdent {
			return nil, syntaxf("at %d: want a label name in %s (...), got %s", n.pos, t.text, n)
		}
		if len(g.Labels) >= maxMatchers {
			return nil, syntaxf("more than %d labels in %s (...)", maxMatchers, t.text)
		}
		g.Labels = append(g.Labels, CanonicalLabel(n.text))
	}
	p.next()
	return g, nil
}

func (p *parser) parseRangeAgg() (Expr, error) {
	fn := p.next().text
	if err := p.expect("("); err != nil {
		return nil, err
	}
	ra := &RangeAgg{Func: fn}
	if fn == "quantile_over_time" {
		v := p.next()
		q, err := strconv.ParseFloat(v.text, 64)
		if v.kind != tNumber || err != nil || q < 0 || q > 1 {
			return nil, syntaxf("at %d: quantile_over_time needs a quantile between 0 and 1 first, got %s", v.pos, v)
		}
		ra.Param = q
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
	if err := p.parseLogRange(ra); err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	g, err := p.parseGrouping()
	if err != nil {
		return nil, err
	}
	ra.Grouping = g
	if unwrapFuncs[fn] && ra.Unwrap == "" {
		return nil, syntaxf("%s needs | unwrap <label> in its range", fn)
	}
	if !unwrapFuncs[fn] && ra.Unwrap != "" {
		return nil, unsupportedf("%s over an unwrapped label", fn)
	}
	if g != nil && !unwrapFuncs[fn] {
		return nil, syntaxf("%s does not take by/without; group with sum by (...) around it", fn)
	}
	return ra, nil
}

// parseLogRange reads {sel} pipeline [range] or {sel} [range] pipeline, with
// an optional | unwrap label at the end of the pipeline.
func (p *parser) parseLogRange(ra *RangeAgg) error {
	paren := false
	if p.isOp("(") {
		p.next()
		paren = true
	}
	e := &LogExpr{}
	if err := p.parseSelector(e); err != nil {
		return err
	}
	if err := p.parseRangeTok(ra); err != nil {
		return err
	}
	if err := p.parsePipeline(e); err != nil {
		return err
	}
	if t := p.peek(); t.kind == tIdent && t.text == "unwrap" {
		p.next()
		n := p.next()
		if n.kind != tIdent {
			return syntaxf("at %d: want a label name after unwrap, got %s", n.pos, n)
		}
		if p.isOp("(") {
			return unsupportedf("unwrap %s(...) conversions", n.text)
		}
		ra.Unwrap = CanonicalLabel(n.text)
		if err := p.parsePipeline(e); err != nil {
			return err
		}
	}
	if paren {
		if err := p.expect(")"); err != nil {
			return err
		}
	}
	if err := p.parseRangeTok(ra); err != nil {
		return err
	}
	if ra.Range == 0 {
		return syntaxf("%s needs a range such as [5m] after its log query", ra.Func)
	}
	if t := p.peek(); t.kind == tIdent && t.text == "offset" {
		return unsupportedf("offset")
	}
	ra.Log = e
	return nil
}

func (p *parser) parseRangeTok(ra *RangeAgg) error {
	t := p.peek()
	if t.kind != tDuration {
		return nil
	}
	p.next()
	if ra.Range != 0 {
		return syntaxf("at %d: a second range", t.pos)
	}
	if strings.Contains(t.text, ":") {
		return unsupportedf("subqueries ([%s])", t.text)
	}
	d, err := parseDuration(t.text)
	if err != nil || d <= 0 || d > MaxRange {
		return syntaxf("range [%s]: want a positive duration up to %s, such as 5m", t.text, MaxRange)
	}
	ra.Range = d
	return nil
}

func (p *parser) parseVectorAgg() (Expr, error) {
	op := p.next().text
	va := &VectorAgg{Op: op}
	g, err := p.parseGrouping()
	if err != nil {
		return nil, err
	}
	va.Grouping = g
	if err := p.expect("("); err != nil {
		return nil, err
	}
	if op == "topk" || op == "bottomk" {
		v := p.next()
		k, err := strconv.Atoi(v.text)
		if v.kind != tNumber || err != nil || k < 1 || k > MaxTopK {
			return nil, syntaxf("at %d: %s needs a whole number from 1 to %d first, got %s", v.pos, op, MaxTopK, v)
		}
		va.Param = k
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
	inner, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if _, ok := inner.(*LogExpr); ok {
		return nil, syntaxf("%s needs a metric expression such as count_over_time({...}[5m]), not a log query", op)
	}
	if _, ok := inner.(*ConstVector); ok {
		return nil, unsupportedf("%s over vector()", op)
	}
	va.Inner = inner
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if va.Grouping == nil {
		if va.Grouping, err = p.parseGrouping(); err != nil {
			return nil, err
		}
	}
	return va, nil
}

// parseDuration reads a Prometheus-style duration: 5m, 1h30m, 2d, 1w, 500ms.
func parseDuration(s string) (time.Duration, error) {
	var total time.Duration
	if s == "" {
		return 0, syntaxf("empty duration")
	}
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, syntaxf("bad duration")
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n > 1e6 {
			return 0, syntaxf("bad duration")
		}
		s = s[i:]
		j := 0
		for j < len(s) && (s[j] < '0' || s[j] > '9') {
			j++
		}
		var u time.Duration
		switch s[:j] {
		case "ms":
			u = time.Millisecond
		case "s":
			u = time.Second
		case "m":
			u = time.Minute
		case "h":
			u = time.Hour
		case "d":
			u = 24 * time.Hour
		case "w":
			u = 7 * 24 * time.Hour
		case "y":
			u = 365 * 24 * time.Hour
		default:
			return 0, syntaxf("bad duration unit %q", s[:j])
		}
		total += time.Duration(n) * u
		s = s[j:]
	}
	return total, nil
}

// parseConstVector reads vector(<number>).
func (p *parser) parseConstVector() (Expr, error) {
	p.next()
	if err := p.expect("("); err != nil {
		return nil, err
	}
	v := p.next()
	f, err := strconv.ParseFloat(v.text, 64)
	if v.kind != tNumber || err != nil {
		return nil, syntaxf("at %d: vector() needs a number, got %s", v.pos, v)
	}
	return &ConstVector{V: f}, p.expect(")")
}

// foldConstants folds + - * / between vector(n) literals (Grafana's health
// check asks vector(1)+vector(1)); binary operations on anything else are
// not supported.
func (p *parser) foldConstants(left Expr) (Expr, error) {
	for {
		t := p.peek()
		if t.kind != tOp || !strings.Contains("+-*/", t.text) {
			return left, nil
		}
		l, ok := left.(*ConstVector)
		if !ok {
			return nil, unsupportedf("binary operations (%s)", t.text)
		}
		p.next()
		right, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		r, ok := right.(*ConstVector)
		if !ok {
			return nil, unsupportedf("binary operations (%s) on anything but vector(n)", t.text)
		}
		switch t.text {
		case "+":
			l = &ConstVector{V: l.V + r.V}
		case "-":
			l = &ConstVector{V: l.V - r.V}
		case "*":
			l = &ConstVector{V: l.V * r.V}
		default:
			l = &ConstVector{V: l.V / r.V}
		}
		if n := p.peek(); n.kind == tOp && strings.Contains("+-*/", n.text) {
			return nil, unsupportedf("more than one binary operation")
		}
		return l, nil
	}
}
