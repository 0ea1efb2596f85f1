package query

import (
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/shiplog/shiplog/store"
)

// requiredToken returns the longest message token that every match of n must
// contain ("" when there is none). Searching a chunk's whole message block for
// it at once is much faster than testing each message.
func requiredToken(n node) string {
	switch x := n.(type) {
	case wordsNode:
		best := ""
		for _, t := range x.toks {
			if len(t) > len(best) {
				best = t
			}
		}
		return best
	case msgRegexpNode:
		// The literal every match begins with (Go leaves case-folded
		// runes out of it), lower-cased as the block is: ASCII only.
		prefix, _ := x.rx.LiteralPrefix()
		if len(prefix) < 3 {
			return ""
		}
		return lowerASCII(prefix)
	case andNode:
		best := ""
		for _, k := range x {
			if t := requiredToken(k); len(t) > len(best) {
				best = t
			}
		}
		return best
	}
	return ""
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

var lowerPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// candidateLines marks the lines of l whose message holds tok (a lower-case
// token) as a substring, case-insensitively; nil means "every line" (no
// message block to search).
func candidateLines(l *store.Lines, tok string) []bool {
	if tok == "" || l.MsgBlock == "" {
		return nil
	}
	bp := lowerPool.Get().(*[]byte)
	defer lowerPool.Put(bp)
	low := append((*bp)[:0], l.MsgBlock...)
	for i, c := range low {
		if c >= 'A' && c <= 'Z' {
			low[i] = c + 32
		}
	}
	*bp = low
	block := unsafe.String(unsafe.SliceData(low), len(low)) // low is not changed while block is used
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
	return marks
}
