// Package query parses shiplog's query language, plans it into a chunk filter
// for the store, and evaluates it line by line: search with cursors, and
// histograms.
package query

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	bq "github.com/blevesearch/bleve/v2/search/query"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// ErrBadQuery wraps every error about a query the user wrote.
var ErrBadQuery = errors.New("bad query")

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadQuery, fmt.Sprintf(format, a...))
}

// Query is a parsed query string.
type Query struct {
	src  string
	root node
	cond *store.Cond
	text bool // evaluation needs the message/attribute columns
	// countable is set when a chunk's metadata counts its matches exactly:
	// label terms and at most one level term, all ANDed.
	countable  bool
	countLevel model.Level // LevelUnset: every level
	// need is what every matching message contains (see requiredToken).
	need needle
	// spec, when set, is how the query travels (Spec); else Spec{Q: src}.
	spec *Spec
	// fields are the attribute fields of field:value terms that are read
	// as text when no line in the range has them (Resolve).
	fields []string
}

// String returns the query as written.
func (q *Query) String() string { return q.src }

// Cond returns the chunk filter for the store.
func (q *Query) Cond() *store.Cond { return q.cond }

// maxQueryLen bounds the query string.
const maxQueryLen = 16 << 10

// MaxPatternInsts bounds the compiled size of a query's regular expressions and
// wildcards together. Go's regexp runs in time linear in the input, times the
// program's size: /[a-j ]{1000}[k-z]/ (1,003 instructions) costs about 40 ms
// on a 2,000-byte line, and a query of many such patterns would cost seconds
// a line, where no deadline can stop it.
const MaxPatternInsts = 2000

// patternInsts is the compiled size of the patterns in n.
func patternInsts(n node) int {
	size := func(rx *regexp.Regexp) int {
		re, err := syntax.Parse(rx.String(), syntax.Perl)
		if err != nil {
			return 0
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			return 0
		}
		return len(prog.Inst)
	}
	switch x := n.(type) {
	case andNode:
		t := 0
		for _, k := range x {
			t += patternInsts(k)
		}
		return t
	case orNode:
		t := 0
		for _, k := range x {
			t += patternInsts(k)
		}
		return t
	case notNode:
		return patternInsts(x.kid)
	case labelPatternNode:
		return size(x.rx)
	case attrPatternNode:
		return size(x.rx)
	case stringPatternNode:
		return size(x.rx)
	case msgRegexpNode:
		return size(x.rx)
	case tokenPatternNode:
		return size(x.rx)
	}
	return 0
}

// Parse parses a query string: Lucene-style terms as Bleve's query-string parser
// reads them (field:value, "phrases", wild*cards, /regexps/, field:>N ranges,
// +must and -must-not), joined by AND (the default), OR, NOT, and grouped by
// parentheses. The empty query matches everything.
func Parse(s string) (*Query, error) {
	if len(s) > maxQueryLen {
		return nil, badf("query is %d bytes long; the limit is %d", len(s), maxQueryLen)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, badf("unexpected %q", p.toks[p.pos].text)
	}
	if root == nil {
		root = allNode{}
	}
	root = simplify(root)
	if n := patternInsts(root); n > MaxPatternInsts {
		return nil, badf("the patterns of this query compile to %d instructions; the limit is %d (a pattern costs its size for every byte of every line): use fewer or smaller repetitions", n, MaxPatternInsts)
	}
	return newQuery(s, root), nil
}

// newQuery plans a parsed (and simplified) query.
func newQuery(src string, root node) *Query {
	q := &Query{src: src, root: root, cond: root.cond(), text: root.needsText()}
	q.countable, q.countLevel = countable(root)
	q.need = requiredToken(root)
	q.fields = textFields(root, nil)
	return q
}

// Fields and text: in a:b, a names a field when it is a label, level,
// message, trace_id, span_id or id, or an attribute key some line in the
// searched range has. Otherwise a:b is text, its tokens in a row in the
// message: payment_test.go:88 and stripe-mock:12111 are found where they are
// written. The engine decides at the start of each search (Resolve), from
// the keys the store has seen on the range's days (store.HasAttrKey).

// textFields appends the attribute fields of n's field:value terms that have
// a text reading.
func textFields(n node, out []string) []string {
	switch x := n.(type) {
	case andNode:
		for _, k := range x {
			out = textFields(k, out)
		}
	case orNode:
		for _, k := range x {
			out = textFields(k, out)
		}
	case notNode:
		out = textFields(x.kid, out)
	case attrNode:
		if x.text != nil && !slices.Contains(out, x.key) {
			out = append(out, x.key)
		}
	}
	return out
}

// Resolve returns q with each field:value whose field is an attribute that
// known reports absent read as text (see "Fields and text" above); q itself
// when there is none.
func (q *Query) Resolve(known func(key string) bool) *Query {
	if len(q.fields) == 0 {
		return q
	}
	text := map[string]bool{}
	for _, f := range q.fields {
		if !known(f) {
			text[f] = true
		}
	}
	if len(text) == 0 {
		return q
	}
	r := newQuery(q.src, simplify(asText(q.root, text)))
	r.spec = q.spec
	return r
}

// asText replaces the field:value terms of the attributes in text by their
// text reading.
func asText(n node, text map[string]bool) node {
	switch x := n.(type) {
	case andNode:
		out := make(andNode, len(x))
		for i, k := range x {
			out[i] = asText(k, text)
		}
		return out
	case orNode:
		out := make(orNode, len(x))
		for i, k := range x {
			out[i] = asText(k, text)
		}
		return out
	case notNode:
		return notNode{asText(x.kid, text)}
	case attrNode:
		if x.text != nil && text[x.key] {
			return x.text
		}
	}
	return n
}

// Lexing: the query is cut into items (terms, parentheses and the words AND,
// OR, NOT); a term's text is handed to Bleve's parser as it is.
type tokKind int

const (
	tkTerm tokKind = iota
	tkLParen
	tkRParen
	tkAnd
	tkOr
	tkNot
)

type token struct {
	kind tokKind
	text string
}

func lex(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '(':
			out = append(out, token{tkLParen, "("})
			i++
			continue
		case c == ')':
			out = append(out, token{tkRParen, ")"})
			i++
			continue
		case (c == '-' || c == '!') && i+1 < len(s) && s[i+1] == '(',
			c == '!' && i+1 < len(s) && s[i+1] != ' ' && s[i+1] != '=':
			// -( ... ), !( ... ) and !term negate.
			out = append(out, token{tkNot, string(c)})
			i++
			continue
		case c == '+' && i+1 < len(s) && s[i+1] == '(':
			i++
			continue
		}
		start := i
		inQuote, inRegex := false, false
		for i < len(s) {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i += 2
				continue
			}
			if inQuote {
				if c == '"' {
					inQuote = false
				}
				i++
				continue
			}
			if inRegex {
				if c == '/' {
					inRegex = false
				}
				i++
				continue
			}
			if c == '"' {
				inQuote = true
				i++
				continue
			}
			if c == '/' && (i == start || s[i-1] == ':' || (i == start+1 && (s[start] == '+' || s[start] == '-'))) {
				inRegex = true
				i++
				continue
			}
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' {
				break
			}
			i++
		}
		if inQuote {
			return nil, badf("unterminated quote in %q", s[start:])
		}
		if inRegex {
			return nil, badf("unterminated regular expression in %q", s[start:])
		}
		w := s[start:i]
		switch w {
		case "AND", "&&":
			out = append(out, token{tkAnd, w})
		case "OR", "||":
			out = append(out, token{tkOr, w})
		case "NOT", "!":
			out = append(out, token{tkNot, w})
		default:
			out = append(out, token{tkTerm, w})
		}
	}
	return out, nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

// parseOr: and-expr { OR and-expr }
func (p *parser) parseOr() (node, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	kids := []node{left}
	for t := p.peek(); t != nil && t.kind == tkOr; t = p.peek() {
		p.pos++
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		if right == nil {
			return nil, badf("OR needs a term on its right")
		}
		kids = append(kids, right)
	}
	if len(kids) == 1 {
		return left, nil
	}
	for _, k := range kids {
		if k == nil {
			return nil, badf("OR needs a term on its left")
		}
	}
	return orNode(kids), nil
}

// parseAnd: unary { [AND] unary }
func (p *parser) parseAnd() (node, error) {
	var kids []node
	for {
		t := p.peek()
		if t == nil || t.kind == tkOr || t.kind == tkRParen {
			break
		}
		if t.kind == tkAnd {
			if len(kids) == 0 {
				return nil, badf("AND needs a term on its left")
			}
			p.pos++
			if n := p.peek(); n == nil || n.kind == tkOr || n.kind == tkRParen || n.kind == tkAnd {
				return nil, badf("AND needs a term on its right")
			}
			continue
		}
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	switch len(kids) {
	case 0:
		return nil, nil
	case 1:
		return kids[0], nil
	}
	return andNode(kids), nil
}

func (p *parser) parseUnary() (node, error) {
	t := p.peek()
	switch t.kind {
	case tkNot:
		p.pos++
		if n := p.peek(); n == nil || n.kind == tkAnd || n.kind == tkOr || n.kind == tkRParen {
			return nil, badf("NOT needs a term after it")
		}
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case tkLParen:
		p.pos++
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c == nil || c.kind != tkRParen {
			return nil, badf("missing )")
		}
		p.pos++
		if n == nil {
			return nil, badf("empty ()")
		}
		return n, nil
	case tkRParen:
		return nil, badf("unexpected )")
	}
	p.pos++
	return parseTerm(t.text)
}

// parseTerm parses one term with Bleve's query-string parser.
func parseTerm(s string) (node, error) {
	neg := false
	if strings.HasPrefix(s, "+") {
		s = s[1:]
	} else if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	if s == "" {
		return nil, badf("empty term")
	}
	if n, ok, err := regexpTerm(s); ok {
		if err != nil {
			return nil, err
		}
		if neg {
			return notNode{n}, nil
		}
		return n, nil
	}
	parsed, err := bq.NewQueryStringQuery(s).Parse()
	if err != nil {
		return nil, badf("%q: %v", s, strings.TrimPrefix(err.Error(), "parse error: "))
	}
	b, ok := parsed.(*bq.BooleanQuery)
	if !ok {
		return nil, badf("%q: unsupported", s)
	}
	var leaves []bq.Query
	mustNot := false
	for _, part := range []struct {
		q   bq.Query
		not bool
	}{{b.Must, false}, {b.Should, false}, {b.MustNot, true}} {
		switch x := part.q.(type) {
		case *bq.ConjunctionQuery:
			leaves = append(leaves, x.Conjuncts...)
			if len(x.Conjuncts) > 0 && part.not {
				mustNot = true
			}
		case *bq.DisjunctionQuery:
			leaves = append(leaves, x.Disjuncts...)
			if len(x.Disjuncts) > 0 && part.not {
				mustNot = true
			}
		}
	}
	if len(leaves) != 1 {
		return nil, badf("%q: could not read it as one term", s)
	}
	n, err := leaf(leaves[0])
	if err != nil {
		return nil, err
	}
	if neg != mustNot {
		return notNode{n}, nil
	}
	return n, nil
}

// Field names with a meaning of their own; any other field is an attribute.
const (
	fMessage = "message"
	fLevel   = "level"
	fTrace   = "trace_id"
	fSpan    = "span_id"
	fID      = "id"
)

func labelField(f string) (string, bool) {
	switch f {
	case "service":
		return store.FieldService, true
	case "host":
		return store.FieldHost, true
	case "build_id", "build":
		return store.FieldBuild, true
	case "deploy_id", "deploy":
		return store.FieldDeploy, true
	}
	return "", false
}

func leaf(q bq.Query) (node, error) {
	switch x := q.(type) {
	case *bq.MatchQuery:
		if x.Fuzziness != 0 {
			return nil, badf("%q: fuzzy matching (~) is not supported", x.Match)
		}
		return valueNode(x.FieldVal, x.Match, false)
	case *bq.MatchPhraseQuery:
		return valueNode(x.FieldVal, x.MatchPhrase, true)
	case *bq.DisjunctionQuery:
		// A number: Bleve makes (match OR numeric equality).
		for _, d := range x.Disjuncts {
			if m, ok := d.(*bq.MatchQuery); ok {
				return valueNode(m.FieldVal, m.Match, false)
			}
		}
	case *bq.WildcardQuery:
		if x.Wildcard == "*" && x.FieldVal != "" {
			return existsNode(x.FieldVal)
		}
		return patternNode(x.FieldVal, wildcardRegexp(x.Wildcard), x.Wildcard)
	case *bq.RegexpQuery:
		return patternNode(x.FieldVal, x.Regexp, "/"+x.Regexp+"/")
	case *bq.NumericRangeQuery:
		f := x.FieldVal
		if f == "" || f == fMessage || f == fLevel || f == fTrace || f == fSpan || f == fID {
			return nil, badf("a numeric range needs an attribute field, as in status:>=500")
		}
		if _, ok := labelField(f); ok {
			return nil, badf("%s is not numeric", f)
		}
		r := rangeNode{key: f, min: x.Min, max: x.Max}
		if x.InclusiveMin != nil {
			r.minIncl = *x.InclusiveMin
		}
		if x.InclusiveMax != nil {
			r.maxIncl = *x.InclusiveMax
		}
		return r, nil
	case *bq.DateRangeStringQuery, *bq.DateRangeQuery:
		return nil, badf("date ranges are not supported in the query: use start and end")
	case *bq.MatchNoneQuery:
		return allNode{}, nil
	}
	return nil, badf("unsupported term %T", q)
}

// Empty and missing: a field's value is empty when the record has none (a
// label, trace or span id, or attribute not set) or it is "". field:"" matches
// the records where field is empty, field:* those where it is not; patterns
// never match an empty value. Every record has a level (info when none was
// given) and an id: level:* and id:* match all, level:"" nothing.

// existsNode is field:*.
func existsNode(field string) (node, error) {
	switch field {
	case fLevel, fID:
		return allNode{}, nil
	}
	n, err := emptyNode(field)
	if err != nil {
		return nil, err
	}
	return notNode{n}, nil
}

// emptyNode is field:"".
func emptyNode(field string) (node, error) {
	switch field {
	case fMessage, "msg":
		return msgEmptyNode{}, nil
	case fLevel:
		return noneNode{}, nil
	case fTrace:
		return idNode{field: store.FieldTrace}, nil
	case fSpan:
		return idNode{field: store.FieldSpan}, nil
	case fID:
		return nil, badf(`id:"": every record has an id`)
	}
	if lf, ok := labelField(field); ok {
		return labelNode{field: lf}, nil
	}
	return attrNode{key: field}, nil
}

// valueNode builds the node of field:value (or a bare word when field is empty).
func valueNode(field, value string, phrase bool) (node, error) {
	if value == "" && field != "" {
		return emptyNode(field)
	}
	switch field {
	case "", fMessage, "msg":
		return textNode(value), nil
	case fLevel:
		lv, ok := model.ParseLevel(value)
		if !ok || lv == model.LevelUnset {
			return nil, badf("unknown level %q (want trace, debug, info, warn, error or fatal)", value)
		}
		return levelNode{lv}, nil
	case fTrace:
		return idNode{field: store.FieldTrace, value: value}, nil
	case fSpan:
		return idNode{field: store.FieldSpan, value: value}, nil
	case fID:
		id, err := model.ParseID(value)
		if err != nil {
			return nil, badf("%v", err)
		}
		return recordIDNode{id}, nil
	}
	if lf, ok := labelField(field); ok {
		return labelNode{field: lf, value: value}, nil
	}
	return attrNode{key: field, value: value, text: textNode(field + ":" + value)}, nil
}

// textNode matches the tokens of s in a row in the message (all: none).
func textNode(s string) node {
	var w wordsNode
	store.EachToken(s, func(tok string, wide bool) {
		w.toks = append(w.toks, tok)
		w.wide = append(w.wide, wide)
	})
	if len(w.toks) == 0 {
		return allNode{}
	}
	return w
}

func patternNode(field, re, src string) (node, error) {
	if field == fLevel || field == fID {
		return nil, badf("%s:%s: patterns are not supported on %s", field, src, field)
	}
	full := field != "" && field != fMessage && field != "msg"
	expr := re
	if full {
		expr = "^(?:" + re + ")$"
	}
	rx, err := regexp.Compile(expr)
	if err != nil {
		return nil, badf("%s: %v", src, err)
	}
	switch field {
	case "", fMessage, "msg":
		if strings.HasPrefix(src, "/") {
			return msgRegexpNode{rx}, nil
		}
		// A wildcard matches one token of the message, case-insensitively.
		rx, err = regexp.Compile("^(?i:" + re + ")$")
		if err != nil {
			return nil, badf("%s: %v", src, err)
		}
		return tokenPatternNode{rx: rx, prefix: indexedPrefix(src)}, nil
	case fTrace:
		return stringPatternNode{get: func(l *store.Lines, i int) string { return l.Traces[i] }, rx: rx}, nil
	case fSpan:
		return stringPatternNode{get: func(l *store.Lines, i int) string { return l.Spans[i] }, rx: rx}, nil
	}
	if lf, ok := labelField(field); ok {
		return labelPatternNode{field: lf, rx: rx}, nil
	}
	return attrPatternNode{key: field, rx: rx}, nil
}

// indexedPrefix returns w's prefix, lower-cased, when w is a prefix the index
// can look up: MinIndexedPrefix or more ASCII letters or '_' and one trailing
// '*' (a digit would make the words id-like, kept in bloom filters only).
func indexedPrefix(w string) string {
	p, ok := strings.CutSuffix(w, "*")
	if !ok || len(p) < store.MinIndexedPrefix {
		return ""
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			return ""
		}
	}
	return strings.ToLower(p)
}

// wildcardRegexp turns * and ? into a regular expression, quoting the rest.
func wildcardRegexp(w string) string {
	var b strings.Builder
	for _, r := range w {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	return b.String()
}

func parseFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil
}

// regexpTerm reads /re/ and field:/re/ itself: Bleve's parser would cut a
// regular expression at its spaces.
func regexpTerm(s string) (node, bool, error) {
	field, re := "", s
	if i := strings.Index(s, ":/"); i > 0 && !strings.HasPrefix(s, "/") {
		field, re = s[:i], s[i+1:]
	}
	if len(re) < 2 || re[0] != '/' || re[len(re)-1] != '/' {
		return nil, false, nil
	}
	n, err := patternNode(field, re[1:len(re)-1], re)
	return n, true, err
}
