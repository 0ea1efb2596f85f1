package query

import (
	"encoding/binary"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/shiplog/shiplog/store"
)

// needle is what every match of a query holds in its message: a lower-case
// token (case-insensitively), or with exact a literal (case-sensitively).
type needle struct {
	tok   string
	exact bool
}

// requiredToken returns the longest needle every match of n must hold (an
// empty one when there is none). Searching a chunk's whole message block for
// it at once is much faster than testing each message.
func requiredToken(n node) needle {
	switch x := n.(type) {
	case wordsNode:
		// A wide token may be case-folded apart from the message's bytes.
		best := needle{}
		for i, t := range x.toks {
			if !x.wide[i] && len(t) > len(best.tok) {
				best.tok = t
			}
		}
		return best
	case msgRegexpNode:
		// The literal every match begins with (Go leaves case-folded
		// runes out of it), matched as it is.
		prefix, _ := x.rx.LiteralPrefix()
		if len(prefix) < 3 {
			return needle{}
		}
		return needle{tok: prefix, exact: true}
	case andNode:
		best := needle{}
		for _, k := range x {
			if t := requiredToken(k); len(t.tok) > len(best.tok) {
				best = t
			}
		}
		return best
	}
	return needle{}
}

// lowerInto appends s with ASCII upper-case letters made lower-case to dst,
// eight bytes at a time.
func lowerInto(dst []byte, s string) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(s))[:n+len(s)]
	out := dst[n:]
	const ones = 0x0101010101010101
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		h := w & (0x7f * ones)
		ge := h + (0x80-'A')*ones   // high bit: the byte's low 7 bits >= 'A'
		gt := h + (0x80-'Z'-1)*ones // high bit: ... > 'Z'
		upper := ge &^ gt &^ w & (0x80 * ones)
		binary.LittleEndian.PutUint64(out[i:], w|upper>>2)
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return dst
}

var lowerPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// candidateLines marks the lines of l whose message holds the needle as a
// substring (a token case-insensitively, an exact literal as it is); nil
// means "every line" (no message block to search). Lines a load for the
// token left out (Lines.Skipped) have no bytes in the block: never marked.
func candidateLines(l *store.Lines, n needle) []bool {
	tok := n.tok
	if tok == "" {
		return nil
	}
	if l.MsgBlock == "" {
		if l.Skipped != nil {
			// Only blocks that cannot hold tok were left out: no line does.
			return make([]bool, l.Len())
		}
		return nil
	}
	block := l.MsgBlock
	if !n.exact {
		bp := lowerPool.Get().(*[]byte)
		defer lowerPool.Put(bp)
		low := lowerInto((*bp)[:0], l.MsgBlock)
		*bp = low
		block = unsafe.String(unsafe.SliceData(low), len(low)) // low is not changed while block is used
	}
	marks := make([]bool, l.Len())
	for p := 0; p < len(block); {
		i := strings.Index(block[p:], tok)
		if i < 0 {
			break
		}
		off := int32(p + i)
		line := sort.Search(len(l.MsgStarts), func(j int) bool { return l.MsgStarts[j] > off }) - 1
		if line >= 0 {
			marks[line] = true
			// Skip to the next line: one hit is enough.
			if line+1 < len(l.MsgStarts) {
				p = int(l.MsgStarts[line+1])
				continue
			}
			break
		}
		p += i + 1
	}
	// A line with escape sequences may hold tok once they are removed.
	for p := 0; ; {
		i := strings.IndexByte(block[p:], 0x1b)
		if i < 0 {
			break
		}
		off := int32(p + i)
		line := sort.Search(len(l.MsgStarts), func(j int) bool { return l.MsgStarts[j] > off }) - 1
		if line < 0 || line+1 >= len(l.MsgStarts) {
			if line >= 0 {
				marks[line] = true
			}
			break
		}
		marks[line] = true
		p = int(l.MsgStarts[line+1])
	}
	return marks
}
