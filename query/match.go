package query

import (
	"regexp"
	"strconv"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// node is one part of a parsed query. match tests line i of a chunk; cond gives
// the chunk-level filter (a superset of what match accepts).
type node interface {
	match(l *store.Lines, i int) bool
	needsText() bool
	cond() *store.Cond
}

type allNode struct{}

func (allNode) match(*store.Lines, int) bool { return true }
func (allNode) needsText() bool              { return false }
func (allNode) cond() *store.Cond            { return store.All() }

type andNode []node

func (n andNode) match(l *store.Lines, i int) bool {
	for _, k := range n {
		if !k.match(l, i) {
			return false
		}
	}
	return true
}
func (n andNode) needsText() bool { return anyText(n) }
func (n andNode) cond() *store.Cond {
	cs := make([]*store.Cond, len(n))
	for i, k := range n {
		cs[i] = k.cond()
	}
	return store.And(cs...)
}

type orNode []node

func (n orNode) match(l *store.Lines, i int) bool {
	for _, k := range n {
		if k.match(l, i) {
			return true
		}
	}
	return false
}
func (n orNode) needsText() bool { return anyText(n) }
func (n orNode) cond() *store.Cond {
	cs := make([]*store.Cond, len(n))
	for i, k := range n {
		cs[i] = k.cond()
	}
	return store.Or(cs...)
}

func anyText(ns []node) bool {
	for _, k := range ns {
		if k.needsText() {
			return true
		}
	}
	return false
}

type notNode struct{ kid node }

func (n notNode) match(l *store.Lines, i int) bool { return !n.kid.match(l, i) }
func (n notNode) needsText() bool                  { return n.kid.needsText() }
func (n notNode) cond() *store.Cond                { return store.Not(n.kid.cond()) }

// wordsNode matches messages holding toks as consecutive tokens (one token is a
// word, several a phrase), case-insensitively.
type wordsNode struct{ toks []string }

func (n wordsNode) match(l *store.Lines, i int) bool { return matchTokens(l.Msgs[i], n.toks) }
func (wordsNode) needsText() bool                    { return true }
func (n wordsNode) cond() *store.Cond {
	cs := make([]*store.Cond, len(n.toks))
	for i, t := range n.toks {
		cs[i] = store.Term(store.FieldWord, t)
	}
	if len(cs) == 1 {
		return cs[0]
	}
	return store.And(cs...)
}

func matchTokens(msg string, toks []string) bool {
	first := toks[0]
	if !containsFold(msg, first) {
		return false
	}
	for i := 0; ; {
		a, b := store.NextToken(msg, i)
		if a < 0 {
			return false
		}
		i = b
		if !equalFold(msg[a:b], first) {
			continue
		}
		ok, j := true, b
		for _, t := range toks[1:] {
			a2, b2 := store.NextToken(msg, j)
			if a2 < 0 || !equalFold(msg[a2:b2], t) {
				ok = false
				break
			}
			j = b2
		}
		if ok {
			return true
		}
	}
}

// equalFold compares s with the lower-case token t, folding ASCII only.
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		if c != t[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether s holds the lower-case string t, folding ASCII.
func containsFold(s, t string) bool {
	n := len(t)
	if n == 0 {
		return true
	}
	c0 := t[0]
	u0 := c0
	if c0 >= 'a' && c0 <= 'z' {
		u0 = c0 - 32
	}
	for k := 0; k+n <= len(s); k++ {
		if c := s[k]; (c == c0 || c == u0) && equalFold(s[k:k+n], t) {
			return true
		}
	}
	return false
}

type levelNode struct{ lv model.Level }

func (n levelNode) match(l *store.Lines, i int) bool {
	lv := l.Levels[i]
	if lv == model.LevelUnset {
		lv = model.LevelInfo
	}
	return lv == n.lv
}
func (levelNode) needsText() bool     { return false }
func (n levelNode) cond() *store.Cond { return store.Term(store.FieldLevel, n.lv.String()) }

func labelValue(m *store.ChunkMeta, field string) string {
	switch field {
	case store.FieldService:
		return m.Labels.Service
	case store.FieldHost:
		return m.Labels.Host
	case store.FieldBuild:
		return m.Labels.BuildID
	}
	return m.Labels.DeployID
}

type labelNode struct{ field, value string }

func (n labelNode) match(l *store.Lines, i int) bool { return labelValue(l.Meta, n.field) == n.value }
func (labelNode) needsText() bool                    { return false }
func (n labelNode) cond() *store.Cond                { return store.Term(n.field, n.value) }

type labelPatternNode struct {
	field string
	rx    *regexp.Regexp
}

func (n labelPatternNode) match(l *store.Lines, i int) bool {
	return n.rx.MatchString(labelValue(l.Meta, n.field))
}
func (labelPatternNode) needsText() bool { return false }
func (labelPatternNode) cond() *store.Cond {
	return store.All()
}

func attrOf(as []model.Attr, key string) (string, bool) {
	for _, a := range as {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

type attrNode struct{ key, value string }

func (n attrNode) match(l *store.Lines, i int) bool {
	v, ok := attrOf(l.Attrs[i], n.key)
	return ok && v == n.value
}
func (attrNode) needsText() bool     { return true }
func (n attrNode) cond() *store.Cond { return store.AttrTerm(n.key, n.value) }

type attrPatternNode struct {
	key string
	rx  *regexp.Regexp
}

func (n attrPatternNode) match(l *store.Lines, i int) bool {
	v, ok := attrOf(l.Attrs[i], n.key)
	return ok && n.rx.MatchString(v)
}
func (attrPatternNode) needsText() bool   { return true }
func (attrPatternNode) cond() *store.Cond { return store.All() }

type rangeNode struct {
	key              string
	min, max         *float64
	minIncl, maxIncl bool
}

func (n rangeNode) match(l *store.Lines, i int) bool {
	s, ok := attrOf(l.Attrs[i], n.key)
	if !ok {
		return false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false
	}
	if n.min != nil && (v < *n.min || v == *n.min && !n.minIncl) {
		return false
	}
	if n.max != nil && (v > *n.max || v == *n.max && !n.maxIncl) {
		return false
	}
	return true
}
func (rangeNode) needsText() bool   { return true }
func (rangeNode) cond() *store.Cond { return store.All() }

// idNode matches a trace or span id exactly.
type idNode struct{ field, value string }

func (n idNode) match(l *store.Lines, i int) bool {
	if n.field == store.FieldTrace {
		return l.Traces[i] == n.value
	}
	return l.Spans[i] == n.value
}
func (idNode) needsText() bool     { return true }
func (n idNode) cond() *store.Cond { return store.Term(n.field, n.value) }

type stringPatternNode struct {
	get func(l *store.Lines, i int) string
	rx  *regexp.Regexp
}

func (n stringPatternNode) match(l *store.Lines, i int) bool { return n.rx.MatchString(n.get(l, i)) }
func (stringPatternNode) needsText() bool                    { return true }
func (stringPatternNode) cond() *store.Cond                  { return store.All() }

type recordIDNode struct{ id model.ID }

func (n recordIDNode) match(l *store.Lines, i int) bool { return l.ID(i) == n.id }
func (recordIDNode) needsText() bool                    { return false }
func (recordIDNode) cond() *store.Cond                  { return store.All() }

// msgRegexpNode matches a regular expression anywhere in the message.
type msgRegexpNode struct{ rx *regexp.Regexp }

func (n msgRegexpNode) match(l *store.Lines, i int) bool { return n.rx.MatchString(l.Msgs[i]) }
func (msgRegexpNode) needsText() bool                    { return true }
func (msgRegexpNode) cond() *store.Cond                  { return store.All() }

// tokenPatternNode matches when some token of the message matches rx.
type tokenPatternNode struct{ rx *regexp.Regexp }

func (n tokenPatternNode) match(l *store.Lines, i int) bool {
	msg := l.Msgs[i]
	for j := 0; ; {
		a, b := store.NextToken(msg, j)
		if a < 0 {
			return false
		}
		if n.rx.MatchString(msg[a:b]) {
			return true
		}
		j = b
	}
}
func (tokenPatternNode) needsText() bool   { return true }
func (tokenPatternNode) cond() *store.Cond { return store.All() }

// simplify flattens nested ANDs and ORs and drops match-all parts.
func simplify(n node) node {
	switch x := n.(type) {
	case andNode:
		var out andNode
		for _, k := range x {
			k = simplify(k)
			switch kk := k.(type) {
			case allNode:
				continue
			case andNode:
				out = append(out, kk...)
			default:
				out = append(out, k)
			}
		}
		switch len(out) {
		case 0:
			return allNode{}
		case 1:
			return out[0]
		}
		return out
	case orNode:
		var out orNode
		for _, k := range x {
			k = simplify(k)
			switch kk := k.(type) {
			case allNode:
				return allNode{}
			case orNode:
				out = append(out, kk...)
			default:
				out = append(out, k)
			}
		}
		if len(out) == 1 {
			return out[0]
		}
		return out
	case notNode:
		k := simplify(x.kid)
		if kk, ok := k.(notNode); ok {
			return kk.kid
		}
		return notNode{k}
	}
	return n
}

// countable reports whether chunk metadata counts n's matches exactly.
func countable(n node) (bool, model.Level) {
	switch x := n.(type) {
	case allNode, labelNode:
		return true, model.LevelUnset
	case levelNode:
		return true, x.lv
	case andNode:
		lv := model.LevelUnset
		for _, k := range x {
			switch kk := k.(type) {
			case labelNode:
			case levelNode:
				if lv != model.LevelUnset {
					return false, 0
				}
				lv = kk.lv
			default:
				return false, 0
			}
		}
		return true, lv
	}
	return false, 0
}

// metaCount is the exact number of a chunk's lines that match a countable query
// (labels were already checked by the store's chunk filter).
func (q *Query) metaCount(m *store.ChunkMeta) int {
	if q.countLevel == model.LevelUnset {
		return int(m.Count)
	}
	return int(m.Levels[q.countLevel])
}
