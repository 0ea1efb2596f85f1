package query

import (
	"regexp"
	"strconv"
	"sync"

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
// word, several a phrase), case-insensitively; wide[i] is set when toks[i] was
// cut from a run with non-ASCII bytes (see store.EachToken).
type wordsNode struct {
	toks []string
	wide []bool
}

func (n wordsNode) match(l *store.Lines, i int) bool { return matchTokens(l.Msgs[i], n) }
func (wordsNode) needsText() bool                    { return true }
func (n wordsNode) cond() *store.Cond {
	cs := make([]*store.Cond, len(n.toks))
	for i, t := range n.toks {
		cs[i] = store.WordTerm(t, n.wide[i])
	}
	if len(cs) == 1 {
		return cs[0]
	}
	return store.And(cs...)
}

// matchTokens reports whether msg holds n's tokens in a row. A message of
// ASCII without escape sequences is matched in place; any other is cut into
// tokens as the index cuts it (store.EachToken): escape sequences removed,
// wide runs split and case-folded.
func matchTokens(msg string, n wordsNode) bool {
	toks := n.toks
	first := toks[0]
	if !model.HasANSI(msg) {
		if !n.wide[0] && !containsFold(msg, first) {
			return false
		}
		if !store.IsWide(msg) {
			return matchASCII(msg, toks)
		}
	}
	bp := tokPool.Get().(*[]string)
	defer tokPool.Put(bp)
	mt := store.Tokens((*bp)[:0], msg)
	*bp = mt
	for k := 0; k+len(toks) <= len(mt); k++ {
		if mt[k] != first {
			continue
		}
		ok := true
		for j, t := range toks[1:] {
			if mt[k+1+j] != t {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

var tokPool = sync.Pool{New: func() any { b := make([]string, 0, 64); return &b }}

// matchASCII is matchTokens for a message of ASCII bytes.
func matchASCII(msg string, toks []string) bool {
	first := toks[0]
	for i := 0; ; {
		a, b := store.NextToken(msg, i)
		if a < 0 {
			return false
		}
		i = b
		if !store.EqualFold(msg[a:b], first) {
			continue
		}
		ok, j := true, b
		for _, t := range toks[1:] {
			a2, b2 := store.NextToken(msg, j)
			if a2 < 0 || !store.EqualFold(msg[a2:b2], t) {
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

// containsFold reports whether s holds the lower-case ASCII string t,
// folding ASCII.
func containsFold(s, t string) bool {
	n := store.NewFoldNeedle(t)
	return n.Index(s) >= 0
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
	v := labelValue(l.Meta, n.field)
	return v != "" && n.rx.MatchString(v)
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

// attrNode is key:value; with an empty value, key:"" (the attribute is
// missing or empty). text, when set, is how the query reads key:value when no
// line has the attribute (Query.Resolve).
type attrNode struct {
	key, value string
	text       node
}

func (n attrNode) match(l *store.Lines, i int) bool {
	v, _ := attrOf(l.Attrs[i], n.key)
	return v == n.value
}
func (attrNode) needsText() bool { return true }
func (n attrNode) cond() *store.Cond {
	if n.value == "" {
		return store.All()
	}
	return store.AttrTerm(n.key, n.value)
}

type attrPatternNode struct {
	key string
	rx  *regexp.Regexp
}

func (n attrPatternNode) match(l *store.Lines, i int) bool {
	v, _ := attrOf(l.Attrs[i], n.key)
	return v != "" && n.rx.MatchString(v)
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
func (idNode) needsText() bool { return true }
func (n idNode) cond() *store.Cond {
	if n.value == "" {
		return store.All() // no id: not in the bloom filters
	}
	return store.Term(n.field, n.value)
}

type stringPatternNode struct {
	get func(l *store.Lines, i int) string
	rx  *regexp.Regexp
}

func (n stringPatternNode) match(l *store.Lines, i int) bool {
	v := n.get(l, i)
	return v != "" && n.rx.MatchString(v)
}
func (stringPatternNode) needsText() bool   { return true }
func (stringPatternNode) cond() *store.Cond { return store.All() }

// msgEmptyNode is message:"": an empty message.
type msgEmptyNode struct{}

func (msgEmptyNode) match(l *store.Lines, i int) bool { return l.Msgs[i] == "" }
func (msgEmptyNode) needsText() bool                  { return true }
func (msgEmptyNode) cond() *store.Cond                { return store.All() }

// noneNode matches nothing.
type noneNode struct{}

func (noneNode) match(*store.Lines, int) bool { return false }
func (noneNode) needsText() bool              { return false }
func (noneNode) cond() *store.Cond            { return store.None() }

type recordIDNode struct{ id model.ID }

func (n recordIDNode) match(l *store.Lines, i int) bool { return l.ID(i) == n.id }
func (recordIDNode) needsText() bool                    { return false }
func (recordIDNode) cond() *store.Cond                  { return store.All() }

// msgRegexpNode matches a regular expression anywhere in the message, as a
// terminal shows it (without escape sequences).
type msgRegexpNode struct{ rx *regexp.Regexp }

func (n msgRegexpNode) match(l *store.Lines, i int) bool {
	return n.rx.MatchString(model.StripANSI(l.Msgs[i]))
}
func (msgRegexpNode) needsText() bool   { return true }
func (msgRegexpNode) cond() *store.Cond { return store.All() }

// tokenPatternNode matches when some run of the message (store.NextToken,
// after escape sequences are removed) matches rx: a wildcard sees whole words,
// CJK runs uncut.
type tokenPatternNode struct {
	rx *regexp.Regexp
	// prefix, for word* of ASCII letters, is word lower-cased: the index
	// finds the chunks holding a token that starts with it.
	prefix string
}

func (n tokenPatternNode) match(l *store.Lines, i int) bool {
	msg := model.StripANSI(l.Msgs[i])
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
func (tokenPatternNode) needsText() bool { return true }
func (n tokenPatternNode) cond() *store.Cond {
	if n.prefix != "" {
		return store.PrefixTerm(n.prefix)
	}
	return store.All()
}

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
