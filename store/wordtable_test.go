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
		w := fmt.Sprintf("Word%d", i%1700)
		lw, owned := lowerASCIIInto(&buf, w)
		if owned || lw != fmt.Sprintf("word%d", i%1700) {
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
