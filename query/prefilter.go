package query

import (
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

var lowerPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// candidateLines marks the lines of l whose message holds the needle as a
// substring (a token case-insensitively, an exact literal as it is); nil
// means "every line" (no message block to search).
func candidateLines(l *store.Lines, n needle) []bool {
	tok := n.tok
	if tok == "" || l.MsgBlock == "" {
		return nil
	}
	block := l.MsgBlock
	if !n.exact {
		bp := lowerPool.Get().(*[]byte)
		defer lowerPool.Put(bp)
		low := append((*bp)[:0], l.MsgBlock...)
		for i, c := range low {
			if c >= 'A' && c <= 'Z' {
				low[i] = c + 32
			}
		}
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
