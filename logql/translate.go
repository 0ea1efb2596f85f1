package logql

import (
	"regexp"
	"strings"
)

// levels are shiplog's level names, in order.
var levels = []string{"trace", "debug", "info", "warn", "error", "fatal"}

// Translation is a log expression as shiplog's query string.
type Translation struct {
	// Query is the shiplog query selecting a superset of the expression's
	// matches (exactly them when Exact).
	Query string
	// Exact is set when the query alone decides the matches: no stage needs
	// to run on the records.
	Exact bool
	// None is set when nothing can match (a level that does not exist).
	None bool
}

// Translate turns the stream selector, the leading line filters and the
// label filters on stream labels before any parser into a shiplog query.
func Translate(e *LogExpr) Translation {
	var terms []string
	tr := Translation{Exact: true}
	for _, m := range e.Matchers {
		t, ok, none := matcherTerm(m)
		if none {
			tr.None = true
		}
		if !ok {
			tr.Exact = false
			continue
		}
		if t != "" {
			terms = append(terms, t)
		}
	}
	for _, f := range e.Filters {
		terms = append(terms, lineFilterTerms(f)...)
	}
	pushing := true
	for _, st := range e.Stages {
		switch st.Kind {
		case StageLabelFilter:
			if pushing {
				for _, f := range st.Filters {
					if t, ok := labelFilterTerm(f); ok {
						terms = append(terms, t)
					}
				}
			}
			tr.Exact = false
		case StageDrop:
			// Changes no match, only labels.
		default:
			pushing = false
			tr.Exact = false
		}
	}
	tr.Query = strings.Join(terms, " ")
	return tr
}

// Quote renders v as a quoted phrase of shiplog's query language.
func Quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// slashed renders a regular expression between slashes, escaping the slashes
// in it.
func slashed(re string) string {
	var b strings.Builder
	b.WriteByte('/')
	for i := 0; i < len(re); i++ {
		c := re[i]
		switch {
		case c == '\\' && i+1 < len(re):
			b.WriteByte(c)
			i++
			b.WriteByte(re[i])
		case c == '/':
			b.WriteString(`\/`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('/')
	return b.String()
}

// matcherTerm is the term of one label matcher (an absent label is the
// empty value, in Loki's matchers as in shiplog's label patterns); none is
// set when no record can match.
func matcherTerm(m Matcher) (term string, ok, none bool) {
	if m.Name == "level" {
		return levelTerm(m)
	}
	switch {
	case m.Op == "=" && m.Value == "":
		return "-" + m.Name + ":/.+/", true, false
	case m.Op == "=":
		return m.Name + ":" + Quote(m.Value), true, false
	case m.Op == "!=" && m.Value == "":
		return m.Name + ":/.+/", true, false
	case m.Op == "!=":
		return "-" + m.Name + ":" + Quote(m.Value), true, false
	case m.Op == "=~":
		return m.Name + ":" + slashed(m.Value), true, false
	}
	return "-" + m.Name + ":" + slashed(m.Value), true, false
}

// levelTerm lists the levels a matcher on level selects.
func levelTerm(m Matcher) (string, bool, bool) {
	var in []string
	for _, lv := range levels {
		if m.Matches(lv) {
			in = append(in, "level:"+lv)
		}
	}
	switch len(in) {
	case 0:
		return "", true, true
	case len(levels):
		return "", true, false
	case 1:
		return in[0], true, false
	}
	return "(" + strings.Join(in, " OR ") + ")", true, false
}

// lineFilterTerms: |= S is the case-sensitive regular expression of S (exact),
// plus the words S surely holds whole (those with spaces on both sides), which
// let the store's word index skip chunks.
func lineFilterTerms(f LineFilter) []string {
	switch f.Op {
	case "|=":
		if f.Value == "" {
			return nil
		}
		out := innerWords(f.Value)
		return append(out, slashed(regexp.QuoteMeta(f.Value)))
	case "!=":
		if f.Value == "" {
			return []string{"-/.*/"} // != "" drops every line
		}
		return []string{"-" + slashed(regexp.QuoteMeta(f.Value))}
	case "|~":
		return []string{slashed(f.Value)}
	}
	return []string{"-" + slashed(f.Value)}
}

// innerWords are the space-delimited words of s that are neither first nor
// last and consist of letters and digits only: any line holding s holds them
// as whole tokens.
func innerWords(s string) []string {
	parts := strings.Split(s, " ")
	var out []string
	for i := 1; i < len(parts)-1; i++ {
		w := parts[i]
		if w == "" || len(out) >= 4 {
			continue
		}
		plain := true
		for j := 0; j < len(w); j++ {
			c := w[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				plain = false
				break
			}
		}
		if plain {
			out = append(out, w)
		}
	}
	return out
}

// labelFilterTerm pushes a label filter on a stream label into the query.
func labelFilterTerm(f LabelFilter) (string, bool) {
	if _, ok := streamLabels[f.Name]; !ok || f.Numeric {
		return "", false
	}
	m := Matcher{Name: f.Name, Op: f.Op, Value: f.Value, rx: f.rx}
	t, ok, none := matcherTerm(m)
	if none {
		return "-/.*/", true // nothing matches; the stage says so too
	}
	return t, ok && t != ""
}
