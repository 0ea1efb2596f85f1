package model

import "strings"

// esc starts every terminal escape sequence.
const esc = 0x1b

// HasANSI reports whether s holds an ESC byte, i.e. may hold a terminal
// escape sequence.
func HasANSI(s string) bool { return strings.IndexByte(s, esc) >= 0 }

// StripANSI returns s without its terminal escape sequences (ECMA-48), as a
// terminal would show it: CSI sequences (ESC [ params final, such as the SGR
// colours ESC[31m and ESC[0m), OSC, DCS, SOS, PM and APC strings (ESC ] ... up
// to BEL or ESC \, as in hyperlinks and window titles) and the short ESC
// sequences (ESC 7, ESC ( B ...). A sequence cut off by the end of s is
// dropped to the end. Everything else, other control bytes included, is kept.
//
// With no ESC byte in s, s itself comes back: no copy, no allocation. Only
// the text a line shows is read for tokens and levels; the bytes stored are
// always the ones sent.
func StripANSI(s string) string {
	i := strings.IndexByte(s, esc)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i+ansiLen(s[i:]):]
		i = strings.IndexByte(s, esc)
	}
	b.WriteString(s)
	return b.String()
}

// ansiLen is the length of the escape sequence at the start of s (s[0] is ESC).
func ansiLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	c := s[1]
	switch {
	case c == '[': // CSI: parameter and intermediate bytes, then one final byte
		j := 2
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
			j++
		}
		if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
			j++
		}
		return j
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		// A control string, ended by BEL (OSC) or ST (ESC \).
		for j := 2; j < len(s); j++ {
			switch s[j] {
			case 0x07:
				return j + 1
			case esc:
				if j+1 < len(s) && s[j+1] == '\\' {
					return j + 2
				}
				return j // a new sequence starts: this one was cut short
			}
		}
		return len(s)
	case c >= 0x20 && c <= 0x2f: // nF: intermediate bytes, then a final byte
		j := 2
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
			j++
		}
		if j < len(s) && s[j] >= 0x30 && s[j] <= 0x7e {
			j++
		}
		return j
	case c >= 0x30 && c <= 0x7e: // Fp, Fe, Fs: ESC 7, ESC M, ESC c ...
		return 2
	}
	return 1 // a lone ESC
}
