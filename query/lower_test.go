package query

import "testing"

// lowerInto lower-cases ASCII letters only, eight bytes at a time and in
// the tail, as a byte-by-byte loop does.
func TestLowerInto(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	for _, s := range []string{"", "A", "GET /Api", "@[`{AZaz\\xc3\\x89Z", string(all), string(all[3:]) + "ÉCOLE Zürich"} {
		want := []byte(s)
		for i, c := range want {
			if c >= 'A' && c <= 'Z' {
				want[i] = c + 32
			}
		}
		if got := lowerInto([]byte("pre"), s); string(got) != "pre"+string(want) {
			t.Fatalf("lowerInto(%q) = %q, want %q", s, got[3:], want)
		}
	}
}
