package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/model"
)

// CondOp is the kind of a Cond.
type CondOp uint8

// Cond operators.
const (
	CondAll  CondOp = iota // every chunk
	CondTerm               // Field (Key) = Value
	CondAnd
	CondOr
	CondNot
	CondNone   // no chunk
	CondPrefix // a message token starting with Value
)

// Cond is a chunk-level filter: the query planner turns a query into one, and
// the store answers with every chunk that may hold a matching line (a superset:
// lines must still be checked one by one).
//
// Terms: FieldService, FieldHost, FieldBuild, FieldDeploy match a label exactly;
// FieldLevel a level name; FieldWord one token (see Tokens); FieldAttr
// attribute Key with exact Value; FieldTrace and FieldSpan an id. A label
// term with an empty Value matches the chunks without that label.
type Cond struct {
	Op    CondOp
	Field string
	Key   string
	Value string
	Kids  []*Cond
	// Wide marks a FieldWord token cut from a run with non-ASCII bytes:
	// indexes of token format 1 do not hold it, nor do older bloom filters,
	// so neither narrows the search for it there.
	Wide bool
}

// Term, And, Or, Not and All build conditions.
func Term(field, value string) *Cond { return &Cond{Op: CondTerm, Field: field, Value: value} }

// WordTerm matches chunks holding a message token (wide: see Cond.Wide).
func WordTerm(tok string, wide bool) *Cond {
	return &Cond{Op: CondTerm, Field: FieldWord, Value: tok, Wide: wide}
}

// AttrTerm matches attribute key with exactly value.
func AttrTerm(key, value string) *Cond {
	return &Cond{Op: CondTerm, Field: FieldAttr, Key: key, Value: value}
}

// And matches chunks every kid matches.
func And(kids ...*Cond) *Cond { return &Cond{Op: CondAnd, Kids: kids} }

// Or matches chunks any kid matches.
func Or(kids ...*Cond) *Cond { return &Cond{Op: CondOr, Kids: kids} }

// Not matches chunks the kid does not certainly match.
func Not(kid *Cond) *Cond { return &Cond{Op: CondNot, Kids: []*Cond{kid}} }

// All lets every chunk through: the condition cannot be judged per chunk.
func All() *Cond { return &Cond{Op: CondAll} }

// None lets no chunk through.
func None() *Cond { return &Cond{Op: CondNone} }

// PrefixTerm matches chunks that may hold a message token starting with p (a
// lower-case run of at least MinIndexedPrefix ASCII letters or '_').
func PrefixTerm(p string) *Cond { return &Cond{Op: CondPrefix, Field: FieldWord, Value: p} }

// tri is a three-valued truth: no line of the chunk matches, some may, all do.
type tri int8

const (
	triNo tri = iota
	triMaybe
	triYes
)

func (c *Cond) usesBloom() bool {
	switch c.Op {
	case CondTerm:
		return c.inBloom()
	case CondAnd, CondOr, CondNot:
		for _, k := range c.Kids {
			if k.usesBloom() {
				return true
			}
		}
	}
	return false
}

func (c *Cond) inBloom() bool {
	switch c.Field {
	case FieldWord:
		return IsIDLike(c.Value)
	case FieldAttr:
		return attrInBloom(c.Value)
	case FieldTrace, FieldSpan:
		return true
	}
	return false
}

func (c *Cond) bloomToken() string {
	switch c.Field {
	case FieldAttr:
		return attrToken(c.Key, c.Value)
	case FieldTrace, FieldSpan:
		return c.Field + "=" + c.Value
	}
	return c.Value
}

// eval judges a chunk by its metadata and (when not nil) its bloom filter.
func (c *Cond) eval(m *ChunkMeta, bf *bloom) tri {
	switch c.Op {
	case CondAll:
		// All filters nothing at chunk level; it proves nothing either.
		return triMaybe
	case CondNone:
		return triNo
	case CondPrefix:
		return triMaybe
	case CondAnd:
		r := triYes
		for _, k := range c.Kids {
			r = min(r, k.eval(m, bf))
			if r == triNo {
				return r
			}
		}
		return r
	case CondOr:
		r := triNo
		for _, k := range c.Kids {
			r = max(r, k.eval(m, bf))
			if r == triYes {
				return r
			}
		}
		return r
	case CondNot:
		return triYes - c.Kids[0].eval(m, bf)
	}
	var label *string
	switch c.Field {
	case FieldService:
		label = &m.Labels.Service
	case FieldHost:
		label = &m.Labels.Host
	case FieldBuild:
		label = &m.Labels.BuildID
	case FieldDeploy:
		label = &m.Labels.DeployID
	case FieldLevel:
		lv, ok := model.ParseLevel(c.Value)
		if !ok {
			return triNo
		}
		if lv == model.LevelUnset {
			lv = model.LevelInfo
		}
		switch m.Levels[lv] {
		case 0:
			return triNo
		case m.Count:
			return triYes
		}
		return triMaybe
	}
	if label != nil {
		if *label == c.Value {
			return triYes
		}
		return triNo
	}
	if bf != nil && c.inBloom() && !c.Wide && !bf.mayContain(c.bloomToken()) {
		return triNo
	}
	return triMaybe
}

// dayIndex is what Cond.bleveQuery needs to know of a day's index: its
// token format, whether a prefix expands to few enough terms in it to be
// looked up there (narrow), and the day's words (daywords.go: in no
// document of a chunk sealed after them; with anyWord, the day's words did
// not decode, and any word may be one).
type dayIndex struct {
	format  int
	narrow  func(prefix string) bool
	common  map[string]struct{}
	anyWord bool
}

// bleveQuery translates c into a Bleve query over the chunk documents of a
// day's index, or nil when the index cannot narrow the chunks down (every
// chunk of the day is a candidate).
func (c *Cond) bleveQuery(x *dayIndex) query.Query {
	f := x.format
	switch c.Op {
	case CondAll:
		return nil
	case CondNone:
		return query.NewMatchNoneQuery()
	case CondPrefix:
		if f < 2 || len(c.Value) < MinIndexedPrefix || x.anyWord || anyWithPrefix(x.common, c.Value) || !x.narrow(c.Value) {
			return nil
		}
		words := query.NewPrefixQuery(c.Value)
		words.SetField(FieldWord)
		heads := query.NewPrefixQuery(c.Value)
		heads.SetField(FieldHead)
		return query.NewDisjunctionQuery([]query.Query{words, heads})
	case CondAnd:
		var qs []query.Query
		for _, k := range c.Kids {
			if q := k.bleveQuery(x); q != nil {
				qs = append(qs, q)
			}
		}
		switch len(qs) {
		case 0:
			return nil
		case 1:
			return qs[0]
		}
		return query.NewConjunctionQuery(qs)
	case CondOr:
		qs := make([]query.Query, 0, len(c.Kids))
		for _, k := range c.Kids {
			q := k.bleveQuery(x)
			if q == nil {
				return nil
			}
			qs = append(qs, q)
		}
		if len(qs) == 1 {
			return qs[0]
		}
		return query.NewDisjunctionQuery(qs)
	case CondNot:
		k := c.Kids[0]
		if k.Op != CondTerm || !isLabelField(k.Field) {
			return nil
		}
		kq := k.bleveQuery(x)
		if kq == nil {
			return nil
		}
		return query.NewBooleanQuery([]query.Query{query.NewMatchAllQuery()}, nil, []query.Query{kq})
	}
	if c.inBloom() || c.Wide && f < 2 || c.Value == "" && isLabelField(c.Field) {
		// A missing label is not in the index: the chunk metadata answers.
		return nil
	}
	if _, ok := x.common[c.Value]; (ok || x.anyWord) && c.Field == FieldWord {
		return nil // a day word: in no document of the chunks sealed after it
	}
	var tq *query.TermQuery
	switch c.Field {
	case FieldAttr:
		tq = query.NewTermQuery(attrToken(c.Key, c.Value))
	case FieldLevel:
		lv, _ := model.ParseLevel(c.Value)
		tq = query.NewTermQuery(lv.String())
	default:
		tq = query.NewTermQuery(c.Value)
	}
	tq.SetField(c.Field)
	return tq
}

func isLabelField(f string) bool {
	return f == FieldService || f == FieldHost || f == FieldBuild || f == FieldDeploy
}

// ChunkRef is a candidate chunk: sealed (in Badger) or open (in memory).
type ChunkRef struct {
	Meta *ChunkMeta
	mem  *Lines // set for open and sealing chunks
	// All is set when the chunk's metadata proves every line matches the
	// condition (the time range still needs checking).
	All bool
	// Src is the caller's own tag: a reader over several stores sets it to
	// know which store a ref came from. The store never reads it.
	Src int
}

// InMemory reports whether the chunk is still open (or being sealed): its lines
// are in memory and loading it costs nothing.
func (r ChunkRef) InMemory() bool { return r.mem != nil }

// dayCandidates returns the chunks of day that day's index lets through for
// c (chunks, every sealed chunk of the day, when it cannot narrow them;
// unindexed ones always pass).
func (s *Store) dayCandidates(ctx context.Context, day uint32, c *Cond, chunks, unindexed []*ChunkMeta) ([]*ChunkMeta, error) {
	bq := c.bleveQuery(&dayIndex{
		format:  s.idx.format(day),
		narrow:  func(p string) bool { return s.idx.fewPrefixTerms(day, p) },
		common:  s.words.of(day),
		anyWord: s.words.isBroken(day),
	})
	if bq == nil {
		return chunks, nil
	}
	ids, err := s.idx.search(ctx, day, bq)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		// The index cannot answer (a full disk, a broken index): every
		// chunk of the day is a candidate, checked line by line. Slower,
		// never wrong.
		s.indexFailures.Add(1)
		if s.indexFailures.Load()%100 == 1 {
			s.log.Warn("store: day index unusable, scanning its chunks", "day", dayName(day), "err", err)
		}
		return chunks, nil
	}
	metas := make([]*ChunkMeta, 0, len(ids)+len(unindexed))
	s.mu.RLock()
	for _, id := range ids {
		if m := s.chunks[id]; m != nil {
			metas = append(metas, m)
		}
	}
	s.mu.RUnlock()
	return append(metas, unindexed...), nil
}

func (s *Store) loadBlooms(ctx context.Context, metas []*ChunkMeta) (map[uint64]*bloom, error) {
	out := make(map[uint64]*bloom, len(metas))
	err := s.db.View(func(txn *badger.Txn) error {
		for i, m := range metas {
			if i%256 == 255 && ctx.Err() != nil {
				return ctx.Err()
			}
			it, err := txn.Get(chunkKey(pfxBloom, m.Day, m.ID))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			out[m.ID] = unmarshalBloom(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load blooms: %w", err)
	}
	return out, nil
}

// Load returns a candidate's lines: times and levels always, the text columns
// when text is set (open chunks always have them).
func (s *Store) Load(ctx context.Context, r ChunkRef, text bool) (*Lines, error) {
	if r.mem != nil {
		return r.mem, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := s.loadSealed(r.Meta, text)
	if l != nil {
		l.Src = r.Src
	}
	return l, err
}

// LoadWord loads a candidate's lines with their text for a search whose
// every match holds word (a lower-case token, as Tokens cuts it): of the
// messages, only the blocks whose word filter may hold it are decompressed
// (c values of version 3; an id-like word is in no filter). The lines of the
// others are marked in Lines.Skipped and have empty messages: a caller
// looks at lines holding word only. Open chunks come whole.
func (s *Store) LoadWord(ctx context.Context, r ChunkRef, word string) (*Lines, error) {
	if r.mem != nil {
		return r.mem, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if IsIDLike(word) {
		word = ""
	}
	l, err := s.loadSealedWord(r.Meta, true, word)
	if l != nil {
		l.Src = r.Src
	}
	return l, err
}

func (s *Store) loadSealed(m *ChunkMeta, text bool) (*Lines, error) {
	return s.loadSealedWord(m, text, "")
}

func (s *Store) loadSealedWord(m *ChunkMeta, text bool, word string) (*Lines, error) {
	var l *Lines
	var tp *textParts
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(chunkKey(pfxTimes, m.Day, m.ID))
		if err != nil {
			return err
		}
		s.noteMappedRead(int(it.ValueSize()))
		// Decoded where Badger keeps it, not copied first.
		if err := it.Value(func(tv []byte) (err error) {
			l, err = decodeChunk(m, tv, nil)
			return err
		}); err != nil {
			return err
		}
		if !text {
			return nil
		}
		if it, err = txn.Get(chunkKey(pfxChunk, m.Day, m.ID)); err != nil {
			return err
		}
		// Cut the text value where Badger keeps it (its value log is
		// memory-mapped): only the columns used and the message blocks
		// that may hold word are read and copied, not the whole value.
		s.noteMappedRead(int(it.ValueSize()))
		return it.Value(func(cv []byte) (err error) {
			tp, err = splitText(cv, int(m.Count), word, true, s.dicts.decoder())
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("chunk %d: %w", m.ID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	if l.Len() != int(m.Count) {
		err = fmt.Errorf("%w: times has %d lines, metadata %d", errCorrupt, l.Len(), m.Count)
	}
	if err == nil && tp != nil {
		err = l.setText(tp)
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	return l, nil
}

// LoadAttrs returns a candidate's times, levels and attributes only: of its
// text value only the attributes column is copied and decoded (Msgs, Traces,
// Spans and Seqs stay nil, so LoadText still loads them). Open chunks come
// whole.
func (s *Store) LoadAttrs(ctx context.Context, r ChunkRef) (*Lines, error) {
	if r.mem != nil {
		return r.mem, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := r.Meta
	var tv, ac []byte
	var n int
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(chunkKey(pfxTimes, m.Day, m.ID))
		if err != nil {
			return err
		}
		s.noteMappedRead(int(it.ValueSize()))
		if tv, err = it.ValueCopy(nil); err != nil {
			return err
		}
		if it, err = txn.Get(chunkKey(pfxChunk, m.Day, m.ID)); err != nil {
			return err
		}
		s.noteMappedRead(int(it.ValueSize()))
		return it.Value(func(cv []byte) error {
			cn, cols, err := splitColumns(cv, numCols-colMsgLens)
			if err != nil {
				return err
			}
			n, ac = cn, append([]byte(nil), cols[colAttrs-colMsgLens]...)
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("chunk %d: %w", m.ID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	l, err := decodeChunk(m, tv, nil)
	if err == nil && n != l.Len() {
		err = fmt.Errorf("%w: text has %d lines, times %d", errCorrupt, n, l.Len())
	}
	if err == nil {
		l.Attrs, l.attrArray, err = decodeAttrs(ac, n, n, nil, &l.pooled)
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	l.Src = r.Src
	return l, nil
}

// loadText reads the text columns of a sealed chunk into l.
func (s *Store) loadText(l *Lines) error {
	m := l.Meta
	var cv []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(chunkKey(pfxChunk, m.Day, m.ID))
		if err != nil {
			return err
		}
		s.noteMappedRead(int(it.ValueSize()))
		cv, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("chunk %d: %w", m.ID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	if err := l.decodeText(cv, s.dicts.decoder()); err != nil {
		return fmt.Errorf("load chunk %d: %w", m.ID, err)
	}
	return nil
}

// LoadText adds the text columns to lines loaded without them.
func (s *Store) LoadText(ctx context.Context, l *Lines) error {
	if l.Msgs != nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.loadText(l)
}

func binaryID(k []byte) uint64 { return binary.BigEndian.Uint64(k[5:13]) }
