package store

import (
	"math"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// A token is a maximal run of ASCII letters, digits, '_' or non-ASCII runes,
// compared case-insensitively (ASCII only). The same rule cuts messages at ingest
// and query words at search time, so both sides always agree.

// IsTokenByte reports whether b continues a token.
func IsTokenByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b >= 0x80
}

// NextToken returns the bounds [start, end) of the first token of s at or after
// offset from; start is -1 when there is none.
func NextToken(s string, from int) (start, end int) {
	i := from
	for i < len(s) && !IsTokenByte(s[i]) {
		i++
	}
	if i == len(s) {
		return -1, -1
	}
	j := i + 1
	for j < len(s) && IsTokenByte(s[j]) {
		j++
	}
	return i, j
}

// Tokens appends the lower-cased tokens of s to dst.
func Tokens(dst []string, s string) []string {
	for i := 0; ; {
		a, b := NextToken(s, i)
		if a < 0 {
			return dst
		}
		dst = append(dst, lowerASCII(s[a:b]))
		i = b
	}
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
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 32
				}
			}
			return string(b)
		}
	}
	return s
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
}

const bloomBitsPerKey = 10

func newBloom(n int) *bloom {
	if n < 1 {
		n = 1
	}
	nbits := n * bloomBitsPerKey
	nbytes := (nbits + 63) / 64 * 8
	k := uint8(math.Round(bloomBitsPerKey * math.Ln2))
	return &bloom{k: k, bits: make([]byte, nbytes)}
}

func (b *bloom) add(tok string) {
	h := xxhash.Sum64String(tok)
	h1, h2 := uint32(h), uint32(h>>32)
	m := uint32(len(b.bits) * 8)
	for i := uint32(0); i < uint32(b.k); i++ {
		bit := (h1 + i*h2) % m
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
	for i := uint32(0); i < uint32(b.k); i++ {
		bit := (h1 + i*h2) % m
		if b.bits[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
	return true
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
