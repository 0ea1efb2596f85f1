package store

import (
	"slices"
	"sort"

	"github.com/shiplog/shiplog/model"
)

// Finding one build's (deploy's, host's, service's) chunks: every sealed
// chunk's metadata is in memory, and with it each stream's chunks in order
// (Store.streams). labelStreams adds, for each label value, the streams that
// carry it, so the chunks of a build on a day are its streams' chunks on
// that day: a few binary searches, no Bleve search. Nothing of it is on disk:
// Open rebuilds it from the chunk metadata (m keys) it loads anyway, so a
// store of any version is read the same way.

// labelKey is one label's value: field is FieldService, FieldHost,
// FieldBuild or FieldDeploy.
type labelKey struct {
	field string
	value string
}

// maxLabelChunks: a condition that also holds words or attributes is
// narrowed by its labels' streams only when they have at most this many
// chunks on the day (else the day's index, which knows the words, narrows
// it further).
const maxLabelChunks = 64

// indexStreamLabels adds (or, when add is not set, removes) stream under each
// of its non-empty labels. Caller holds mu for writing.
func (s *Store) indexStreamLabels(stream uint64, l model.Labels, add bool) {
	for _, k := range []labelKey{{FieldService, l.Service}, {FieldHost, l.Host}, {FieldBuild, l.BuildID}, {FieldDeploy, l.DeployID}} {
		if k.value == "" {
			continue
		}
		ids := s.labelStreams[k]
		if add {
			s.labelStreams[k] = append(ids, stream)
			continue
		}
		if i := slices.Index(ids, stream); i >= 0 {
			ids = slices.Delete(ids, i, i+1)
		}
		if len(ids) == 0 {
			delete(s.labelStreams, k)
		} else {
			s.labelStreams[k] = ids
		}
	}
}

// labelTerms returns the label terms (with a value) every match of c must
// carry: c itself, or the kids of an And.
func (c *Cond) labelTerms() []*Cond {
	if c.Op == CondTerm && isLabelField(c.Field) && c.Value != "" {
		return []*Cond{c}
	}
	var out []*Cond
	if c.Op == CondAnd {
		for _, k := range c.Kids {
			out = append(out, k.labelTerms()...)
		}
	}
	return out
}

// onlyMeta reports whether c names nothing the day's index knows better than
// the chunk metadata does: no words, prefixes or attributes.
func (c *Cond) onlyMeta() bool {
	switch c.Op {
	case CondPrefix:
		return false
	case CondTerm:
		return c.Field != FieldWord && c.Field != FieldAttr
	}
	for _, k := range c.Kids {
		if !k.onlyMeta() {
			return false
		}
	}
	return true
}

// labelChunks returns the sealed chunks of day whose streams carry the label
// of c's most selective label term, and whether it found them that way (c has
// a label term, and it narrows as well as the index would: see
// maxLabelChunks). Caller holds mu.
func (s *Store) labelChunks(day uint32, c *Cond) ([]*ChunkMeta, bool) {
	terms := c.labelTerms()
	if len(terms) == 0 {
		return nil, false
	}
	var ids []uint64
	for i, t := range terms {
		l := s.labelStreams[labelKey{t.Field, t.Value}]
		if i == 0 || len(l) < len(ids) {
			ids = l
		}
	}
	limit := maxLabelChunks
	if c.onlyMeta() {
		limit = len(s.days[day])
	}
	var out []*ChunkMeta
	for _, id := range ids {
		cs := s.streams[id]
		i := sort.Search(len(cs), func(i int) bool { return cs[i].Day >= day })
		for ; i < len(cs) && cs[i].Day == day; i++ {
			if out = append(out, cs[i]); len(out) > limit {
				return nil, false
			}
		}
	}
	return out, true
}
