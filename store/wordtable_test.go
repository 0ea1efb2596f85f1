package store

import (
	"fmt"
	"strings"
	"testing"
)

// TestWordTable checks the table against a map through growth, with words
// added from a buffer that is written again (not owned) and lower-casing.
func TestWordTable(t *testing.T) {
	tab := newWordTable(4)
	ref := map[string]uint64{}
	var buf []byte
	for i := range 5000 {
		// Short words are their own keys, long ones (and one with a NUL)
		// their hashes.
		w := fmt.Sprintf("Word%d", i%1700)
		switch i % 3 {
		case 1:
			w = fmt.Sprintf("Word%d_and_a_long_tail", i%1700)
		case 2:
			w = fmt.Sprintf("Word%d\x00", i%900)
		}
		lw, owned := lowerASCIIInto(&buf, w)
		if owned || lw != strings.ToLower(w) {
			t.Fatalf("lowerASCIIInto(%q) = %q, %v", w, lw, owned)
		}
		bit := uint64(1) << (i % 7)
		tab.add(lw, bit, owned)
		ref[strings.Clone(lw)] |= bit // lw is a view of buf
		if s, owned := lowerASCIIInto(&buf, "plain"); !owned || s != "plain" {
			t.Fatalf("lowerASCIIInto(plain) = %q, %v", s, owned)
		}
	}
	got := map[string]uint64{}
	tab.each(func(w string, mask uint64) {
		if _, dup := got[w]; dup {
			t.Errorf("word %q twice", w)
		}
		got[w] = mask
	})
	if tab.n != len(ref) || fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatalf("table holds %d words, want %d; equal: %v", tab.n, len(ref), fmt.Sprint(got) == fmt.Sprint(ref))
	}
}

// TestKeyOf checks that a short word's key is its bytes, zero-padded, from
// any place in the string it is read from (near either end, in strings
// shorter than a load).
func TestKeyOf(t *testing.T) {
	for _, s := range []string{"a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "Ünïcode_straße_0123456789_x", "0123456789abcdefXYZ", "@AZ[`az{_GET_Post_0123"} {
		for a := 0; a < len(s); a++ {
			for b := a + 1; b <= len(s) && b-a <= maxShortWord; b++ {
				var want [16]byte
				copy(want[:], s[a:b])
				k := keyOf(s, a, b)
				var got [16]byte
				for i := range 8 {
					got[i], got[8+i] = byte(k.k0>>(8*i)), byte(k.k1>>(8*i))
				}
				if got != want {
					t.Fatalf("keyOf(%q, %d, %d) holds %q", s, a, b, got)
				}
				if w := s[a:b]; isASCII(w) && lowerKey(k) != keyOf(strings.ToLower(w), 0, len(w)) {
					t.Fatalf("lowerKey of %q is not %q's key", w, strings.ToLower(w))
				}
			}
		}
	}
}
