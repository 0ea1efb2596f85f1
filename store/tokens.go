package store

import (
	"math"
	"math/bits"
	"unicode"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/shiplog/shiplog/model"
)

// Tokens are read from a message as a terminal shows it: terminal escape
// sequences are removed first (model.StripANSI), so "\x1b[33mwarning:" holds
// the token "warning". A run is a maximal sequence of ASCII letters, digits,
// '_' or non-ASCII bytes (NextToken). A run of ASCII bytes is one token,
// lower-cased. A run with non-ASCII bytes ("wide") is cut further, the same
// way at ingest and at search time (token format 2, see doc.go):
//   - at runes that are neither letters, marks, numbers nor '_' (CJK and
//     other non-ASCII punctuation such as 、。— and «»);
//   - around runs of CJK characters (Han, Hiragana, Katakana, Hangul), which
//     become overlapping bigrams, as Elastic's CJK analyzer makes them:
//     日本語テキスト is 日本 本語 語テ テキ キス スト, so 日本語 (日本 本語)
//     is found inside it as a phrase; a lone CJK character is a token itself;
//   - and every non-ASCII letter is case-folded (lower(upper(r)), so Σ, σ
//     and ς agree), unless it would fold to ASCII (the Kelvin sign stays).
// Format 1 (before) kept a wide run whole with ASCII lower-casing only.

// IsTokenByte reports whether b continues a run.
func IsTokenByte(b byte) bool { return tokenBytes[b] }

// tokenBytes[b] is IsTokenByte(b), as a table: runs are cut at ingest for
// every byte of every message.
var tokenBytes = func() (t [256]bool) {
	for b := 0; b < 256; b++ {
		t[b] = b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b >= 0x80
	}
	return t
}()

// NextToken returns the bounds [start, end) of the first run of s at or after
// offset from; start is -1 when there is none.
func NextToken(s string, from int) (start, end int) {
	start, end, _ = nextRun(s, from)
	return start, end
}

// nextRun is NextToken that also tells whether the run has non-ASCII bytes.
func nextRun(s string, from int) (start, end int, wide bool) {
	i := from
	for i < len(s) && !tokenBytes[s[i]] {
		i++
	}
	if i >= len(s) {
		return -1, -1, false
	}
	var or byte
	j := i
	for ; j < len(s); j++ {
		c := s[j]
		if !tokenBytes[c] {
			break
		}
		or |= c
	}
	return i, j, or >= 0x80
}

// What a run of bytes holds (runFlags): capitals A-Z, digits, non-ASCII.
const (
	runToken = 1 << iota // the byte continues a run (tokenBytes)
	runUpper
	runDigit
	runWide
)

// runClass is what each byte is, for nextRunFlags.
var runClass = func() (t [256]uint8) {
	for b := 0; b < 256; b++ {
		if tokenBytes[b] {
			t[b] |= runToken
		}
		switch {
		case b >= 'A' && b <= 'Z':
			t[b] |= runUpper
		case b >= '0' && b <= '9':
			t[b] |= runDigit
		case b >= 0x80:
			t[b] |= runWide
		}
	}
	return t
}()

// nextRunFlags is nextRun that also tells what the run holds (runUpper,
// runDigit, runWide), so that sealing need not look at its bytes again.
func nextRunFlags(s string, from int) (start, end int, flags uint8) {
	i := from
	for i < len(s) && !tokenBytes[s[i]] {
		i++
	}
	if i >= len(s) {
		return -1, -1, 0
	}
	j := i
	for ; j < len(s); j++ {
		c := runClass[s[j]]
		if c&runToken == 0 {
			break
		}
		flags |= c
	}
	return i, j, flags
}

// Tokens appends the tokens of s (see above) to dst.
func Tokens(dst []string, s string) []string {
	EachToken(s, func(tok string, _ bool) { dst = append(dst, tok) })
	return dst
}

// EachToken calls fn with every token of s in order; wide is set for the
// tokens of a run with non-ASCII bytes, which format-1 indexes do not hold.
func EachToken(s string, fn func(tok string, wide bool)) {
	s = model.StripANSI(s)
	for i := 0; ; {
		a, b, wide := nextRun(s, i)
		if a < 0 {
			return
		}
		i = b
		if !wide {
			fn(lowerASCII(s[a:b]), false)
			continue
		}
		eachWide(s[a:b], fn)
	}
}

// IsWide reports whether a token holds non-ASCII bytes.
func IsWide(tok string) bool { return !isASCII(tok) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isCJK reports whether r is written without spaces between words, so is
// indexed as bigrams.
func isCJK(r rune) bool {
	return r == 0x30fc || r == 0x3005 || unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// isWordRune reports whether r, inside a wide run, belongs to a token.
func isWordRune(r rune, size int) bool {
	return r == '_' || size == 1 && r == utf8.RuneError || unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r)
}

// eachWide cuts a run with non-ASCII bytes into tokens.
func eachWide(run string, fn func(string, bool)) {
	piece := -1   // start of the current non-CJK piece
	prevCJK := -1 // start of the previous CJK rune, in a CJK run
	prevEnd := 0  // and its end
	lone := false // the CJK run so far is one rune
	endCJK := func() {
		if lone {
			fn(run[prevCJK:prevEnd], true)
		}
		prevCJK, lone = -1, false
	}
	for i := 0; i < len(run); {
		r, size := utf8.DecodeRuneInString(run[i:])
		switch {
		case isCJK(r):
			if piece >= 0 {
				fn(foldWide(run[piece:i]), true)
				piece = -1
			}
			if prevCJK >= 0 {
				fn(run[prevCJK:i+size], true)
				lone = false
			} else {
				lone = true
			}
			prevCJK, prevEnd = i, i+size
		case isWordRune(r, size):
			if prevCJK >= 0 {
				endCJK()
			}
			if piece < 0 {
				piece = i
			}
		default:
			if prevCJK >= 0 {
				endCJK()
			}
			if piece >= 0 {
				fn(foldWide(run[piece:i]), true)
				piece = -1
			}
		}
		i += size
	}
	if prevCJK >= 0 {
		endCJK()
	}
	if piece >= 0 {
		fn(foldWide(run[piece:]), true)
	}
}

// foldWide case-folds a piece of a wide run: ASCII letters to lower case,
// other letters to lower(upper(r)) unless that is ASCII. Invalid UTF-8 bytes
// are kept as they are.
func foldWide(p string) string {
	var b []byte
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		f := r
		switch {
		case r < 0x80:
			if r >= 'A' && r <= 'Z' {
				f = r + 32
			}
		case size == 1:
			// an invalid byte: kept
		default:
			if f = unicode.ToLower(unicode.ToUpper(r)); f < 0x80 {
				f = r
			}
		}
		if f != r && b == nil {
			b = make([]byte, i, len(p)+4)
			copy(b, p[:i])
		}
		if b != nil {
			if size == 1 && r == utf8.RuneError {
				b = append(b, p[i])
			} else {
				b = utf8.AppendRune(b, f)
			}
		}
		i += size
	}
	if b == nil {
		return p
	}
	return string(b)
}

// IsIDLike reports whether a lower-case token looks like an identifier (a hex
// string, a number, a key with digits): at least 4 bytes with a digit, or longer
// than 40 bytes. Such tokens are nearly unique, so they go to a chunk's bloom
// filter instead of the full-text index.
func IsIDLike(tok string) bool {
	if len(tok) > 40 {
		return true
	}
	if len(tok) < 4 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] >= '0' && tok[i] <= '9' {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	lower, _ := lowerASCIIInto(new([]byte), s) // a fresh buffer: never written again
	return lower
}

// validUTF8Prefix cuts s to at most n bytes without splitting a rune.
func validUTF8Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// bloom is a split-block-free classic bloom filter with k probes derived by double
// hashing of xxhash64. Layout on disk: k (1 byte), then the bit array.
type bloom struct {
	k    uint8
	bits []byte
	mod  uint64 // modMagic of its size in bits (0: not known yet)
}

const bloomBitsPerKey = 10

func newBloom(n int) *bloom { return newBloomBits(n, bloomBitsPerKey) }

// newBloomBits returns a bloom filter for n keys of bitsPerKey bits each.
func newBloomBits(n, bitsPerKey int) *bloom {
	if n < 1 {
		n = 1
	}
	nbits := n * bitsPerKey
	nbytes := (nbits + 63) / 64 * 8
	k := uint8(math.Round(float64(bitsPerKey) * math.Ln2))
	return &bloom{k: k, bits: make([]byte, nbytes), mod: modMagic(uint32(nbytes * 8))}
}

func (b *bloom) add(tok string) { b.addHash(xxhash.Sum64String(tok)) }

// addHash adds a token by its xxhash64.
func (b *bloom) addHash(h uint64) {
	h1, h2 := uint32(h), uint32(h>>32)
	m := uint32(len(b.bits) * 8)
	mod := b.mod
	if mod == 0 {
		mod = modMagic(m)
	}
	for i := uint32(0); i < uint32(b.k); i++ {
		bit := fastMod(h1+i*h2, mod, m)
		b.bits[bit>>3] |= 1 << (bit & 7)
	}
}

func (b *bloom) mayContain(tok string) bool {
	if len(b.bits) == 0 {
		return true
	}
	h := xxhash.Sum64String(tok)
	h1, h2 := uint32(h), uint32(h>>32)
	m := uint32(len(b.bits) * 8)
	mod := modMagic(m)
	for i := uint32(0); i < uint32(b.k); i++ {
		bit := fastMod(h1+i*h2, mod, m)
		if b.bits[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
	return true
}

// modMagic is fastMod's constant for divisor d (d > 0).
func modMagic(d uint32) uint64 { return ^uint64(0)/uint64(d) + 1 }

// fastMod returns a % d, given mod = modMagic(d), with two multiplications
// instead of a division (Lemire, Kaser and Kurz, "Faster remainder by
// direct computation", 2019; exact for every 32-bit a and d). A filter's
// bits are set and tested k times a key, and the division was most of it.
func fastMod(a uint32, mod uint64, d uint32) uint32 {
	hi, _ := bits.Mul64(mod*uint64(a), uint64(d))
	return uint32(hi)
}

func (b *bloom) marshal() []byte {
	out := make([]byte, 1+len(b.bits))
	out[0] = b.k
	copy(out[1:], b.bits)
	return out
}

func unmarshalBloom(v []byte) *bloom {
	if len(v) < 1 {
		return &bloom{}
	}
	return &bloom{k: v[0], bits: v[1:]}
}
