package store

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/internal/wire"
)

// Day words. Most of a day's ordinary message words (tokens.go: not
// id-like) are in nearly every chunk of it ("completed", "status", "caller"
// ...): in the day's Bleve index each costs about 3 bytes a chunk (a
// roaring array entry and a frequency byte) and narrows nothing.
//
// A day's words are those in at least one line in dayWordLineShare of the
// first dayWordSampleChunks chunks sealed on it (of dayWordSampleLines
// lines of each, spread over it; in 16k lines, a word in one line in 1,000
// is expected 16 times, and a day word 55 times at least): a word that common is in
// nearly every chunk of 1,024 lines (all but 3%), and its share of the
// lines does not depend on how they are cut into chunks, so sampling the
// chunks sealed first (often the longest) picks the words sampling the
// whole day picks (a share of chunks would not: "deadlock", in one line in
// 1,000, is in most long chunks and 44% of all). On gen_logs.py's lines
// they are 74% of the msg field's postings, and a chunk without the word
// is 9% of the candidates of a search for one.
//
// They are written under w<day> (encodeDayWords) before any chunk document
// leaves them out; from then on the Bleve documents of the day's chunks
// hold no day word (buildDoc), and a search for one takes every chunk of
// the day as a candidate (its Cond.bleveQuery is nil there): the chunks'
// message-block filters then skip the blocks without it. A prefix that a
// day word starts with is not looked up in the day's index either. A day's
// words never change once written; the chunks sealed before them keep
// every word in their documents.
const (
	pfxDayWords         = 'w'
	dayWordSampleChunks = 64
	dayWordSampleLines  = 256 // lines counted of a chunk, at most
	dayWordLineShare    = 300 // a day word is in one of this many sampled lines at least
	dayWordsVersion     = 1
	maxDayWords         = 1 << 16 // a decoded value holds no more
	dayWordSampleDays   = 4       // days sampled at once, at most
)

func dayWordsKey(day uint32) []byte { return dayKey(pfxDayWords, day) }

// dayWords holds a store's day words, and counts the words of the first
// chunks of days without them.
type dayWords struct {
	mu   sync.RWMutex
	days map[uint32]map[string]struct{} // never written once set
	// tables hold the days' words as word tables too, for sealing to
	// leave them out of documents (buildDoc): made on first use
	// (tableOf), a lookup costs a sixth of a map's.
	tables map[uint32]*wordTable
	train  map[uint32]*wordCounts
	// broken are the days whose w value did not decode: any word may be
	// left out of their documents, so no word is looked up in their index.
	broken map[uint32]bool
}

type wordCounts struct {
	chunks int
	lines  int
	counts map[string]int // lines holding each word
	done   bool           // made, being written
}

func newDayWords() *dayWords {
	return &dayWords{days: map[uint32]map[string]struct{}{}, tables: map[uint32]*wordTable{}, train: map[uint32]*wordCounts{}, broken: map[uint32]bool{}}
}

// isBroken reports whether day's words did not decode (dayWords.broken).
func (d *dayWords) isBroken(day uint32) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.broken[day]
}

// of returns day's words (nil: none). The map is never written.
func (d *dayWords) of(day uint32) map[string]struct{} {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.days[day]
}

// tableOf returns day's words as a word table (nil: none). The table is
// never written once returned.
func (d *dayWords) tableOf(day uint32) *wordTable {
	d.mu.RLock()
	t, words := d.tables[day], d.days[day]
	d.mu.RUnlock()
	if t != nil || words == nil {
		return t
	}
	t = newWordTable(len(words))
	for w := range words {
		t.add(w, 1, true)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.days[day] == nil { // dropped meanwhile
		return nil
	}
	if old := d.tables[day]; old != nil {
		return old
	}
	d.tables[day] = t
	return t
}

// load reads every day's words from Badger (at Open). A value that does not
// decode marks its day broken (and is returned in broken) rather than
// failing the Open: its day's searches then take every chunk.
func (d *dayWords) load(txn *badger.Txn) (broken []uint32, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err = eachDay(txn, pfxDayWords, func(day uint32, item *badger.Item) error {
		var derr error
		err := item.Value(func(v []byte) error {
			var words map[string]struct{}
			if words, derr = decodeDayWords(v); derr == nil {
				d.days[day] = words
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("day words of %s: %w", dayName(day), err)
		}
		if derr != nil {
			d.broken[day] = true
			broken = append(broken, day)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return broken, nil
}

// count notes the lines of a chunk of day; once dayWordSampleChunks are
// noted it returns the day's words (to be written, then added with add),
// nil until then and when the day has them.
func (d *dayWords) count(day uint32, msgs []string) []string {
	d.mu.RLock()
	wc := d.train[day]
	counting := d.days[day] == nil && !d.broken[day] && (wc == nil || !wc.done)
	d.mu.RUnlock()
	if !counting {
		return nil
	}
	per, lines := lineWords(msgs) // without the lock: sealers go on
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.days[day] != nil {
		return nil
	}
	if wc = d.train[day]; wc == nil {
		d.fewerCountedDays()
		wc = &wordCounts{counts: map[string]int{}}
		d.train[day] = wc
	}
	if wc.done {
		return nil
	}
	for w, n := range per {
		if _, ok := wc.counts[w]; !ok {
			w = strings.Clone(w) // not the chunk's memory
		}
		wc.counts[w] += n
	}
	wc.lines += lines
	if wc.chunks++; wc.chunks < dayWordSampleChunks {
		return nil
	}
	var out []string
	for w, n := range wc.counts {
		if n*dayWordLineShare >= wc.lines {
			out = append(out, w)
		}
	}
	wc.counts, wc.done = nil, true
	slices.Sort(out)
	return out
}

// lineWords counts the lines of msgs holding each ordinary word, of
// dayWordSampleLines lines spread over them at most; n is the lines
// counted.
func lineWords(msgs []string) (per map[string]int, n int) {
	per = map[string]int{}
	var toks []string
	step := max(1, len(msgs)/dayWordSampleLines)
	for i := 0; i < len(msgs); i += step {
		n++
		toks = Tokens(toks[:0], msgs[i])
		slices.Sort(toks)
		for i, t := range toks {
			if (i == 0 || t != toks[i-1]) && !IsIDLike(t) {
				per[t]++
			}
		}
	}
	return per, n
}

// fewerCountedDays makes room to count one more day: the counts of the day
// with the fewest chunks go when dayWordSampleDays are counted. Caller
// holds mu.
func (d *dayWords) fewerCountedDays() {
	dropFewestChunks(d.train, dayWordSampleDays, func(wc *wordCounts) int { return wc.chunks })
}

// add makes day's words, written to Badger, used; words is sorted.
func (d *dayWords) add(day uint32, words []string) {
	set := make(map[string]struct{}, len(words))
	for _, w := range words {
		set[w] = struct{}{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
	d.days[day] = set
}

// unwritten forgets day's words that could not be written: later chunks
// are counted again.
func (d *dayWords) unwritten(day uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
}

// drop forgets day's words (retention dropped the day).
func (d *dayWords) drop(day uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
	delete(d.days, day)
	delete(d.tables, day)
	delete(d.broken, day)
}

// anyWithPrefix reports whether a word of the set starts with p.
func anyWithPrefix(set map[string]struct{}, p string) bool {
	for w := range set {
		if strings.HasPrefix(w, p) {
			return true
		}
	}
	return false
}

// encodeDayWords encodes a day's words (sorted): version byte, count
// uvarint, then each word as a string.
func encodeDayWords(words []string) []byte {
	out := []byte{dayWordsVersion}
	out = wire.AppendUvarint(out, uint64(len(words)))
	for _, w := range words {
		out = wire.AppendString(out, w)
	}
	return out
}

// decodeDayWords decodes a w value into a set.
func decodeDayWords(v []byte) (map[string]struct{}, error) {
	bad := fmt.Errorf("%w: day words", errCorrupt)
	if len(v) == 0 || v[0] != dayWordsVersion {
		return nil, bad
	}
	r := wire.NewReader(v[1:], bad)
	n := r.Count(1) // each word takes its length byte at least
	if r.Err() != nil || n > maxDayWords {
		return nil, bad
	}
	set := make(map[string]struct{}, n)
	for range n {
		w := r.Str()
		if r.Err() != nil {
			return nil, bad
		}
		set[w] = struct{}{}
	}
	if r.Err() != nil || r.Len() != 0 {
		return nil, bad
	}
	return set, nil
}
