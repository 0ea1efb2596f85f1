package store

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/document"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"
	bindex "github.com/blevesearch/bleve_index_api"
	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/model"
)

// Field names of a chunk document in Bleve, and of Cond terms.
const (
	FieldService = "service"
	FieldHost    = "host"
	FieldBuild   = "build_id"
	FieldDeploy  = "deploy_id"
	FieldLevel   = "level"
	FieldWord    = "msg"   // an ordinary (not id-like) token of a message
	FieldAttr    = "attr"  // key=value of an attribute
	FieldTrace   = "trace" // trace id (bloom only)
	FieldSpan    = "span"  // span id (bloom only)
	// FieldHead holds the leading letters of id-like message tokens (before
	// their first digit, when MinIndexedPrefix long or more): testpayment of
	// testpayment2, so that a prefix finds the tokens kept in bloom filters.
	FieldHead = "head"
)

// MinIndexedPrefix is the shortest prefix (TestPay*) looked up in the index;
// shorter ones check every line of the range.
const MinIndexedPrefix = 3

// maxPrefixTerms bounds the index terms a prefix may expand to on one day;
// a prefix with more is not looked up there (its lines are checked instead).
const maxPrefixTerms = 5000

// idHead returns the leading part of an id-like token before its first
// digit, or "" when that is shorter than MinIndexedPrefix.
func idHead(tok string) string {
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c >= '0' && c <= '9' {
			if i < MinIndexedPrefix {
				return ""
			}
			return tok[:i]
		}
	}
	return tok
}

// maxIndexedAttrValue: longer attribute values go to the bloom filter.
const maxIndexedAttrValue = 64

// attrInBloom reports whether attribute key=value is kept in the chunk's bloom
// filter rather than in Bleve.
func attrInBloom(value string) bool {
	return len(value) > maxIndexedAttrValue || IsIDLike(value)
}

func attrToken(key, value string) string { return key + "=" + value }

// sep separates tokens inside one Bleve field value.
const sep = 0

// chunkToks are the index terms of one chunk.
type chunkToks struct {
	words  []string
	heads  []string
	attrs  []string
	levels []string
	bloom  *bloom
	blocks *msgFilters // the message blocks' word filters (chunk_blocks.go)
}

func chunkTokens(l *Lines) *chunkToks { return chunkTokensFor(l, textVersion) }

// chunkTokensFor returns the index terms of a chunk whose c value is of the
// given version (its message blocks' size).
func chunkTokensFor(l *Lines, version byte) *chunkToks {
	sc := getTokScratch(l.Len())
	defer putTokScratch(sc)
	// words maps each ordinary token to the message blocks (bits) holding it.
	words := sc.words
	attrs := make(map[model.Attr]struct{}, 64)
	heads := map[string]struct{}{}
	bl := blockLines(l.Len(), version)
	var bit uint64
	// Id-like tokens are nearly all distinct: they go to the bloom filter
	// by hash (deduplicated below), with no set of strings.
	ids := sc.ids[:0]
	defer func() { sc.ids = ids[:0] }()
	addID := func(tok string) { // a message's token: it holds no '=' (attrToken's)
		ids = append(ids, xxhash.Sum64String(tok))
		if h := idHead(tok); h != "" {
			heads[h] = struct{}{}
		}
	}
	add := func(tok string, _ bool) {
		if IsIDLike(tok) {
			addID(tok)
		} else {
			words.add(tok, bit, true)
		}
	}
	var scratch []byte // a word with capitals, lower-cased
	for i, msg := range l.Msgs {
		bit = 1 << (i / bl)
		// EachToken, with its ASCII case inline: most runs are.
		msg = model.StripANSI(msg)
		for i := 0; ; {
			a, b, fl := nextRunFlags(msg, i)
			if a < 0 {
				break
			}
			i = b
			if fl&runWide != 0 {
				eachWide(msg[a:b], add)
				continue
			}
			n := b - a
			if n > 40 || n >= 4 && fl&runDigit != 0 { // IsIDLike
				tok := msg[a:b]
				if fl&runUpper != 0 {
					tok = lowerASCII(tok) // addID may keep its head
				}
				addID(tok)
				continue
			}
			if n <= maxShortWord {
				// The word's key from the message itself.
				if k := keyOf(msg, a, b); fl&runUpper == 0 {
					words.addShort(k, n, msg[a:b], bit, true)
				} else {
					words.addShort(lowerKey(k), n, "", bit, false)
				}
				continue
			}
			tok, owned := msg[a:b], true
			if fl&runUpper != 0 {
				tok, owned = lowerASCIIInto(&scratch, tok)
			}
			words.add(tok, bit, owned)
		}
	}
	ids = appendFieldHashes(ids, l, attrs)
	ids, sc.set = distinct(ids, sc.set)
	ct := &chunkToks{bloom: newBloom(len(ids))}
	for _, h := range ids {
		ct.bloom.addHash(h)
	}
	ct.heads = setToSlice(heads)
	ct.words = make([]string, 0, words.n)
	words.each(func(w string, _ uint64) {
		if !strings.Contains(w, "\x00") {
			ct.words = append(ct.words, w)
		}
	})
	ct.blocks = blockFilters(words, (l.Len()+bl-1)/bl)
	ct.attrs = make([]string, 0, len(attrs))
	for a := range attrs {
		if t := attrToken(a.Key, a.Value); !strings.Contains(t, "\x00") {
			ct.attrs = append(ct.attrs, t)
		}
	}
	for lv := model.LevelTrace; lv < model.NumLevels; lv++ {
		if l.Meta.Levels[lv] > 0 {
			ct.levels = append(ct.levels, lv.String())
		}
	}
	return ct
}

// appendFieldHashes appends the bloom hashes of l's trace and span ids and
// of its attributes that go to the bloom filter; the other attributes go
// to attrs.
func appendFieldHashes(ids []uint64, l *Lines, attrs map[model.Attr]struct{}) []uint64 {
	var d xxhash.Digest
	for _, as := range l.Attrs {
		for _, a := range as {
			if attrInBloom(a.Value) {
				ids = append(ids, hashPair(&d, a.Key, a.Value)) // = attrToken's hash
			} else {
				attrs[a] = struct{}{}
			}
		}
	}
	for _, t := range l.Traces {
		if t != "" {
			ids = append(ids, hashPair(&d, FieldTrace, t))
		}
	}
	for _, t := range l.Spans {
		if t != "" {
			ids = append(ids, hashPair(&d, FieldSpan, t))
		}
	}
	return ids
}

// blockFilters returns the word filters of nb message blocks from the
// blocks (bits) each word is in: words in every block go to one common
// filter (no block can be skipped for them), the others to the filters of
// their blocks. A chunk of one block gets none (nothing to skip).
func blockFilters(words *wordTable, nb int) *msgFilters {
	if nb < 2 {
		return nil
	}
	all := uint64(1)<<nb - 1
	counts := make([]int, nb)
	common := 0
	words.each(func(_ string, mask uint64) {
		if mask == all {
			common++
			return
		}
		for ; mask != 0; mask &= mask - 1 {
			counts[bits.TrailingZeros64(mask)]++
		}
	})
	f := &msgFilters{common: newBloomBits(common, blockBloomBits), blocks: make([]*bloom, nb)}
	for b, n := range counts {
		f.blocks[b] = newBloomBits(n, blockBloomBits)
	}
	words.each(func(w string, mask uint64) {
		h := xxhash.Sum64String(w) // once for all the word's blocks
		if mask == all {
			f.common.addHash(h)
			return
		}
		for ; mask != 0; mask &= mask - 1 {
			f.blocks[bits.TrailingZeros64(mask)].addHash(h)
		}
	})
	return f
}

// distinct returns hs without repeats, in place (order kept): an open
// addressing set of the hashes themselves, cheaper than sorting them.
// table is scratch for the set (nil: made here); it is returned for reuse.
func distinct(hs, table []uint64) (out, set []uint64) {
	size := 1 << bits.Len(uint(2*len(hs)))
	if cap(table) < size {
		table = make([]uint64, size)
	}
	table = table[:size]
	clear(table)
	mask := uint64(size - 1)
	out = hs[:0]
	zero := false
	for _, h := range hs {
		if h == 0 { // the empty slot's value: kept apart
			if !zero {
				zero = true
				out = append(out, 0)
			}
			continue
		}
		i := h & mask
		for table[i] != 0 && table[i] != h {
			i = (i + 1) & mask
		}
		if table[i] == h {
			continue
		}
		table[i] = h
		out = append(out, h)
	}
	return out, table
}

// hashPair is xxhash.Sum64String(k + "=" + v) without making the string.
func hashPair(d *xxhash.Digest, k, v string) uint64 {
	d.Reset()
	_, _ = d.WriteString(k)
	_, _ = d.WriteString("=")
	_, _ = d.WriteString(v)
	return d.Sum64()
}

// setToSlice returns the keys of m that hold no NUL (the separator of a
// Bleve field's terms).
func setToSlice[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if !strings.Contains(k, "\x00") {
			out = append(out, k)
		}
	}
	return out
}

const docFieldOptions = bindex.IndexField | bindex.SkipFreqNorm

func docID(id uint64) string { return strconv.FormatUint(id, 16) }

// buildDoc makes a chunk's Bleve document; the words of common (its day's
// words, daywords.go: dayWords.tableOf; nil for none) are left out.
func buildDoc(m *ChunkMeta, t *chunkToks, common *wordTable) *document.Document {
	d := document.NewDocument(docID(m.ID))
	add := func(name string, vals ...string) {
		if len(vals) == 0 || len(vals) == 1 && vals[0] == "" {
			return
		}
		v := []byte(strings.Join(vals, "\x00"))
		d.AddField(newTermsField(name, v))
	}
	add(FieldService, m.Labels.Service)
	add(FieldHost, m.Labels.Host)
	add(FieldBuild, m.Labels.BuildID)
	add(FieldDeploy, m.Labels.DeployID)
	add(FieldLevel, t.levels...)
	words := t.words
	if common != nil && common.n > 0 {
		words = make([]string, 0, len(t.words))
		for _, w := range t.words {
			if !common.has(w) {
				words = append(words, w)
			}
		}
	}
	add(FieldWord, words...)
	add(FieldHead, t.heads...)
	add(FieldAttr, t.attrs...)
	return d
}

// indexSet holds one Bleve index per day, opened on first use.
type indexSet struct {
	dir      string
	readOnly bool // open indexes read-only, create none
	mu       sync.Mutex
	open     map[uint32]bleve.Index
	formats  map[uint32]int // token format of each open index
	searches atomic.Uint64  // searches run (tests read it)
}

func newIndexSet(dir string) *indexSet {
	return &indexSet{dir: dir, open: map[uint32]bleve.Index{}, formats: map[uint32]int{}}
}

// TokenFormat is the token format of the indexes this version creates (see
// tokens.go): 2 cuts wide runs (CJK bigrams, non-ASCII punctuation) and folds
// their case. An index created before holds format 1 and says nothing; its
// wide terms are never used to narrow a search (see Cond.Wide).
const TokenFormat = 2

// formatKey is the Bleve internal key holding an index's token format.
var formatKey = []byte("shiplog.token_format")

// format returns the token format of day's index (TokenFormat when it does
// not exist yet).
func (x *indexSet) format(day uint32) int {
	if _, err := x.get(day, false); err != nil {
		return 1
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if f, ok := x.formats[day]; ok {
		return f
	}
	return TokenFormat
}

func dayName(day uint32) string {
	return time.Unix(0, model.DayStart(day)).UTC().Format("2006-01-02")
}

// scorchConfig returns a fresh configuration for each index: Bleve writes
// the index path into the map it is given, so a shared map would point every
// index opened later at the last one created.
func scorchConfig() map[string]any {
	return map[string]any{
		"unsafe_batch": true,
		"scorchMergePlanOptions": map[string]any{
			"MaxSegmentsPerTier": 100,
			// Segments under FloorSegmentSize documents count as that
			// size when scorch plans merges: with its default (2000) a
			// day of ~3000 chunks was merged down to two segments over
			// and over as batches came in, the largest CPU cost of
			// indexing. At 300 a day keeps about ten segments (total
			// documents / 300) and merges ten at a time past that.
			"FloorSegmentSize": 300,
		},
	}
}

// get returns the index of day, creating it when create is set; nil when it
// does not exist and create is not set.
func (x *indexSet) get(day uint32, create bool) (bleve.Index, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if idx := x.open[day]; idx != nil {
		return idx, nil
	}
	path := filepath.Join(x.dir, dayName(day))
	var idx bleve.Index
	var err error
	created := false
	if _, statErr := os.Stat(path); statErr == nil {
		cfg := scorchConfig()
		if x.readOnly {
			cfg["read_only"] = true
		}
		idx, err = bleve.OpenUsing(path, cfg)
	} else if create && !x.readOnly {
		if err := os.MkdirAll(x.dir, 0o700); err != nil {
			return nil, err
		}
		m := mapping.NewIndexMapping()
		m.DefaultMapping.Dynamic = false
		m.IndexDynamic, m.StoreDynamic, m.DocValuesDynamic = false, false, false
		idx, err = bleve.NewUsing(path, m, scorch.Name, scorch.Name, scorchConfig())
		created = true
	} else {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", dayName(day), err)
	}
	x.formats[day] = indexFormat(idx, created)
	x.open[day] = idx
	return idx, nil
}

// indexFormat reads (or, for an index just created, writes) its token format.
func indexFormat(idx bleve.Index, created bool) int {
	if created {
		if idx.SetInternal(formatKey, []byte{TokenFormat}) != nil {
			return 1 // unknown on the next open: read as format 1
		}
		return TokenFormat
	}
	v, err := idx.GetInternal(formatKey)
	if err != nil || len(v) != 1 {
		return 1
	}
	return int(v[0])
}

func (x *indexSet) closeAll() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var first error
	for d, idx := range x.open {
		if err := idx.Close(); err != nil && first == nil {
			first = err
		}
		delete(x.open, d)
		delete(x.formats, d)
	}
	return first
}

// fewPrefixTerms reports whether prefix p expands to at most maxPrefixTerms
// terms of day's index (words and heads together).
func (x *indexSet) fewPrefixTerms(day uint32, p string) bool {
	idx, err := x.get(day, false)
	if err != nil || idx == nil {
		return false
	}
	n := 0
	for _, f := range []string{FieldWord, FieldHead} {
		d, err := idx.FieldDictPrefix(f, []byte(p))
		if err != nil {
			return false
		}
		for {
			e, err := d.Next()
			if err != nil {
				_ = d.Close()
				return false
			}
			if e == nil {
				break
			}
			if n++; n > maxPrefixTerms {
				_ = d.Close()
				return false
			}
		}
		if err := d.Close(); err != nil {
			return false
		}
	}
	return true
}

// search returns the ids of the chunks of day that match q.
func (x *indexSet) search(ctx context.Context, day uint32, q query.Query) ([]uint64, error) {
	x.searches.Add(1)
	idx, err := x.get(day, false)
	if err != nil || idx == nil {
		return nil, err
	}
	n, err := idx.DocCount()
	if err != nil || n == 0 {
		return nil, err
	}
	req := bleve.NewSearchRequestOptions(q, int(n), 0, false)
	req.Score = "none"
	res, err := idx.SearchInContext(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", dayName(day), err)
	}
	ids := make([]uint64, 0, len(res.Hits))
	for _, h := range res.Hits {
		id, err := strconv.ParseUint(h.ID, 16, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

type indexJob struct {
	meta *ChunkMeta
	doc  *document.Document
}

// indexLoop feeds Bleve in large batches: every batch becomes a segment that
// scorch later merges, so fewer, larger segments save most of the merge work.
// Chunks wait at most indexBatchWait; until then queries scan them directly.
func (s *Store) indexLoop() {
	defer s.indexWG.Done()
	for job := range s.indexCh {
		jobs := []*indexJob{job}
		timer := time.NewTimer(indexBatchWait)
	collect:
		for len(jobs) < indexBatchDocs {
			select {
			case j, ok := <-s.indexCh:
				if !ok {
					break collect
				}
				jobs = append(jobs, j)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		s.indexJobs(jobs)
	}
}

// A batch is cut at indexBatchDocs documents or after indexBatchWait: a
// few hundred chunks a batch make a few segments a day instead of one
// every 300 ms, and merging them costs little. More documents a batch
// save little more and cost memory while the segment is built (4096 put
// 10M lines' ingest peak 60 MiB higher).
const (
	indexBatchDocs = 256
	indexBatchWait = 2 * time.Second
)

func (s *Store) indexJobs(jobs []*indexJob) {
	byDay := map[uint32][]*indexJob{}
	for _, j := range jobs {
		byDay[j.meta.Day] = append(byDay[j.meta.Day], j)
	}
	for day, js := range byDay {
		start := time.Now()
		s.mu.RLock()
		_, live := s.days[day]
		dropped := day < s.floor
		s.mu.RUnlock()
		if dropped || !live {
			continue // retention dropped the day meanwhile
		}
		idx, err := s.idx.get(day, true)
		if err != nil {
			s.log.Error("store: open index", "day", dayName(day), "err", err)
			s.m.errors.Inc()
			continue
		}
		b := idx.NewBatch()
		keys := make([][]byte, 0, len(js))
		added := js[:0:0]
		for _, j := range js {
			if err := b.IndexAdvanced(j.doc); err != nil {
				s.log.Error("store: index chunk", "chunk", j.meta.ID, "err", err)
				continue
			}
			keys = append(keys, chunkKey(pfxPending, day, j.meta.ID))
			added = append(added, j)
		}
		var once sync.Once
		s.persistWG.Add(1)
		persisted := func(err error) {
			once.Do(func() {
				defer s.persistWG.Done()
				if err != nil {
					return
				}
				if err := s.clearPending(keys); err != nil {
					s.log.Error("store: clear pending index marks", "err", err)
				}
			})
		}
		b.SetPersistedCallback(persisted)
		if err := idx.Batch(b); err != nil {
			s.log.Error("store: index batch", "day", dayName(day), "err", err)
			s.m.errors.Inc()
			persisted(err)
			continue
		}
		s.mu.Lock()
		for _, j := range added {
			delete(s.unindexed, j.meta.ID)
		}
		s.mu.Unlock()
		s.m.indexSeconds.Observe(time.Since(start).Seconds())
	}
}

func (s *Store) clearPending(keys [][]byte) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// pendingIndex finds sealed chunks whose Bleve documents may not be persisted.
func (s *Store) pendingIndex() ([]*ChunkMeta, error) {
	var out []*ChunkMeta
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxPending}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 13 {
				continue
			}
			if m := s.chunks[binaryID(k)]; m != nil {
				out = append(out, m)
				s.unindexed[m.ID] = m
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// reindex rebuilds the Bleve documents of chunks from their stored lines.
func (s *Store) reindex(metas []*ChunkMeta) {
	defer s.sealWG.Done()
	for _, m := range metas {
		l, err := s.loadSealed(m, true)
		if err != nil {
			s.log.Error("store: reindex chunk", "chunk", m.ID, "err", err)
			continue
		}
		s.indexCh <- &indexJob{meta: m, doc: buildDoc(m, chunkTokens(l), s.words.tableOf(m.Day))}
	}
}
