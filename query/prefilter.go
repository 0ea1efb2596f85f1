package query

import (
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
	if !n.exact && l.Word == tok {
		// The load left out every line not holding tok already.
		marks := make([]bool, l.Len())
		for i := range marks {
			marks[i] = l.Skipped == nil || !l.Skipped[i]
		}
		return marks
	}
	find := func(s string) int { return strings.Index(s, tok) }
	if !n.exact {
		fn := store.NewFoldNeedle(tok)
		find = fn.Index
	}
	return l.BlockMarks(find)
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
	fn := store.NewFoldNeedle(n.tok)
	for i, m := range msgs {
		marks[i] = fn.Index(m) >= 0 || model.HasANSI(m)
	}
	return marks
}
