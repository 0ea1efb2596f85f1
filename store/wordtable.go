package store

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"unsafe"
)

// wordTable maps each ordinary word of a chunk to the message blocks (bits)
// holding it: an open-addressing table walked as a slice. It replaced a Go
// map, whose lookups (most words repeat) were half of chunkTokens' time.
//
// A word of up to 16 bytes is its own key: its bytes as two little-endian
// words, zero-padded (keyOf; a token holds no NUL, so no two words share
// a key, and no key of such a word is 0), compared and hashed without
// reading the word again. A longer word's key is its hash, with a first
// byte of 0 (which no short word's key has); its bytes are compared too.
type wordTable struct {
	slots []wordSlot // a power of two long; k0 == 0: empty
	words []string   // the word of each key
	shift uint8      // 64 - log2(len(slots))
	n     int
}

type wordKey struct{ k0, k1 uint64 }

// wordSlot is a key and the blocks of its word: a hit reads and writes
// one slot.
type wordSlot struct {
	wordKey
	mask uint64
}

var wordSeed = maphash.MakeSeed()

func newWordTable(size int) *wordTable {
	n := 16
	for n < size*4/3 {
		n *= 2
	}
	t := &wordTable{}
	t.alloc(n)
	return t
}

func (t *wordTable) alloc(n int) {
	t.slots, t.words = make([]wordSlot, n), make([]string, n)
	t.shift = uint8(64 - bits.TrailingZeros(uint(n)))
}

// slot is where a key's probing starts.
func (t *wordTable) slot(k wordKey) uint64 {
	return ((k.k0 ^ bits.RotateLeft64(k.k1, 31)) * 0x9e3779b97f4a7c15) >> t.shift
}

// keyOf returns the key of s[a:b], a word of 1 to 16 bytes (reading
// 8 bytes at a time from s where they are in it).
func keyOf(s string, a, b int) wordKey {
	n := b - a
	switch {
	case n >= 8:
		k := wordKey{k0: load64(s, a)}
		if n > 8 {
			k.k1 = load64(s, b-8) >> (8 * (16 - n))
		}
		return k
	case a+8 <= len(s):
		return wordKey{k0: load64(s, a) & (1<<(8*n) - 1)}
	case b >= 8:
		return wordKey{k0: load64(s, b-8) >> (8 * (8 - n))}
	}
	var k uint64
	for i := b - 1; i >= a; i-- {
		k = k<<8 | uint64(s[i])
	}
	return wordKey{k0: k}
}

// load64 returns the 8 bytes of s from i as a little-endian word.
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// maxShortWord is the longest word that is its own key.
const maxShortWord = 16

// tokScratch is chunkTokens' memory, reused from one chunk to the next
// (tokPool): its word table, its id hashes and distinct's set. A 1,024-line
// chunk's table grew from 1,024 slots to 8,192 (rehashing at each step),
// and these were a third of sealing's allocations.
type tokScratch struct {
	words *wordTable
	ids   []uint64
	set   []uint64
}

var tokPool sync.Pool

// getTokScratch returns scratch for a chunk of n lines: a pooled one when
// its table is not much larger than such a chunk needs (clearing a big table
// for a chunk of a few lines would cost more than a new small one).
func getTokScratch(n int) *tokScratch {
	if sc, ok := tokPool.Get().(*tokScratch); ok {
		if len(sc.words.slots) <= 16*max(n, 64) {
			return sc
		}
		tokPool.Put(sc)
	}
	return &tokScratch{words: newWordTable(512), ids: make([]uint64, 0, 4*n)}
}

// putTokScratch empties sc (its table held views of the chunk's text) and
// pools it.
func putTokScratch(sc *tokScratch) {
	sc.words.reset()
	tokPool.Put(sc)
}

// add sets bit in w's blocks, adding w when it is new (a copy of w unless
// owned: w may be a view of a buffer that is written again).
func (t *wordTable) add(w string, bit uint64, owned bool) {
	if len(w) <= maxShortWord && strings.IndexByte(w, 0) < 0 {
		t.addShort(keyOf(w, 0, len(w)), len(w), w, bit, owned)
		return
	}
	t.addLong(w, bit, owned)
}

// addShort is add for a word of n bytes, at most maxShortWord, with no NUL,
// whose key is k; when w is "", a new word is made from k.
func (t *wordTable) addShort(k wordKey, n int, w string, bit uint64, owned bool) {
	m := uint64(len(t.slots) - 1)
	for i := t.slot(k); ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.wordKey == k {
			s.mask |= bit
			return
		}
		if s.k0 == 0 {
			if w == "" {
				w, owned = k.word(n), true
			}
			t.insert(i, k, w, bit, owned)
			return
		}
	}
}

// word returns the first n bytes of a short word's key: the word.
func (k wordKey) word(n int) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], k.k0)
	binary.LittleEndian.PutUint64(b[8:], k.k1)
	return string(b[:n])
}

// lowerKey returns the key of an ASCII word, whose key is k, lower-cased.
func lowerKey(k wordKey) wordKey {
	return wordKey{k.k0 + capitals(k.k0)>>2, k.k1 + capitals(k.k1)>>2}
}

// capitals returns the high bit of each byte of x, 8 ASCII bytes, that is
// a capital A-Z: shifted to 0x20, what makes it a small letter (adding it
// carries into no other byte).
func capitals(x uint64) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	// Each byte of y is 0x80 | the byte: subtracting c from it borrows
	// from no other byte, and leaves its high bit set when the byte is c
	// or more.
	y := x | high
	return (y - 'A'*ones) &^ (y - ('Z'+1)*ones) & high
}

// longKey is the key of a longer word (or one with a NUL).
func longKey(w string) wordKey {
	h := maphash.String(wordSeed, w)
	return wordKey{k0: h<<8 | 1<<8, k1: h}
}

// has reports whether w is in the table (a nil table holds no word).
func (t *wordTable) has(w string) bool {
	if t == nil || t.n == 0 {
		return false
	}
	short := len(w) <= maxShortWord && strings.IndexByte(w, 0) < 0
	var k wordKey
	if short {
		k = keyOf(w, 0, len(w))
	} else {
		k = longKey(w)
	}
	m := uint64(len(t.slots) - 1)
	for i := t.slot(k); ; i = (i + 1) & m {
		s := t.slots[i].wordKey
		if s == k && (short || t.words[i] == w) {
			return true
		}
		if s.k0 == 0 {
			return false
		}
	}
}

// addLong is add for a longer word (or one with a NUL).
func (t *wordTable) addLong(w string, bit uint64, owned bool) {
	k := longKey(w)
	m := uint64(len(t.slots) - 1)
	for i := t.slot(k); ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.wordKey == k && t.words[i] == w {
			s.mask |= bit
			return
		}
		if s.k0 == 0 {
			t.insert(i, k, w, bit, owned)
			return
		}
	}
}

func (t *wordTable) insert(i uint64, k wordKey, w string, bit uint64, owned bool) {
	if !owned {
		w = strings.Clone(w)
	}
	t.slots[i], t.words[i] = wordSlot{k, bit}, w
	if t.n++; t.n*4 > len(t.slots)*3 {
		t.grow()
	}
}

func (t *wordTable) grow() {
	old, words := t.slots, t.words
	t.alloc(2 * len(old))
	m := uint64(len(t.slots) - 1)
	for j, k := range old {
		if k.k0 == 0 {
			continue
		}
		i := t.slot(k.wordKey)
		for t.slots[i].k0 != 0 {
			i = (i + 1) & m
		}
		t.slots[i], t.words[i] = k, words[j]
	}
}

// reset empties the table (its words were views of a chunk's text).
func (t *wordTable) reset() {
	clear(t.slots)
	clear(t.words)
	t.n = 0
}

// each calls fn for every word with its blocks.
func (t *wordTable) each(fn func(w string, mask uint64)) {
	for i := range t.slots {
		if t.slots[i].k0 != 0 {
			fn(t.words[i], t.slots[i].mask)
		}
	}
}

// lowerASCIIInto is lowerASCII without an allocation: a string with
// capitals is lower-cased into *buf and returned as a view of it (owned is
// false: it is good until *buf is written again); one without is returned
// as it is (owned).
func lowerASCIIInto(buf *[]byte, s string) (lower string, owned bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := append((*buf)[:0], s...)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 32
				}
			}
			*buf = b
			return unsafe.String(unsafe.SliceData(b), len(b)), false
		}
	}
	return s, true
}
