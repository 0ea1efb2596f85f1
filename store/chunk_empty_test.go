package store

import "testing"

func TestAllEmpty(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		n    int
		want bool
	}{
		{[]byte{0, 0, 0}, 3, true},
		{[]byte{}, 0, true},
		{[]byte{0, 0}, 3, false},       // short
		{[]byte{0, 1, 'x'}, 2, false},  // a string of one byte
		{[]byte{0, 0, 1}, 3, false},    // not all 0
		{[]byte{0, 0, 0, 0}, 3, false}, // long
	} {
		if got := allEmpty(tc.b, tc.n); got != tc.want {
			t.Errorf("allEmpty(%v, %d) = %v, want %v", tc.b, tc.n, got, tc.want)
		}
	}
	// A column of empty strings and one with a trace id read back alike
	// through the fast path and the line-by-line one.
	var bufs []*[]byte
	for _, ss := range [][]string{{"", "", ""}, {"", "abc", ""}} {
		c := compress(appendStrings(nil, ss))
		got, err := decodeStrings(c, len(ss), len(ss), nil, &bufs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ss {
			if got[i] != ss[i] {
				t.Errorf("decodeStrings(%q)[%d] = %q", ss, i, got[i])
			}
		}
	}
}
