package query

import (
	"sort"
	"strings"

	"github.com/shiplog/shiplog/model"
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

// byteRank orders ASCII bytes by how often they appear in log text (lower
// is rarer), to pick the byte of a needle to scan for: a rare one stops the
// scan at few places to compare.
var byteRank = func() (r [256]uint8) {
	for i := range r {
		r[i] = 100 // punctuation and bytes outside ASCII letters and digits
	}
	// English letter frequency, rarest first; digits in between.
	for i, c := range "zqxjkvbpygfwmucldrhsnioate" {
		r[c], r[c-32] = uint8(30+i*4), uint8(30+i*4)
	}
	for c := '0'; c <= '9'; c++ {
		r[c] = 90
	}
	for _, c := range " .:-/=_" {
		r[c] = 200
	}
	return r
}()

// foldNeedle is a lower-case ASCII needle prepared for indexFold: the byte
// of it to scan for (its rarest) in both cases.
type foldNeedle struct {
	tok        string
	at         int  // the pivot's offset in tok
	low, upper byte // the pivot, and its upper case (== low when not a letter)
}

func newFoldNeedle(tok string) foldNeedle {
	n := foldNeedle{tok: tok}
	for i := 1; i < len(tok); i++ {
		if byteRank[tok[i]] < byteRank[tok[n.at]] {
			n.at = i
		}
	}
	if len(tok) > 0 {
		n.low, n.upper = tok[n.at], tok[n.at]
		if n.low >= 'a' && n.low <= 'z' {
			n.upper = n.low - 32
		}
	}
	return n
}

// index returns the offset of the first place s holds the needle, folding
// ASCII letters (-1: none). It scans for the pivot byte in both cases with
// IndexByte (vectorised) and compares only there: no lower-cased copy.
func (n *foldNeedle) index(s string) int {
	t := n.tok
	if len(t) == 0 {
		return 0
	}
	if len(s) < len(t) {
		return -1
	}
	// nextLow and nextUp are the next offsets (>= i) of the pivot's two
	// cases in s, -1 once there are none.
	nextLow, nextUp := -2, -2
	if n.upper == n.low {
		nextUp = -1
	}
	last := len(s) - len(t) + n.at // the last offset a pivot can have
	for i := n.at; i <= last; {
		if nextLow != -1 && nextLow < i {
			nextLow = indexFrom(s, n.low, i)
		}
		if nextUp != -1 && nextUp < i {
			nextUp = indexFrom(s, n.upper, i)
		}
		p := nextLow
		if p < 0 || nextUp >= 0 && nextUp < p {
			p = nextUp
		}
		if p < 0 || p > last {
			return -1
		}
		if equalFold(s[p-n.at:p-n.at+len(t)], t) {
			return p - n.at
		}
		i = p + 1
	}
	return -1
}

// indexFrom is the offset of the first c in s at or after i, -1 when none.
func indexFrom(s string, c byte, i int) int {
	if j := strings.IndexByte(s[i:], c); j >= 0 {
		return i + j
	}
	return -1
}

// candidateLines marks the lines of l whose message holds the needle as a
// substring (a token case-insensitively, an exact literal as it is); nil
// means "every line" (no needle). Lines a load for the token left out
// (Lines.Skipped) have no bytes in the block: never marked. A chunk loaded
// whole from the store has its messages in one block, searched at once; an
// open chunk's messages are searched one by one.
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
		if l.Msgs == nil {
			return nil
		}
		return messageMarks(l.Msgs, n)
	}
	block := l.MsgBlock
	find := func(s string) int { return strings.Index(s, tok) }
	if !n.exact {
		fn := newFoldNeedle(tok)
		find = fn.index
	}
	marks := make([]bool, l.Len())
	for p := 0; p < len(block); {
		i := find(block[p:])
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

// messageMarks is candidateLines for messages not in one block (an open
// chunk's): a line is marked when its message holds the needle or has an
// escape sequence (it may hold it once those are removed).
func messageMarks(msgs []string, n needle) []bool {
	marks := make([]bool, len(msgs))
	if n.exact {
		for i, m := range msgs {
			marks[i] = strings.Contains(m, n.tok) || model.HasANSI(m)
		}
		return marks
	}
	fn := newFoldNeedle(n.tok)
	for i, m := range msgs {
		marks[i] = fn.index(m) >= 0 || model.HasANSI(m)
	}
	return marks
}
