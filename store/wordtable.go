package store

import (
	"hash/maphash"
	"strings"
	"sync"
	"unsafe"
)

// wordTable maps each ordinary word of a chunk to the message blocks (bits)
// holding it: an open-addressing table that compares a word's full hash
// before its bytes, and is walked as a slice. It replaced a Go map, whose
// lookups (most words repeat) were half of chunkTokens' time.
type wordTable struct {
	slots []wordSlot // a power of two long
	n     int
}

type wordSlot struct {
	hash uint64 // 0: empty
	word string
	mask uint64
}

var wordSeed = maphash.MakeSeed()

func newWordTable(size int) *wordTable {
	n := 16
	for n < size*4/3 {
		n *= 2
	}
	return &wordTable{slots: make([]wordSlot, n)}
}

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
	clear(sc.words.slots)
	sc.words.n = 0
	tokPool.Put(sc)
}

// add sets bit in w's blocks, adding w when it is new (a copy of w unless
// owned: w may be a view of a buffer that is written again).
func (t *wordTable) add(w string, bit uint64, owned bool) {
	h := maphash.String(wordSeed, w) | 1
	m := uint64(len(t.slots) - 1)
	for i := h & m; ; i = (i + 1) & m {
		s := &t.slots[i]
		if s.hash == h && s.word == w {
			s.mask |= bit
			return
		}
		if s.hash == 0 {
			if !owned {
				w = strings.Clone(w)
			}
			s.hash, s.word, s.mask = h, w, bit
			if t.n++; t.n*4 > len(t.slots)*3 {
				t.grow()
			}
			return
		}
	}
}

func (t *wordTable) grow() {
	old := t.slots
	t.slots = make([]wordSlot, 2*len(old))
	m := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.hash == 0 {
			continue
		}
		i := s.hash & m
		for t.slots[i].hash != 0 {
			i = (i + 1) & m
		}
		t.slots[i] = s
	}
}

// each calls fn for every word with its blocks.
func (t *wordTable) each(fn func(w string, mask uint64)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.hash != 0 {
			fn(s.word, s.mask)
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
