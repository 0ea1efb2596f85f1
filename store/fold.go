package store

import "strings"

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

// FoldNeedle is a lower-case ASCII needle prepared for Index: the byte
// of it to scan for (its rarest) in both cases.
type FoldNeedle struct {
	tok        string
	at         int  // the pivot's offset in tok
	low, upper byte // the pivot, and its upper case (== low when not a letter)
}

// NewFoldNeedle prepares tok (lower-case ASCII) for Index.
func NewFoldNeedle(tok string) FoldNeedle {
	n := FoldNeedle{tok: tok}
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

// Index returns the offset of the first place s holds the needle, folding
// ASCII letters (-1: none). It scans for the pivot byte in both cases with
// IndexByte (vectorised) and compares only there: no lower-cased copy.
func (n *FoldNeedle) Index(s string) int {
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
		if EqualFold(s[p-n.at:p-n.at+len(t)], t) {
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

// EqualFold compares s with the lower-case token t, folding ASCII only.
func EqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		if c != t[i] {
			return false
		}
	}
	return true
}
