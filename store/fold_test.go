package store

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// foldIndexRef is indexFold's reference: lower-case ASCII letters of s, then
// strings.Index.
func foldIndexRef(s, t string) int {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return strings.Index(string(b), t)
}

// The pivot scan finds the first case-folded occurrence wherever the
// reference does: at both ends, next to other cases of the pivot, in
// non-ASCII text, for needles of letters, digits and punctuation.
func TestFoldNeedleIndex(t *testing.T) {
	cases := []struct{ s, t string }{
		{"", ""}, {"a", ""}, {"", "a"}, {"deadlock", "deadlock"}, {"DEADLOCK", "deadlock"},
		{"xDeAdLoCk", "deadlock"}, {"deadloc", "deadlock"}, {"kkkKKKdeadlockk", "deadlock"},
		{"dead lock deadlocK", "deadlock"}, {"ÄRGER deadlock", "deadlock"}, {"a-b=c", "b=c"},
		{"status 500 in 500ms", "500ms"}, {"Kelvin \u212a", "k"}, {"zz", "z"}, {"qZq", "z"},
	}
	for _, c := range cases {
		n := NewFoldNeedle(c.t)
		if got, want := n.Index(c.s), foldIndexRef(c.s, c.t); got != want {
			t.Errorf("index(%q, %q) = %d, want %d", c.s, c.t, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alpha = "dDeEaAlLoOcCkK 0-=\xc3\x84x"
	rnd := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		return string(b)
	}
	found := 0
	for range 20000 {
		s, tok := rnd(rng.IntN(40)), strings.ToLower(rnd(1+rng.IntN(3)))
		n := NewFoldNeedle(tok)
		got, want := n.Index(s), foldIndexRef(s, tok)
		if got != want {
			t.Fatalf("index(%q, %q) = %d, want %d", s, tok, got, want)
		}
		if got >= 0 {
			found++
		}
	}
	if found < 1000 {
		t.Fatalf("only %d random cases had a match: the test is too weak", found)
	}
}
